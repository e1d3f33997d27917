package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mission-ids/mission/ipfix"
)

// listenUDP opens n sockets on one port with SO_REUSEPORT, so the kernel
// spreads exporters over several reader goroutines (each exporter always
// lands on the same socket, keeping its template session in one place).
func listenUDP(ctx context.Context, host string, port, n, rcvbuf int) ([]*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			if serr != nil {
				return
			}
			// Force beyond rmem_max when permitted (root), else ask politely.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}
		})
		return errors.Join(err, serr)
	}}
	var conns []*net.UDPConn
	addr := net.JoinHostPort(host, fmt.Sprint(port))
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, pc.(*net.UDPConn))
		if i == 0 && port == 0 {
			// The other sockets must share the port the first one got.
			addr = pc.LocalAddr().String()
		}
	}
	return conns, nil
}

// serveUDP reads datagrams (one IPFIX message each) until ctx ends, and
// then what the socket still holds: until it has been quiet for
// DrainQuiet, at most DrainTimeout.
func (c *Collector) serveUDP(ctx context.Context, conn *net.UDPConn) error {
	defer conn.Close()
	var drainEnd atomic.Int64
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		now := time.Now()
		drainEnd.Store(now.Add(c.cfg.DrainTimeout).UnixNano())
		conn.SetReadDeadline(now.Add(c.cfg.DrainQuiet))
	}()
	dec := ipfix.NewDecoder(c.cfg.IPFIX)
	defer dec.Close() // give the state back to the shared budget
	h := c.newHandler()
	buf := make([]byte, 65536)
	lastSweep := time.Now()
	// The journal segment each session last wrote to (templates go first
	// into a new one); bounded: forgetting only rewrites templates.
	lastSeg := map[ipfix.SessionKey]uint64{}
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if ctx.Err() != nil && errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if ctx.Err() != nil {
				continue // a deadline set before the drain began; the drain's own follows
			}
			return fmt.Errorf("read UDP: %w", err)
		}
		if end := drainEnd.Load(); end != 0 {
			conn.SetReadDeadline(minTime(time.Now().Add(c.cfg.DrainQuiet), time.Unix(0, end)))
		}
		from = unmap(from)
		if !c.allowed(from.Addr()) {
			c.deny(from, "IPFIX message")
			continue
		}
		sess, err := dec.Session(ipfix.SessionKey{Exporter: from, Transport: ipfix.UDP})
		if err != nil {
			c.totals.malformed.Add(1)
			c.warn.Warn().Err(err).Str("exporter", from.String()).Msg("cannot open a session for this exporter")
			continue
		}
		h.from = from
		if j := c.cfg.Journal; j != nil {
			if len(lastSeg) >= 2*maxExporters {
				clear(lastSeg)
			}
			last := lastSeg[sess.Key()]
			if !c.journal(h, ipfix.UDP, 0, sess, &last, buf[:n], nil) {
				continue // journal full: dropped and counted
			}
			lastSeg[sess.Key()] = last
		}
		_ = h.message(sess, buf[:n])
		if now := time.Now(); now.Sub(lastSweep) > 10*time.Second {
			dec.Sweep()
			lastSweep = now
		}
	}
}
