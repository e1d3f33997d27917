package probe

import (
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

// TestQueueBoundedInFlows: the export queue holds QueueSize flows however
// they are batched. A slow rate hands over batches of one flow (closed by
// the linger); the queue must hold as many of them as full batches, or a
// collector outage at a low rate drops flows a busy one would keep.
func TestQueueBoundedInFlows(t *testing.T) {
	for _, tt := range []struct {
		name  string
		batch int // flows per hand-over
	}{{"one flow per batch", 1}, {"full batches", captureBatch}, {"partial batches", captureBatch/4 + 3}} {
		t.Run(tt.name, func(t *testing.T) {
			const size = 2048
			p, err := New(Config{ReadFile: "unused.pcap", QueueSize: size, Logger: zerolog.Nop()}, NewJSONExporter(io.Discard))
			require.NoError(t, err)
			p.wait = false // a live capture: drops instead of waiting
			var r flow.Record
			fill := func(n int) {
				for range n {
					p.enqueue(&r)
				}
				p.handOver()
			}
			for range size / tt.batch {
				fill(tt.batch)
			}
			queued := size / tt.batch * tt.batch
			require.Zero(t, p.dropped.Load(), "queue of %d flows refused some of %d", size, queued)
			require.EqualValues(t, queued, p.depth.Load())
			fill(size - queued + 1) // one more than it holds
			require.EqualValues(t, size-queued+1, p.dropped.Load())
			require.EqualValues(t, queued, p.depth.Load())
			var held int
			for len(p.queue) > 0 {
				held += len(<-p.queue)
			}
			require.Equal(t, queued, held)
		})
	}
}

// TestQueueFileWaits: reading a file, a full queue makes the capture wait
// until the export goroutine takes a batch; nothing is dropped.
func TestQueueFileWaits(t *testing.T) {
	p, err := New(Config{ReadFile: "unused.pcap", QueueSize: 10, Logger: zerolog.Nop()}, NewJSONExporter(io.Discard))
	require.NoError(t, err)
	done := make(chan struct{})
	p.done = done
	var r flow.Record
	for range 10 {
		p.enqueue(&r)
		p.handOver()
	}
	handed := make(chan struct{})
	go func() {
		p.enqueue(&r)
		p.handOver() // waits: the queue holds 10 flows
		close(handed)
	}()
	select {
	case <-handed:
		t.Fatal("a full queue took the flow")
	case <-time.After(100 * time.Millisecond):
	}
	// What the export goroutine does with a batch.
	b := <-p.queue
	p.depth.Add(-int64(len(b)))
	p.room <- struct{}{}
	select {
	case <-handed:
	case <-time.After(5 * time.Second):
		t.Fatal("the capture did not resume when the queue had room")
	}
	require.Zero(t, p.dropped.Load())
	require.EqualValues(t, 10, p.depth.Load())
	require.Positive(t, p.waited.Load())
}
