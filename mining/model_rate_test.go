package mining

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A burst counts in full wherever the fixed windows fall: 150 flows at the
// end of one window and 150 at the start of the next are ~300 in the
// sliding window, not 150 in each.
func TestSlidingCount(t *testing.T) {
	const w = int64(10_000) // a 10 s window in ms for readability
	for _, tc := range []struct {
		name      string
		cur, prev int
		t         int64
		want      int
	}{
		{"window start: the whole previous window", 1, 150, 10 * w, 151},
		{"1.5 s into the window: 85 % of it", 150, 150, 10*w + 1500, 150 + 127},
		{"window end: nothing of it", 7, 150, 11*w - 1, 7},
		{"no previous window", 5, 0, 10*w + 5000, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, slidingCount(tc.cur, tc.prev, tc.t, w))
		})
	}
}
