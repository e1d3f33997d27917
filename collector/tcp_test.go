package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe"
)

// dialFrom connects to addr from a chosen loopback source address.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedByPeer reports whether the collector closed conn within d.
func closedByPeer(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := conn.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func waitTCP(t *testing.T, c *Collector, cond func(TCPStats) bool) TCPStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s := c.TCPStats(); cond(s) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := c.TCPStats()
	t.Fatalf("TCP stats never reached the condition: %+v", s)
	return s
}

func TestTCPIdleAndStalledConnectionsAreClosed(t *testing.T) {
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"idle", nil},
		{"stalled inside a message", binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 10), 100)}, // header says 100 bytes, 4 sent
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, addrs := start(t, Config{Listen: []string{"tcp"}, TCPIdleTimeout: 200 * time.Millisecond}, &memSink{})
			conn := dialFrom(t, "127.0.0.1", addrs["tcp"])
			if tc.send != nil {
				_, err := conn.Write(tc.send)
				require.NoError(t, err)
			}
			began := time.Now()
			require.True(t, closedByPeer(conn, 3*time.Second), "the collector closes the connection")
			require.GreaterOrEqual(t, time.Since(began), 150*time.Millisecond, "not before the idle timeout")
			s := waitTCP(t, c, func(s TCPStats) bool { return s.IdleClosed == 1 && s.Open == 0 })
			require.EqualValues(t, 1, s.Accepted)
		})
	}
}

// TestTCPConnectionBounds: the per-source bound refuses a source's extra
// connections; when the total is reached, a source with fewer connections
// takes the least recently active one of the busiest source, which is
// itself refused.
func TestTCPConnectionBounds(t *testing.T) {
	c, addrs := start(t, Config{Listen: []string{"tcp"}, MaxTCPConns: 4, MaxTCPConnsPerSource: 3, TCPIdleTimeout: -1}, &memSink{})
	addr := addrs["tcp"]
	var a []net.Conn
	for i := 0; i < 3; i++ {
		a = append(a, dialFrom(t, "127.0.0.2", addr))
		waitTCP(t, c, func(s TCPStats) bool { return s.Open == i+1 })
	}
	extra := dialFrom(t, "127.0.0.2", addr)
	require.True(t, closedByPeer(extra, 2*time.Second), "fourth connection of one source: refused")
	waitTCP(t, c, func(s TCPStats) bool { return s.RefusedSource == 1 })

	b := dialFrom(t, "127.0.0.3", addr)
	waitTCP(t, c, func(s TCPStats) bool { return s.Open == 4 })
	// Full. A third source takes the idlest connection of 127.0.0.2 (a[0]).
	cc := dialFrom(t, "127.0.0.4", addr)
	s := waitTCP(t, c, func(s TCPStats) bool { return s.Evicted == 1 })
	require.Equal(t, 4, s.Open)
	require.True(t, closedByPeer(a[0], 2*time.Second), "the least recently active connection of the busiest source is closed")
	for _, conn := range []net.Conn{a[1], a[2], b, cc} {
		require.False(t, closedByPeer(conn, 100*time.Millisecond), "the others stay")
	}
	// The busiest source (now 2, others 1) cannot take a connection from
	// a smaller one.
	again := dialFrom(t, "127.0.0.2", addr)
	require.True(t, closedByPeer(again, 2*time.Second))
	waitTCP(t, c, func(s TCPStats) bool { return s.RefusedTotal == 1 })
}

// slowSink stores documents after a pause per batch, so exporter data
// waits in socket buffers.
type slowSink struct {
	memSink
	pause time.Duration
}

func (s *slowSink) PutBatch(docs []flow.Document) error {
	time.Sleep(s.pause)
	return s.memSink.PutBatch(docs)
}

// TestShutdownDrainsTCPConnections: a probe streams flows over TCP; the
// collector is stopped right after the probe wrote the last one, while
// most are still in the socket buffers. Everything written is stored.
func TestShutdownDrainsTCPConnections(t *testing.T) {
	sink := &slowSink{pause: 2 * time.Millisecond}
	c := New(Config{Host: "127.0.0.1", Listen: []string{"tcp"}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	addrs, err := c.Addrs(ctx)
	require.NoError(t, err)

	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "tcp", Address: addrs[0].String(), ObservationDomainID: 1})
	require.NoError(t, err)
	defer exp.Close()
	const n = 20_000
	recs := records(n)
	for i := 0; i < n; i += 500 {
		require.NoError(t, exp.Export(recs[i:min(i+500, n)]))
	}
	require.NoError(t, exp.Flush())
	cancel()
	require.NoError(t, <-done)
	require.Len(t, sink.snapshot(), n, "every flow written before the shutdown is stored")
	s := c.TCPStats()
	require.Greater(t, s.BytesAtShutdown, uint64(0), "the drain read data (otherwise this test proves nothing)")
	require.EqualValues(t, 1, s.Drained)
	require.Zero(t, s.DrainTimedOut)
}

// TestShutdownDrainTimeout: an exporter that never stops sending cannot
// hold the collector past DrainTimeout.
func TestShutdownDrainTimeout(t *testing.T) {
	c := New(Config{Host: "127.0.0.1", Listen: []string{"tcp"}, DrainTimeout: 300 * time.Millisecond, DrainQuiet: 200 * time.Millisecond,
		Logger: zerolog.New(io.Discard)}, &memSink{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	addrs, err := c.Addrs(ctx)
	require.NoError(t, err)
	conn := dialFrom(t, "127.0.0.1", addrs[0].String())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // an empty IPFIX message every 20 ms, forever
		defer wg.Done()
		msg := make([]byte, 16)
		binary.BigEndian.PutUint16(msg[0:], 10)
		binary.BigEndian.PutUint16(msg[2:], 16)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := conn.Write(msg); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(100 * time.Millisecond)
	began := time.Now()
	cancel()
	require.NoError(t, <-done)
	require.Less(t, time.Since(began), 2*time.Second)
	require.EqualValues(t, 1, c.TCPStats().DrainTimedOut)
}

// TestShutdownDrainsUDP: datagrams still in the socket buffer when the
// collector stops are decoded and stored.
func TestShutdownDrainsUDP(t *testing.T) {
	sink := &slowSink{pause: time.Millisecond}
	c := New(Config{Host: "127.0.0.1", Listen: []string{"udp"}, UDPReaders: 1, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	addrs, err := c.Addrs(ctx)
	require.NoError(t, err)
	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "udp", Address: addrs[0].String(), ObservationDomainID: 1})
	require.NoError(t, err)
	defer exp.Close()
	const n = 5_000
	recs := records(n)
	for i := 0; i < n; i += 100 {
		require.NoError(t, exp.Export(recs[i:min(i+100, n)]))
	}
	require.NoError(t, exp.Flush())
	cancel()
	require.NoError(t, <-done)
	require.Len(t, sink.snapshot(), n)
}
