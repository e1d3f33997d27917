package probe

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/ipfix"
)

// Exporter sends flow records somewhere. The probe calls it from a single
// export goroutine, never from the capture path.
type Exporter interface {
	// Export encodes and sends (or buffers) records. An error means the
	// records were not delivered; the caller counts them as lost.
	Export(recs []flow.Record) error
	// Flush sends what is buffered.
	Flush() error
	Close() error
}

// IPFIXConfig configures IPFIX export.
type IPFIXConfig struct {
	Transport           string // "udp" (default), "tcp", "tls" or "file"
	Address             string // host:port of the collector, or the file path
	ObservationDomainID uint32
	EnterpriseNumber    uint32 // PEN of the MQTT elements; default ipfix.DefaultMQTTPEN
	MTU                 int    // UDP path MTU; default 1500
	TemplateRefresh     time.Duration
	TLS                 *tls.Config // for "tls"
	Logger              zerolog.Logger
	DialTimeout         time.Duration
	// KeepAlive: over TCP/TLS, an exporter that sent nothing for this long
	// sends an empty IPFIX message (a header without sets), so collectors
	// can close connections that are really dead (default DefaultKeepAlive).
	KeepAlive time.Duration
}

// DefaultKeepAlive is the idle interval after which a TCP/TLS exporter
// sends an empty IPFIX message.
const DefaultKeepAlive = 30 * time.Second

// IPFIXExporter encodes flows as IPFIX (RFC 7011) and sends them over UDP,
// TCP or TLS, or writes an IPFIX file (RFC 5655). Over TCP/TLS it
// reconnects with exponential backoff and resends its templates.
type IPFIXExporter struct {
	cfg     IPFIXConfig
	enc     *flow.Encoder
	builder *ipfix.Builder
	conn    net.Conn
	file    *os.File
	bw      *bufio.Writer
	backoff time.Duration
	retryAt time.Time
	sentAt  time.Time // last message written (keep-alive)
	log     zerolog.Logger
	// Messages, Errors count sent messages and failed sends.
	Messages, Errors uint64
}

// NewIPFIXExporter connects (or creates the file).
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
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	enc, err := flow.NewEncoder(cfg.EnterpriseNumber)
	if err != nil {
		return nil, err
	}
	e := &IPFIXExporter{cfg: cfg, enc: enc, log: cfg.Logger}
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
	case "tcp", "tls":
		bc.Transport = ipfix.TCP
		if err := e.dial(); err != nil {
			// Start anyway: the collector may come up later; records wait
			// in the queue and the exporter retries with backoff.
			e.log.Warn().Err(err).Str("collector", cfg.Address).Msg("collector not reachable yet; retrying with backoff")
		}
	case "file":
		bc.Transport = ipfix.File
		f, err := os.Create(cfg.Address)
		if err != nil {
			return nil, fmt.Errorf("IPFIX file: %w", err)
		}
		e.file = f
		e.bw = bufio.NewWriterSize(f, 1<<20)
	default:
		return nil, fmt.Errorf("unknown IPFIX transport %q (use udp, tcp, tls or file)", cfg.Transport)
	}
	e.builder = ipfix.NewBuilder(bc, e.write)
	for _, t := range enc.Templates() {
		if err := e.builder.AddTemplate(t); err != nil {
			return nil, fmt.Errorf("IPFIX templates: %w", err)
		}
	}
	return e, nil
}

func (e *IPFIXExporter) dial() error {
	d := net.Dialer{Timeout: e.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	var conn net.Conn
	var err error
	if e.cfg.Transport == "tls" {
		cfg := e.cfg.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		conn, err = tls.DialWithDialer(&d, "tcp", e.cfg.Address, cfg)
	} else {
		conn, err = d.Dial("tcp", e.cfg.Address)
	}
	if err != nil {
		if e.backoff == 0 {
			e.backoff = 250 * time.Millisecond
		} else {
			e.backoff = min(2*e.backoff, 30*time.Second)
		}
		e.retryAt = time.Now().Add(e.backoff)
		return fmt.Errorf("IPFIX over %s to %s: %w", e.cfg.Transport, e.cfg.Address, err)
	}
	e.conn = conn
	e.backoff = 0
	e.sentAt = time.Now()
	if e.builder != nil {
		e.builder.Reconnect() // templates go out again on the new connection
	}
	e.log.Info().Str("collector", e.cfg.Address).Str("transport", e.cfg.Transport).Msg("connected to collector")
	return nil
}

// errNotConnected is returned while a TCP/TLS exporter waits to reconnect.
var errNotConnected = errors.New("not connected to the collector")

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
		return errNotConnected
	}
	_, err := e.conn.Write(msg)
	if err != nil {
		e.Errors++
		if e.cfg.Transport != "udp" {
			e.log.Warn().Err(err).Msg("lost the collector connection; reconnecting")
			e.conn.Close()
			e.conn = nil
			e.retryAt = time.Now()
		}
		return fmt.Errorf("send IPFIX message: %w", err)
	}
	e.Messages++
	e.sentAt = time.Now()
	return nil
}

// keepAlive sends an empty IPFIX message on a TCP/TLS connection idle
// for KeepAlive (RFC 7011 §3: a message holds zero or more sets).
func (e *IPFIXExporter) keepAlive() error {
	if e.conn == nil || e.cfg.Transport == "udp" || time.Since(e.sentAt) < e.cfg.KeepAlive {
		return nil
	}
	msg := ipfix.MessageHeader{Version: ipfix.Version, Length: ipfix.HeaderLen, ExportTime: uint32(time.Now().Unix()),
		SequenceNumber: e.builder.SequenceNumber(), ObservationDomainID: e.cfg.ObservationDomainID}.Append(nil)
	return e.write(msg)
}

// ensureConnected reconnects a TCP/TLS exporter when its backoff allows.
func (e *IPFIXExporter) ensureConnected() error {
	if e.conn != nil || e.bw != nil {
		return nil
	}
	if time.Now().Before(e.retryAt) {
		return errNotConnected
	}
	return e.dial()
}

// Export implements Exporter.
func (e *IPFIXExporter) Export(recs []flow.Record) error {
	if err := e.ensureConnected(); err != nil {
		return err
	}
	for i := range recs {
		t, b, err := e.enc.Encode(&recs[i])
		if err != nil {
			return fmt.Errorf("encode flow %d: %w", recs[i].FlowID, err)
		}
		if err := e.builder.Add(t, b); err != nil {
			return err
		}
	}
	return nil
}

// Flush implements Exporter.
func (e *IPFIXExporter) Flush() error {
	if err := e.ensureConnected(); err != nil {
		return err
	}
	if err := e.builder.Flush(); err != nil {
		return err
	}
	if e.bw != nil {
		return e.bw.Flush()
	}
	return e.keepAlive()
}

// Close flushes and closes.
func (e *IPFIXExporter) Close() error {
	err := e.Flush()
	if e.conn != nil {
		err = errors.Join(err, e.conn.Close())
	}
	if e.file != nil {
		err = errors.Join(err, e.file.Close())
	}
	return err
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

// Export implements Exporter; it returns the first error after trying all.
func (m MultiExporter) Export(recs []flow.Record) error {
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
