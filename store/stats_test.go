package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLatencyHistogramIsCumulative(t *testing.T) {
	var c counters
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 3 * time.Millisecond, 20 * time.Second} {
		c.observeLatency(d)
	}
	h := c.histogram()
	require.Len(t, h.Counts, len(h.Bounds))
	require.EqualValues(t, 2, h.Counts[0], "≤ 1 ms, bound inclusive")
	require.EqualValues(t, 2, h.Counts[1])
	require.EqualValues(t, 3, h.Counts[2], "≤ 5 ms")
	require.EqualValues(t, 3, h.Counts[len(h.Counts)-1], "20 s is only in +Inf")
	require.EqualValues(t, 4, h.Count)
	require.Equal(t, 500*time.Microsecond+time.Millisecond+3*time.Millisecond+20*time.Second, h.Sum)
	require.Equal(t, int64(20*time.Second), c.lastLatency.Load())
}
