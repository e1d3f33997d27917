package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/ipfix"
)

// TCP defaults; see Config.
const (
	DefaultMaxTCPConns          = 1024
	DefaultMaxTCPConnsPerSource = 64
	// DefaultTCPIdleTimeout is four times the probe's TCP keep-alive
	// (probe.DefaultKeepAlive, an empty IPFIX message on an idle export).
	DefaultTCPIdleTimeout = 2 * time.Minute
	// DefaultDrainQuiet and DefaultDrainTimeout bound the graceful drain
	// at shutdown: a connection is read until it has been quiet this long
	// (or its exporter closes it), and never longer than the timeout.
	DefaultDrainQuiet   = 500 * time.Millisecond
	DefaultDrainTimeout = 10 * time.Second
)

// TCPStats are the counters of the TCP and TLS listeners.
type TCPStats struct {
	Open            int    // connections open now
	Accepted        uint64 // connections accepted
	Evicted         uint64 // closed to make room for a source with fewer connections
	RefusedTotal    uint64 // closed at once: MaxTCPConns reached
	RefusedSource   uint64 // closed at once: MaxTCPConnsPerSource reached
	IdleClosed      uint64 // closed after TCPIdleTimeout without a complete message
	AcceptErrors    uint64 // failed accepts (e.g. out of file descriptors), retried
	Drained         uint64 // connections read to quiet at shutdown
	DrainTimedOut   uint64 // connections still sending when DrainTimeout ended
	BytesAtShutdown uint64 // bytes read from connections after shutdown began
}

type tcpCounters struct {
	accepted, evicted, refusedTotal, refusedSource, idleClosed, acceptErrors, drained, drainTimedOut, drainBytes atomic.Uint64
}

// tcpServer serves one TCP or TLS listener.
type tcpServer struct {
	c         *Collector
	ln        net.Listener
	transport string
	log       zerolog.Logger // connect/disconnect lines, rate-limited

	mu       sync.Mutex
	conns    map[*tcpConn]struct{}
	bySource map[netip.Addr]int
	draining bool
	drainEnd time.Time
}

type tcpConn struct {
	net.Conn
	source     netip.Addr
	evicted    bool         // closed by evictFor; guarded by tcpServer.mu
	lastActive atomic.Int64 // unix ns of the last complete message
	draining   atomic.Bool
	drainEnd   atomic.Int64 // unix ns
}

// serveTCP accepts exporters on ln (TCP or TLS); each connection is one
// transport session whose templates live as long as the connection. When
// ctx ends it stops accepting and drains the open connections: each is
// read until it is quiet for DrainQuiet (or closed by its exporter), at
// most DrainTimeout, and everything read is decoded and handed to the
// sink before serveTCP returns.
func (c *Collector) serveTCP(ctx context.Context, ln net.Listener, transport string) error {
	s := &tcpServer{c: c, ln: ln, transport: transport, conns: map[*tcpConn]struct{}{}, bySource: map[netip.Addr]int{},
		log: c.log.Sample(&zerolog.BurstSampler{Burst: 10, Period: 10 * time.Second})}
	var wg sync.WaitGroup
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		s.drain()
	}()
	defer func() {
		close(stopped)
		wg.Wait()
	}()
	backoff := time.Duration(0)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !temporaryAccept(err) {
				return fmt.Errorf("accept %s: %w", transport, err)
			}
			// Like net/http: out of file descriptors or a transient network
			// error is retried with a growing pause, never fatal.
			c.tcp.acceptErrors.Add(1)
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			c.warn.Warn().Err(err).Str("transport", transport).Dur("retry_in", backoff).Msg("accept failed; retrying")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		from := addrPortOf(conn.RemoteAddr())
		if transport != "unix" && !c.allowed(from.Addr()) {
			c.deny(from, transport+" connection")
			conn.Close()
			continue
		}
		tc, reason := s.admit(conn, from)
		if tc == nil {
			c.warn.Warn().Str("exporter", from.String()).Str("transport", transport).Str("reason", reason).
				Msg("exporter connection refused: too many connections")
			conn.Close()
			continue
		}
		c.tcp.accepted.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serveConn(tc, from, transport, s.log)
			s.release(tc, from)
			tc.Close()
		}()
	}
}

// temporaryAccept reports whether an accept error is worth retrying.
func temporaryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	var se *os.SyscallError
	return errors.As(err, &se)
}

// admit registers a connection unless a bound is reached.
func (s *tcpServer) admit(conn net.Conn, from netip.AddrPort) (*tcpConn, string) {
	cfg := &s.c.cfg
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.draining:
		return nil, "shutting down"
	case s.bySource[from.Addr()] >= cfg.MaxTCPConnsPerSource:
		s.c.tcp.refusedSource.Add(1)
		return nil, "per source address"
	case len(s.conns) >= cfg.MaxTCPConns:
		// Fair eviction: a source holding fewer connections than the
		// busiest one takes the least recently active connection of that
		// one; the busiest source itself is refused.
		if !s.evictFor(from.Addr()) {
			s.c.tcp.refusedTotal.Add(1)
			return nil, "total"
		}
	}
	tc := &tcpConn{Conn: conn, source: from.Addr()}
	tc.lastActive.Store(time.Now().UnixNano())
	s.conns[tc] = struct{}{}
	s.bySource[from.Addr()]++
	s.c.tcpOpen.Add(1)
	return tc, ""
}

// evictFor closes the least recently active connection of the source
// holding the most connections, if that is not src and holds more than
// src would after admitting. Called with s.mu held.
func (s *tcpServer) evictFor(src netip.Addr) bool {
	var busiest netip.Addr
	most := 0
	for a, n := range s.bySource {
		if n > most {
			busiest, most = a, n
		}
	}
	if busiest == src || most <= s.bySource[src]+1 {
		return false
	}
	var victim *tcpConn
	for tc := range s.conns {
		if tc.source == busiest && !tc.evicted && (victim == nil || tc.lastActive.Load() < victim.lastActive.Load()) {
			victim = tc
		}
	}
	if victim == nil {
		return false
	}
	victim.evicted = true
	victim.Close() // its reader sees the error and releases it
	s.c.tcp.evicted.Add(1)
	// Count it gone now, so the bound holds while its reader winds down.
	delete(s.conns, victim)
	if s.bySource[busiest]--; s.bySource[busiest] <= 0 {
		delete(s.bySource, busiest)
	}
	s.c.tcpOpen.Add(-1)
	return true
}

func (s *tcpServer) release(tc *tcpConn, from netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tc.evicted {
		return // already counted gone by evictFor
	}
	delete(s.conns, tc)
	if s.bySource[from.Addr()]--; s.bySource[from.Addr()] <= 0 {
		delete(s.bySource, from.Addr())
	}
	s.c.tcpOpen.Add(-1)
}

// drain stops accepting and lets every open connection run out.
func (s *tcpServer) drain() {
	s.ln.Close()
	cfg := &s.c.cfg
	now := time.Now()
	end := now.Add(cfg.DrainTimeout)
	s.mu.Lock()
	s.draining = true
	for tc := range s.conns {
		tc.drainEnd.Store(end.UnixNano())
		tc.draining.Store(true)
		tc.SetReadDeadline(minTime(now.Add(cfg.DrainQuiet), end))
	}
	s.mu.Unlock()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// serveConn reads messages framed by their length field (RFC 7011 §10.4);
// a framing error closes the connection, as the stream cannot resync.
func (c *Collector) serveConn(conn *tcpConn, from netip.AddrPort, transport string, connLog zerolog.Logger) {
	log := c.log.With().Str("exporter", from.String()).Str("transport", transport).Logger()
	connLog.Info().Str("exporter", from.String()).Str("transport", transport).Msg("exporter connected")
	sess := ipfix.NewSession(c.cfg.IPFIX, ipfix.SessionKey{Exporter: from, Transport: ipfix.TCP})
	defer sess.Close() // give the state back to the shared budget
	h := c.newHandler()
	h.from = from
	buf := make([]byte, 65536)
	idle := c.cfg.TCPIdleTimeout
	connID := c.connSeq.Add(1)
	var lastSeg uint64
	// deadline arms the read deadline for the next read: the idle timeout
	// normally, the quiet period (bounded by the drain end) at shutdown.
	deadline := func() {
		if conn.draining.Load() {
			conn.SetReadDeadline(minTime(time.Now().Add(c.cfg.DrainQuiet), time.Unix(0, conn.drainEnd.Load())))
		} else if idle > 0 {
			conn.SetReadDeadline(time.Now().Add(idle))
		}
	}
	read := func(p []byte) error {
		n, err := io.ReadFull(conn, p)
		if conn.draining.Load() {
			c.tcp.drainBytes.Add(uint64(n))
		}
		return err
	}
	ended := func(err error, inside bool) {
		var ne net.Error
		switch {
		case conn.draining.Load():
			if errors.As(err, &ne) && ne.Timeout() && time.Now().UnixNano() >= conn.drainEnd.Load() {
				c.tcp.drainTimedOut.Add(1)
				log.Warn().Msg("exporter still sending when the shutdown drain ended; closing its connection")
			} else {
				c.tcp.drained.Add(1)
			}
		case errors.As(err, &ne) && ne.Timeout():
			c.tcp.idleClosed.Add(1)
			connLog.Info().Str("exporter", from.String()).Str("transport", transport).Dur("idle", idle).Bool("inside_message", inside).
				Msg("exporter connection idle too long; closed")
		case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
			connLog.Info().Str("exporter", from.String()).Str("transport", transport).Msg("exporter disconnected")
		default:
			c.warn.Warn().Err(err).Str("exporter", from.String()).Str("transport", transport).Bool("inside_message", inside).
				Msg("exporter connection ended")
		}
	}
	for {
		deadline()
		if err := read(buf[:4]); err != nil {
			ended(err, false)
			return
		}
		version := binary.BigEndian.Uint16(buf[0:2])
		length := int(binary.BigEndian.Uint16(buf[2:4]))
		if version != ipfix.Version || length < 16 {
			c.totals.malformed.Add(1)
			c.mu.Lock()
			c.exporter(from.Addr()).Malformed++
			c.mu.Unlock()
			log.Warn().Uint16("version", version).Int("length", length).
				Msg("not an IPFIX message stream (bad version or length); closing the connection")
			return
		}
		if err := read(buf[4:length]); err != nil {
			ended(err, true)
			return
		}
		conn.lastActive.Store(time.Now().UnixNano())
		if c.cfg.Journal != nil {
			c.journal(h, ipfix.TCP, connID, sess, &lastSeg, buf[:length], &conn.draining)
		}
		_ = h.message(sess, buf[:length])
	}
}

// TCPStats returns the counters of the TCP and TLS listeners.
func (c *Collector) TCPStats() TCPStats {
	t := &c.tcp
	return TCPStats{Open: int(c.tcpOpen.Load()), Accepted: t.accepted.Load(), Evicted: t.evicted.Load(), RefusedTotal: t.refusedTotal.Load(),
		RefusedSource: t.refusedSource.Load(), IdleClosed: t.idleClosed.Load(), AcceptErrors: t.acceptErrors.Load(),
		Drained: t.drained.Load(), DrainTimedOut: t.drainTimedOut.Load(), BytesAtShutdown: t.drainBytes.Load()}
}

func (c *Collector) tcpMetrics(e metrics.Emitter) {
	s := c.TCPStats()
	e.Gauge("mission_collector_tcp_connections", "Exporter TCP/TLS connections open now.", float64(s.Open))
	e.Gauge("mission_collector_tcp_connections_max", "Bound on open exporter connections (total).", float64(c.cfg.MaxTCPConns))
	e.Counter("mission_collector_tcp_accepted_total", "Exporter TCP/TLS connections accepted.", float64(s.Accepted))
	e.Counter("mission_collector_tcp_refused_total", "Connections closed at once because a bound was reached.", float64(s.RefusedTotal), "bound", "total")
	e.Counter("mission_collector_tcp_refused_total", "Connections closed at once because a bound was reached.", float64(s.RefusedSource), "bound", "source")
	e.Counter("mission_collector_tcp_evicted_total", "Connections closed to make room for a source with fewer.", float64(s.Evicted))
	e.Counter("mission_collector_tcp_idle_closed_total", "Connections closed after the idle timeout.", float64(s.IdleClosed))
	e.Counter("mission_collector_tcp_accept_errors_total", "Failed accepts (retried).", float64(s.AcceptErrors))
	e.Counter("mission_collector_tcp_drain_timeouts_total", "Connections still sending when the shutdown drain ended.", float64(s.DrainTimedOut))
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.TCPAddr:
		ap = v.AddrPort()
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.UnixAddr:
		return unixExporter
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return unmap(ap)
}

// unmap turns ::ffff:a.b.c.d (dual-stack sockets) into a.b.c.d.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// unixExporter is the address recorded for exporters on the Unix socket:
// they are on this host.
var unixExporter = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)

// listenUnix listens on a Unix socket only this user can connect to,
// replacing a stale socket (not any other file) at path.
func listenUnix(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("listen unix: no socket path (Config.UnixSocket)")
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen unix: %s exists and is not a socket: remove it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen unix: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen unix: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen unix: restrict %s to its owner: %w", path, err)
	}
	return ln, nil
}
