package probe

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/tlsconf"
	"github.com/mission-ids/mission/ipfix"
)

// Exporter sends flow records somewhere. The probe calls it from a single
// export goroutine, never from the capture path.
type Exporter interface {
	// Export encodes and sends (or buffers) records. An error wrapping
	// ErrUnavailable means the exporter took none of them and the caller
	// should offer them again later (the collector is unreachable); any
	// other error means they were not delivered and the caller counts
	// them as lost.
	Export(recs []flow.Record) error
	// Flush sends what is buffered. ErrUnavailable here means the
	// exporter keeps what it took and sends it again once reconnected.
	Flush() error
	Close() error
}

// ErrUnavailable is wrapped by Export and Flush while a TCP/TLS exporter
// has no usable connection to its collector (refused, unreachable, TLS
// handshake rejected, backing off before the next attempt).
var ErrUnavailable = errors.New("collector unavailable")

// ErrTLSRejected is wrapped by the connection errors of a TLS exporter
// whose collector refused the handshake: it sent an alert, during the
// handshake (TLS 1.2) or on the first read after it (TLS 1.3), typically
// because it requires a client certificate we do not have or trust.
var ErrTLSRejected = errors.New("collector rejected the TLS handshake")

// TLSError is a failed TLS connection to the collector.
type TLSError struct {
	Address string
	// Rejected: the collector refused us (an alert); otherwise our side
	// failed the handshake (e.g. the collector's certificate is not
	// trusted) or the connection broke.
	Rejected bool
	Err      error
}

func (e *TLSError) Error() string {
	if e.Rejected {
		return fmt.Sprintf("collector %s rejected our client certificate or TLS parameters: %v", e.Address, e.Err)
	}
	return fmt.Sprintf("TLS handshake with collector %s: %v", e.Address, e.Err)
}

func (e *TLSError) Unwrap() error { return e.Err }

// Is makes a rejection match ErrTLSRejected.
func (e *TLSError) Is(target error) bool { return target == ErrTLSRejected && e.Rejected }

// ExportStats are counters an exporter keeps beyond what the probe sees.
type ExportStats struct {
	FlowsResent      uint64 // flows sent again after a reconnect (the resend window)
	FlowsLost        uint64 // flows taken but not deliverable (window given up at close, UDP send errors)
	FlowsHeld        int    // flows waiting to be resent now
	DatagramsRefused uint64 // UDP datagrams refused (ICMP port unreachable); sent again, maybe unheard
	Reconnects       uint64 // TCP/TLS connections lost and re-established
	ConnectFailures  uint64 // failed TCP/TLS connection attempts
	TLSRejected      uint64 // of which the collector refused the TLS handshake
}

func (s *ExportStats) add(o ExportStats) {
	s.FlowsResent += o.FlowsResent
	s.FlowsLost += o.FlowsLost
	s.FlowsHeld += o.FlowsHeld
	s.DatagramsRefused += o.DatagramsRefused
	s.Reconnects += o.Reconnects
	s.ConnectFailures += o.ConnectFailures
	s.TLSRejected += o.TLSRejected
}

// ExportStatser is implemented by exporters that keep ExportStats; the
// probe adds them to its Stats. ExportStats may be called from any
// goroutine.
type ExportStatser interface {
	ExportStats() ExportStats
}

// IPFIXConfig configures IPFIX export.
type IPFIXConfig struct {
	Transport           string // "udp" (default), "tcp", "tls", "unix" (a stream, as TCP) or "file"
	Address             string // host:port of the collector, or the socket or file path
	ObservationDomainID uint32
	EnterpriseNumber    uint32 // PEN of the MQTT elements; default ipfix.DefaultMQTTPEN
	MTU                 int    // UDP path MTU; default 1500
	TemplateRefresh     time.Duration
	TLS                 *tls.Config // for "tls"
	Logger              zerolog.Logger
	DialTimeout         time.Duration // TCP connect and TLS handshake; default 5 s
	// KeepAlive: over TCP/TLS, an exporter that sent nothing for this long
	// sends an empty IPFIX message (a header without sets), so collectors
	// can close connections that are really dead (default DefaultKeepAlive).
	KeepAlive time.Duration
	// ResendWindow bounds, in bytes of encoded records, what a TCP/TLS
	// exporter keeps to send again after a connection dies (default
	// DefaultResendWindow).
	ResendWindow int
	// TLSVerdictWait is how long a TLS exporter reads after the handshake
	// for the collector's verdict on its certificate (TLS 1.3 reports a
	// rejection only then); default 200 ms.
	TLSVerdictWait time.Duration
	// WriteTimeout bounds a blocked TCP/TLS write (a collector that stopped
	// reading); the connection is then treated as dead. Default 30 s.
	WriteTimeout time.Duration
}

// DefaultKeepAlive is the idle interval after which a TCP/TLS exporter
// sends an empty IPFIX message.
const DefaultKeepAlive = 30 * time.Second

// DefaultResendWindow covers a full default Linux socket send buffer plus
// receive buffer (tcp_wmem and tcp_rmem maxima, 4 and 6 MiB): what can be
// in flight or unread when a collector goes away.
const DefaultResendWindow = 12 << 20

// maxBackoff caps the reconnect backoff: a restarted collector is found
// within seconds, before the export queue fills.
const maxBackoff = 5 * time.Second

// IPFIXExporter encodes flows as IPFIX (RFC 7011) and sends them over UDP,
// TCP or TLS, or writes an IPFIX file (RFC 5655). The "unix" transport is
// TCP's stream over a Unix socket (all-in-one's private hop from its probe
// to its collector) and behaves as TCP below.
//
// Over TCP/TLS it checks the connection before every batch (a non-blocking
// peek: a FIN, RST or TLS alert from the collector means it is gone), keeps
// the records last written in a resend window (see resendWindow), and,
// when a write fails or the check finds the connection dead, reconnects
// with exponential backoff (250 ms to 5 s), sends its templates and the
// whole window again, oldest first. While it has no connection Export
// returns ErrUnavailable and takes nothing, so the flows wait in the
// probe's queue. Close half-closes the connection and waits for the
// collector to close its side: the collector has then read everything.
//
// Over TLS a connection counts only after the handshake and the
// collector's verdict on our certificate (a short read after the
// handshake: a timeout means accepted, an alert means rejected).
//
// Over UDP a refused datagram (ECONNREFUSED: an ICMP port unreachable for
// an earlier one) is counted and sent again, the batch goes on, and the
// templates are repeated in the next message for a collector that starts.
type IPFIXExporter struct {
	cfg     IPFIXConfig
	enc     *flow.Encoder
	builder *ipfix.Builder
	conn    net.Conn      // UDP, TCP or TLS; nil while TCP/TLS is disconnected
	sock    syscall.Conn  // the TCP socket under conn
	tlsConn *tls.Conn     // conn, over TLS
	win     *resendWindow // TCP/TLS
	stream  bool          // TCP, TLS or Unix socket
	file    *os.File
	bw      *bufio.Writer
	backoff time.Duration
	retryAt time.Time
	sentAt  time.Time // last message written (keep-alive)
	log     zerolog.Logger
	warnLog zerolog.Logger // rate-limited
	errLog  zerolog.Logger // rate-limited
	// Messages, Errors count sent messages and failed sends.
	Messages, Errors uint64

	resent, lost, refused, reconnects, connFails, tlsRejected atomic.Uint64
	held                                                      atomic.Int64
	everConnected                                             bool
	connectedAt                                               time.Time
}

// NewIPFIXExporter connects (or creates the file). A TCP/TLS collector
// that cannot be reached yet is retried in the background of Export.
func NewIPFIXExporter(cfg IPFIXConfig) (*IPFIXExporter, error) {
	if cfg.EnterpriseNumber == 0 {
		cfg.EnterpriseNumber = ipfix.DefaultMQTTPEN
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 1500
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ResendWindow <= 0 {
		cfg.ResendWindow = DefaultResendWindow
	}
	if cfg.TLSVerdictWait <= 0 {
		cfg.TLSVerdictWait = 200 * time.Millisecond
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	enc, err := flow.NewEncoder(cfg.EnterpriseNumber)
	if err != nil {
		return nil, err
	}
	e := &IPFIXExporter{cfg: cfg, enc: enc, log: cfg.Logger}
	e.warnLog = e.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	e.errLog = e.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	bc := ipfix.BuilderConfig{ObservationDomainID: cfg.ObservationDomainID, TemplateRefresh: cfg.TemplateRefresh}
	switch cfg.Transport {
	case "udp":
		bc.Transport = ipfix.UDP
		conn, err := net.Dial("udp", cfg.Address)
		if err != nil {
			return nil, fmt.Errorf("IPFIX over UDP to %s: %w: %w", cfg.Address, ErrCollectorAddress, err)
		}
		e.conn = conn
		v6 := false
		if ua, ok := conn.RemoteAddr().(*net.UDPAddr); ok {
			v6 = ua.IP.To4() == nil
		}
		bc.MaxMessageSize = ipfix.UDPMessageSize(cfg.MTU, v6)
	case "tcp", "tls", "unix":
		bc.Transport = ipfix.TCP
		e.stream = true
		e.win = newResendWindow(cfg.ResendWindow)
	case "file":
		bc.Transport = ipfix.File
		f, err := os.Create(cfg.Address)
		if err != nil {
			return nil, fmt.Errorf("IPFIX file: %w", err)
		}
		e.file = f
		e.bw = bufio.NewWriterSize(f, 1<<20)
	default:
		return nil, fmt.Errorf("unknown IPFIX transport %q (use udp, tcp, tls, unix or file)", cfg.Transport)
	}
	e.builder = ipfix.NewBuilder(bc, e.write)
	for _, t := range enc.Templates() {
		if err := e.builder.AddTemplate(t); err != nil {
			return nil, fmt.Errorf("IPFIX templates: %w", err)
		}
	}
	if e.stream {
		if err := e.dial(); err != nil {
			// Start anyway: the collector may come up later; records wait
			// in the queue and the exporter retries with backoff.
			e.log.Warn().Err(err).Str("collector", cfg.Address).Msg("collector not reachable yet; retrying with backoff")
		}
	}
	return e, nil
}

// ExportStats implements ExportStatser.
func (e *IPFIXExporter) ExportStats() ExportStats {
	return ExportStats{FlowsResent: e.resent.Load(), FlowsLost: e.lost.Load(), FlowsHeld: int(e.held.Load()),
		DatagramsRefused: e.refused.Load(), Reconnects: e.reconnects.Load(), ConnectFailures: e.connFails.Load(),
		TLSRejected: e.tlsRejected.Load()}
}

// dial connects a TCP/TLS exporter; over TLS the connection must pass the
// handshake and the collector's verdict. Failures set the backoff.
func (e *IPFIXExporter) dial() error {
	conn, sock, tc, err := e.connect()
	if err != nil {
		e.connFails.Add(1)
		if e.backoff == 0 {
			e.backoff = 250 * time.Millisecond
		} else {
			e.backoff = min(2*e.backoff, maxBackoff)
		}
		e.retryAt = time.Now().Add(e.backoff)
		if errors.Is(err, ErrTLSRejected) {
			e.tlsRejected.Add(1)
		}
		return fmt.Errorf("IPFIX over %s to %s: %w", e.cfg.Transport, e.cfg.Address, err)
	}
	e.conn, e.sock, e.tlsConn = conn, sock, tc
	e.sentAt = time.Now()
	e.builder.Reconnect() // templates go out again on the new connection
	e.connectedAt = e.sentAt
	if e.everConnected {
		e.reconnects.Add(1)
	}
	e.everConnected = true
	e.log.Info().Str("collector", e.cfg.Address).Str("transport", e.cfg.Transport).Msg("connected to collector")
	return nil
}

func (e *IPFIXExporter) connect() (net.Conn, syscall.Conn, *tls.Conn, error) {
	d := net.Dialer{Timeout: e.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	network := "tcp"
	if e.cfg.Transport == "unix" {
		network = "unix" // same IPFIX stream framing as TCP
	}
	raw, err := d.Dial(network, e.cfg.Address)
	if err != nil {
		return nil, nil, nil, err
	}
	sock, _ := raw.(syscall.Conn)
	if e.cfg.Transport != "tls" {
		return raw, sock, nil, nil
	}
	cfg := tlsconf.Harden(e.cfg.TLS) // TLS 1.2+, AEAD suites with forward secrecy
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(e.cfg.Address); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(raw, cfg)
	fail := func(err error) (net.Conn, syscall.Conn, *tls.Conn, error) {
		raw.Close()
		te := &TLSError{Address: e.cfg.Address, Rejected: isRemoteAlert(err), Err: err}
		if te.Rejected {
			e.errLog.Error().Err(err).Str("collector", e.cfg.Address).Bool("client_certificate", len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil).
				Msgf("collector rejected our client certificate: %v", err)
		} else {
			e.errLog.Error().Err(err).Str("collector", e.cfg.Address).Msg("TLS handshake with the collector failed")
		}
		return nil, nil, nil, te
	}
	raw.SetDeadline(time.Now().Add(e.cfg.DialTimeout))
	if err := tc.Handshake(); err != nil {
		return fail(err)
	}
	// The verdict: with TLS 1.3 the collector checks our certificate after
	// our side of the handshake is done and reports a rejection as an
	// alert we only see when reading. It never sends data, so a read that
	// times out means we were accepted (it also consumes session tickets).
	raw.SetDeadline(time.Now().Add(e.cfg.TLSVerdictWait))
	var one [1]byte
	_, err = tc.Read(one[:])
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		return fail(err)
	}
	raw.SetDeadline(time.Time{})
	return tc, sock, tc, nil
}

// isRemoteAlert reports whether a TLS error is an alert from the peer.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" {
		return true
	}
	// An EOF or reset right after the handshake: the collector closed
	// without an alert, which is how some stacks refuse a certificate.
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// errConnLost is returned by write when a TCP/TLS connection died; the
// resend window keeps the records for the next connection.
var errConnLost = errors.New("collector connection lost")

// lostConn closes a dead TCP/TLS connection; the next Export or Flush
// reconnects at once and then with backoff.
func (e *IPFIXExporter) lostConn(err error) {
	e.warnLog.Warn().Err(err).Str("collector", e.cfg.Address).Int("resend_flows", e.win.len()).
		Msg("lost the collector connection; reconnecting and resending the last flows")
	e.conn.Close()
	e.conn, e.sock, e.tlsConn = nil, nil, nil
	// Reconnect at once after a connection that lived; a collector that
	// accepts and drops us again and again is retried with backoff.
	if time.Since(e.connectedAt) >= time.Second {
		e.backoff = 0
		e.retryAt = time.Now()
	} else {
		e.backoff = min(max(2*e.backoff, 250*time.Millisecond), maxBackoff)
		e.retryAt = time.Now().Add(e.backoff)
	}
	e.win.dirty = true
	e.held.Store(int64(e.win.len()))
}

func (e *IPFIXExporter) write(msg []byte) error {
	if e.bw != nil {
		_, err := e.bw.Write(msg)
		if err == nil {
			e.Messages++
		} else {
			e.Errors++
		}
		return err
	}
	if e.conn == nil {
		e.Errors++
		return errConnLost
	}
	if !e.stream {
		return e.writeUDP(msg)
	}
	e.conn.SetWriteDeadline(time.Now().Add(e.cfg.WriteTimeout))
	_, err := e.conn.Write(msg)
	if err != nil {
		e.Errors++
		e.lostConn(err)
		return fmt.Errorf("send IPFIX message: %w: %w", errConnLost, err)
	}
	e.Messages++
	e.sentAt = time.Now()
	return nil
}

// writeUDP sends one datagram. ECONNREFUSED on a connected UDP socket
// reports an ICMP port unreachable for an earlier datagram, and the send
// that reports it does not happen: it is counted and sent again (a few
// times), and the templates go into the next message in case the
// collector is just starting. Other errors lose this message's flows
// (counted), not the rest of the batch.
func (e *IPFIXExporter) writeUDP(msg []byte) error {
	var err error
	refused := false
	for attempt := 0; attempt < 4; attempt++ {
		if _, err = e.conn.Write(msg); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		refused = true
		e.refused.Add(1)
		e.warnLog.Warn().Str("collector", e.cfg.Address).Uint64("refused", e.refused.Load()).
			Msg("collector refused a UDP datagram (ICMP port unreachable): it may not be listening; sending on")
	}
	if refused {
		e.builder.Reconnect() // msg is sent: the templates go into the next message
	}
	if err != nil {
		e.Errors++
		n := uint64(e.builder.SequenceNumber() - binary.BigEndian.Uint32(msg[8:12]))
		e.lost.Add(n)
		e.errLog.Error().Err(err).Str("collector", e.cfg.Address).Uint64("flows", n).Msg("UDP send failed; flows of the datagram lost")
		return nil
	}
	e.Messages++
	e.sentAt = time.Now()
	return nil
}

// keepAlive sends an empty IPFIX message on a TCP/TLS connection idle
// for KeepAlive (RFC 7011 §3: a message holds zero or more sets).
func (e *IPFIXExporter) keepAlive() error {
	if e.conn == nil || !e.stream || time.Since(e.sentAt) < e.cfg.KeepAlive {
		return nil
	}
	msg := ipfix.MessageHeader{Version: ipfix.Version, Length: ipfix.HeaderLen, ExportTime: uint32(time.Now().Unix()),
		SequenceNumber: e.builder.SequenceNumber(), ObservationDomainID: e.cfg.ObservationDomainID}.Append(nil)
	return e.write(msg)
}

// checkPeer finds a TCP/TLS connection the collector has closed or reset
// before anything more is written into it.
func (e *IPFIXExporter) checkPeer() {
	if e.conn == nil || e.sock == nil {
		return
	}
	state, err := peekPeer(e.sock)
	switch state {
	case peerQuiet:
		return
	case peerData:
		// A TLS alert (close_notify, a late rejection) or post-handshake
		// message, or bytes a TCP collector should not send: read them.
		e.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		var buf [512]byte
		_, err = e.conn.Read(buf[:])
		e.conn.SetReadDeadline(time.Time{})
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			return
		}
	}
	e.lostConn(fmt.Errorf("collector closed the connection: %w", err))
}

// ensureConnected reconnects a TCP/TLS exporter when its backoff allows,
// and resends its window on the new connection.
func (e *IPFIXExporter) ensureConnected() error {
	if !e.stream {
		return nil
	}
	if e.conn == nil {
		if time.Now().Before(e.retryAt) {
			return fmt.Errorf("%w: %s: reconnecting in %v", ErrUnavailable, e.cfg.Address, time.Until(e.retryAt).Round(time.Millisecond))
		}
		if err := e.dial(); err != nil {
			e.warnLog.Warn().Err(err).Str("collector", e.cfg.Address).Dur("retry_in", e.backoff).Msg("collector unreachable; flows wait in the queue")
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if e.win.dirty {
			n := e.win.len()
			err := e.win.each(e.builder.Add)
			if err == nil {
				err = e.builder.Flush()
			}
			if err != nil && !errors.Is(err, errConnLost) {
				return err
			}
			if e.conn != nil {
				e.resent.Add(uint64(n))
				e.win.dirty = false
				e.held.Store(0)
				e.log.Info().Int("flows", n).Str("collector", e.cfg.Address).Msg("resent the flows not known delivered")
			}
		}
		if e.conn == nil {
			return fmt.Errorf("%w: %s: the connection died while resending", ErrUnavailable, e.cfg.Address)
		}
	}
	return nil
}

// prepare readies a TCP/TLS exporter for a batch: it checks the
// connection and reconnects if it can, or returns ErrUnavailable.
func (e *IPFIXExporter) prepare() error {
	e.checkPeer()
	return e.ensureConnected()
}

// Export implements Exporter.
func (e *IPFIXExporter) Export(recs []flow.Record) error {
	if err := e.prepare(); err != nil {
		return err
	}
	for i := range recs {
		t, b, err := e.enc.Encode(&recs[i])
		if err != nil {
			return fmt.Errorf("encode flow %d: %w", recs[i].FlowID, err)
		}
		if e.stream {
			if ev := e.win.add(t, b); ev > 0 && e.win.dirty {
				// Pushed out of the window before being resent.
				e.lost.Add(uint64(ev))
				e.errLog.Error().Int("flows", ev).Msg("resend window full while disconnected; flows lost")
			}
			if e.conn == nil {
				// The connection died in this batch: the window resends
				// the rest too.
				e.held.Store(int64(e.win.len()))
				continue
			}
		}
		if err := e.builder.Add(t, b); err != nil && !errors.Is(err, errConnLost) {
			return err
		}
	}
	return nil
}

// Flush implements Exporter.
func (e *IPFIXExporter) Flush() error {
	if e.stream && e.conn == nil {
		// Records already taken are in the window.
		return e.ensureConnected()
	}
	if err := e.builder.Flush(); err != nil && !errors.Is(err, errConnLost) {
		return err
	}
	if e.bw != nil {
		return e.bw.Flush()
	}
	if err := e.ensureConnected(); err != nil {
		return err
	}
	if err := e.keepAlive(); err != nil && !errors.Is(err, errConnLost) {
		return err
	}
	return nil
}

// Close flushes and closes. Over TCP/TLS it half-closes and waits (up to
// DialTimeout) for the collector to close its side, which it does after
// reading everything; a connection that dies instead is reconnected and
// the window resent, a few times. Flows still held then are counted lost.
func (e *IPFIXExporter) Close() error {
	var err error
	if e.stream {
		err = e.closeStream()
	} else {
		err = e.Flush()
	}
	if e.conn != nil {
		err = errors.Join(err, e.conn.Close())
		e.conn = nil
	}
	if e.file != nil {
		err = errors.Join(err, e.file.Close())
	}
	return err
}

func (e *IPFIXExporter) closeStream() error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if e.conn == nil && e.win.dirty {
			e.retryAt = time.Time{} // one more attempt now, whatever the backoff
		}
		if err = e.Flush(); err != nil || e.conn == nil {
			break
		}
		if err = e.confirmClose(); err == nil {
			e.win.reset()
			return nil
		}
		e.lostConn(err)
	}
	if n := e.win.len(); e.win.dirty && n > 0 {
		e.lost.Add(uint64(n))
		e.held.Store(0)
		e.log.Error().Err(err).Int("flows", n).Str("collector", e.cfg.Address).
			Msg("collector unavailable at shutdown; flows not known delivered are lost")
		e.win.reset()
		return fmt.Errorf("IPFIX over %s to %s: %d flows not delivered: %w", e.cfg.Transport, e.cfg.Address, n, errors.Join(err, ErrUnavailable))
	}
	return nil
}

// confirmClose half-closes the connection and waits for the collector's
// EOF. A collector that keeps its side open past the wait is taken to
// have the data (it is alive and reading).
func (e *IPFIXExporter) confirmClose() error {
	var err error
	if e.tlsConn != nil {
		err = e.tlsConn.CloseWrite()
	} else if cw, ok := e.conn.(interface{ CloseWrite() error }); ok {
		err = cw.CloseWrite()
	}
	if err != nil {
		return err
	}
	e.conn.SetReadDeadline(time.Now().Add(e.cfg.DialTimeout))
	var buf [512]byte
	for {
		_, err := e.conn.Read(buf[:])
		var ne net.Error
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, &ne) && ne.Timeout():
			e.warnLog.Warn().Str("collector", e.cfg.Address).Msg("collector did not close its side of the connection; assuming it has the flows")
			return nil
		default:
			return err
		}
	}
}

// JSONExporter writes one JSON document per flow and line, with the field
// names of the stored documents (flow.JSONLinesWriter), buffered.
type JSONExporter struct {
	w  *bufio.Writer
	jw *flow.JSONLinesWriter
	c  io.Closer
}

// NewJSONExporter writes to w (closed on Close if it is an io.Closer other
// than os.Stdout).
func NewJSONExporter(w io.Writer) *JSONExporter {
	bw := bufio.NewWriterSize(w, 256<<10)
	e := &JSONExporter{w: bw, jw: flow.NewJSONLinesWriter(bw)}
	if c, ok := w.(io.Closer); ok && w != os.Stdout {
		e.c = c
	}
	return e
}

// Export implements Exporter.
func (e *JSONExporter) Export(recs []flow.Record) error {
	for i := range recs {
		if err := e.jw.Write(&recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Flush implements Exporter.
func (e *JSONExporter) Flush() error { return e.w.Flush() }

// Close implements Exporter.
func (e *JSONExporter) Close() error {
	err := e.w.Flush()
	if e.c != nil {
		err = errors.Join(err, e.c.Close())
	}
	return err
}

// MultiExporter sends every batch to several exporters.
type MultiExporter []Exporter

// preparer is an exporter that can say, before a batch, whether it will
// take it (see ErrUnavailable).
type preparer interface{ prepare() error }

// Export implements Exporter; it returns the first error after trying all.
// When one exporter is unavailable none is given the batch, so that the
// retried batch reaches each exporter once.
func (m MultiExporter) Export(recs []flow.Record) error {
	for _, e := range m {
		if p, ok := e.(preparer); ok {
			if err := p.prepare(); err != nil {
				return err
			}
		}
	}
	var errs []error
	for _, e := range m {
		if err := e.Export(recs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Flush implements Exporter.
func (m MultiExporter) Flush() error {
	var errs []error
	for _, e := range m {
		errs = append(errs, e.Flush())
	}
	return errors.Join(errs...)
}

// Close implements Exporter.
func (m MultiExporter) Close() error {
	var errs []error
	for _, e := range m {
		errs = append(errs, e.Close())
	}
	return errors.Join(errs...)
}

// ExportStats implements ExportStatser: the sum over the exporters.
func (m MultiExporter) ExportStats() ExportStats {
	var s ExportStats
	for _, e := range m {
		if es, ok := e.(ExportStatser); ok {
			s.add(es.ExportStats())
		}
	}
	return s
}
