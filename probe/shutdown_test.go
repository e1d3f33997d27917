package probe

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/probe/capture"
)

// quietSource is a live source on a quiet interface: every read times out
// after the poll timeout.
type quietSource struct{ poll time.Duration }

func (q quietSource) ReadPacket(*capture.Packet) error {
	time.Sleep(q.poll)
	return capture.ErrTimeout
}
func (quietSource) Stats() (capture.Stats, error) { return capture.Stats{}, nil }
func (quietSource) Close() error                  { return nil }

// TestCaptureStopsPromptlyWhenQuiet is a regression test: the capture loop
// checked for cancellation only every 1024 iterations, and on a quiet
// interface each iteration is one poll timeout (100 ms), so a cancelled
// probe kept capturing for about 100 s.
func TestCaptureStopsPromptlyWhenQuiet(t *testing.T) {
	p, err := New(Config{ReadFile: "unused.pcap"}, &collectExporter{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.capture(ctx, quietSource{poll: 20 * time.Millisecond})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("capture still running 2 s after the context was cancelled")
	}
}
