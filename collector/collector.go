// Package collector runs `mission collect`: it receives IPFIX messages over
// UDP, TCP and TLS (or reads IPFIX files), decodes them with per-session
// template state, turns MQTT flow records (ours and the original MISSION
// prototype's) and third-party flow records into documents, and hands them
// to a Sink (the store).
//
// Every drop is counted per exporter and logged at a limited rate:
// messages from exporters outside the allow-list, malformed messages, data
// sets without template, records lost according to sequence numbers.
package collector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/tlsconf"
	"github.com/mission-ids/mission/ipfix"
)

// Sink receives documents; *store.Writer implements it.
type Sink interface {
	// PutBatch takes documents for storing. It must not keep docs after it
	// returns, and should not wait for the database (store.Writer queues).
	// An error means some documents were not taken (store.Writer: an error
	// wrapping store.ErrDropped, already counted and logged, or
	// store.ErrClosed); the collector counts and logs it.
	PutBatch(docs []flow.Document) error
}

// AckSink is a Sink that tells when documents are safe (*store.Writer:
// inserted, spooled, rejected or dropped), so the journal keeps a message
// until then. With a Sink that is not an AckSink, a message counts as
// settled when PutBatch returns.
type AckSink interface {
	Sink
	// PutBatchAck is PutBatch that calls done once none of the documents
	// it took is only in memory; never when it returns store.ErrClosed.
	PutBatchAck(docs []flow.Document, done func()) error
}

// Config configures a collector. Zero values take the defaults.
type Config struct {
	Host string // listen address; default all interfaces
	Port int    // UDP and TCP port; default 2055 (the original's); 0 picks a free port
	// Listen says which transports to serve on Port: any of "udp", "tcp";
	// default both. TLS is served on TLSPort when TLS is set. "unix" serves
	// IPFIX over a stream (framed as over TCP) on the Unix socket
	// UnixSocket instead of a port; "none" alone serves only TLS.
	Listen  []string
	TLSPort int
	TLS     *tls.Config // server certificate; ClientAuth for mutual TLS
	// UnixSocket is the socket path of the "unix" transport. It is created
	// with mode 0600 (only this user can connect; put it in a private
	// directory so it is never reachable before that), a stale socket at the
	// path is replaced, and Allow does not apply to it; its exporters are
	// recorded as 127.0.0.1 port 0.
	UnixSocket string

	UDPReaders    int // sockets sharing the UDP port (SO_REUSEPORT); default 2
	UDPReadBuffer int // socket receive buffer; default 16 MiB

	// Allow, if not empty, lists the exporter networks accepted; others
	// are dropped and counted.
	Allow []netip.Prefix

	EnterpriseNumber uint32       // PEN of the MQTT elements; default 9999
	IPFIX            ipfix.Config // template session limits
	// Limits bound the template state of all listeners together: one
	// ipfix.Budget per Collector (unless IPFIX.Budget is set). Zero fields
	// take the ipfix defaults, which keep the collector under ~256 MiB.
	Limits ipfix.Limits

	// TCP and TLS: bounds on open connections (total and per source
	// address; beyond them a new connection is closed at once and
	// counted), the idle timeout (a connection without a complete message
	// for this long is closed; negative: never), and the graceful drain
	// at shutdown. Zero values take the Default* constants.
	MaxTCPConns          int
	MaxTCPConnsPerSource int
	TCPIdleTimeout       time.Duration
	DrainQuiet           time.Duration
	DrainTimeout         time.Duration

	// Identities persists the identity table (client ids learned from
	// CONNECT flows, given to later flows of the same connection that
	// arrive without one); nil keeps it in memory only. MaxIdentities
	// bounds the table (default DefaultMaxIdentities).
	Identities    IdentityStore
	MaxIdentities int

	// Journal, if set, keeps every received message on disk until the
	// sink has taken its documents; Run first decodes what an earlier run
	// left in it (see OpenJournal). The caller closes it after the sink.
	Journal *Journal

	// Quarantine, if set, receives the data records rejected as not valid
	// flows (still counted by reason), instead of only counting them.
	Quarantine Quarantine

	// Flows, if set, sees every decoded flow before it is stored (detection).
	Flows func(r *flow.Record)

	Logger zerolog.Logger
}

func (c *Config) defaults() {
	if c.Port < 0 {
		c.Port = 0
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{"udp", "tcp"}
	}
	if c.MaxTCPConns <= 0 {
		c.MaxTCPConns = DefaultMaxTCPConns
	}
	if c.MaxTCPConnsPerSource <= 0 {
		c.MaxTCPConnsPerSource = DefaultMaxTCPConnsPerSource
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.DrainQuiet <= 0 {
		c.DrainQuiet = DefaultDrainQuiet
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.UDPReaders <= 0 {
		c.UDPReaders = 2
	}
	if c.UDPReadBuffer <= 0 {
		c.UDPReadBuffer = 16 << 20
	}
	if c.EnterpriseNumber == 0 {
		c.EnterpriseNumber = ipfix.DefaultMQTTPEN
	}
	if c.IPFIX.Registry == nil {
		c.IPFIX.Registry = ipfix.NewRegistry(c.EnterpriseNumber)
	}
	if c.IPFIX.Budget == nil {
		c.IPFIX.Budget = ipfix.NewBudget(c.Limits)
	}
}

// Collector receives IPFIX and stores flows.
type Collector struct {
	cfg  Config
	sink Sink
	log  zerolog.Logger
	warn zerolog.Logger // rate-limited

	mu        sync.Mutex
	exporters map[netip.Addr]*ExporterStats
	addrs     []net.Addr
	ready     chan struct{}

	totals struct {
		messages, records, mqtt, coap, other, options, malformed, denied, storeErrors atomic.Uint64
	}
	tcp     tcpCounters
	tcpOpen atomic.Int64
	ids     *identityTable
	// invalid counts records rejected as flows, by flow.InvalidReason.
	invalid     []atomic.Uint64
	invalidWarn zerolog.Logger // rate-limited, apart from warn so floods do not hide other warnings
	evictions   evictionLog
	connSeq     atomic.Uint64 // journal session numbers of TCP/TLS connections
}

// ExporterStats are the counters of one exporter (by address).
type ExporterStats struct {
	Messages        uint64
	Records         uint64 // data records decoded (MQTT, CoAP and other flows)
	MQTTFlows       uint64
	CoAPFlows       uint64
	OtherFlows      uint64 // third-party standard flows
	OptionsRecords  uint64 // options data (exporter statistics), not stored
	Malformed       uint64 // messages rejected as malformed
	TemplateMisses  uint64 // data sets dropped for want of a template
	RecordsLost     uint64 // records missing according to sequence numbers
	SequenceGaps    uint64
	TemplatesActive int
	Denied          uint64 // messages or connections refused by the allow-list
	InvalidRecords  uint64 // data records that are not valid flows, dropped
	JournalFull     uint64 // UDP messages dropped because the journal was full
}

// maxExporters bounds the per-exporter table (a flood of spoofed UDP
// sources must not grow it without bound); beyond it counters go to the
// unspecified address.
const maxExporters = 4096

// New returns a collector that stores into sink.
func New(cfg Config, sink Sink) *Collector {
	cfg.defaults()
	c := &Collector{cfg: cfg, sink: sink, log: cfg.Logger, exporters: make(map[netip.Addr]*ExporterStats), ready: make(chan struct{})}
	c.warn = c.log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
	c.invalidWarn = c.log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
	c.invalid = make([]atomic.Uint64, len(flow.InvalidReasons())+1)
	c.ids = newIdentityTable(cfg.MaxIdentities, cfg.Identities)
	c.evictions.last = make(map[netip.Addr]ipfix.Evictions)
	return c
}

// Addrs returns the bound listener addresses once Run is listening.
func (c *Collector) Addrs(ctx context.Context) ([]net.Addr, error) {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]net.Addr(nil), c.addrs...), nil
}

// Exporters returns a copy of the per-exporter counters.
func (c *Collector) Exporters() map[netip.Addr]ExporterStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.Addr]ExporterStats, len(c.exporters))
	for k, v := range c.exporters {
		out[k] = *v
	}
	return out
}

// Stats are the collector-wide counters (ExporterStats has them per exporter).
type Stats struct {
	Messages, Records, MQTTFlows, CoAPFlows, OtherFlows, OptionsRecords, Malformed, Denied, StoreErrors uint64
}

// Stats returns the collector-wide counters.
func (c *Collector) Stats() Stats {
	t := &c.totals
	return Stats{t.messages.Load(), t.records.Load(), t.mqtt.Load(), t.coap.Load(), t.other.Load(), t.options.Load(),
		t.malformed.Load(), t.denied.Load(), t.storeErrors.Load()}
}

func (c *Collector) allowed(a netip.Addr) bool {
	if len(c.cfg.Allow) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range c.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (c *Collector) exporter(a netip.Addr) *ExporterStats {
	a = a.Unmap()
	s := c.exporters[a]
	if s == nil {
		if len(c.exporters) >= maxExporters {
			a = netip.IPv6Unspecified()
			if s = c.exporters[a]; s != nil {
				return s
			}
		}
		s = &ExporterStats{}
		c.exporters[a] = s
	}
	return s
}

func (c *Collector) deny(from netip.AddrPort, what string) {
	c.totals.denied.Add(1)
	c.mu.Lock()
	c.exporter(from.Addr()).Denied++
	c.mu.Unlock()
	c.warn.Warn().Str("exporter", from.String()).Msgf("%s from an exporter outside the allow-list: dropped", what)
}

// Run listens on the configured transports until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.loadIdentities(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	start := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}()
	}
	if c.cfg.Journal != nil {
		if err := c.replayJournal(ctx); err != nil {
			return err
		}
	}
	host := c.cfg.Host
	for _, t := range c.cfg.Listen {
		switch t {
		case "udp":
			conns, err := listenUDP(ctx, host, c.cfg.Port, c.cfg.UDPReaders, c.cfg.UDPReadBuffer)
			if err != nil {
				return fmt.Errorf("listen UDP %s: %w", net.JoinHostPort(host, fmt.Sprint(c.cfg.Port)), err)
			}
			c.addAddr(conns[0].LocalAddr())
			if c.cfg.Port == 0 {
				// Later TCP listeners share the port UDP got.
				c.cfg.Port = conns[0].LocalAddr().(*net.UDPAddr).Port
			}
			for _, conn := range conns {
				conn := conn
				start(func() error { return c.serveUDP(ctx, conn) })
			}
		case "tcp":
			ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(c.cfg.Port)))
			if err != nil {
				return fmt.Errorf("listen TCP: %w", err)
			}
			c.addAddr(ln.Addr())
			start(func() error { return c.serveTCP(ctx, ln, "tcp") })
		case "none": // only TLS (or a Unix socket) is served
		case "unix":
			ln, err := listenUnix(c.cfg.UnixSocket)
			if err != nil {
				return err
			}
			c.addAddr(ln.Addr())
			start(func() error { return c.serveTCP(ctx, ln, "unix") })
		default:
			return fmt.Errorf("unknown transport %q (use udp, tcp, or none for TLS only; TLS has its own port)", t)
		}
	}
	if c.cfg.TLS != nil {
		ln, err := tls.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(c.cfg.TLSPort)), tlsconf.Harden(c.cfg.TLS))
		if err != nil {
			return fmt.Errorf("listen TLS: %w", err)
		}
		c.addAddr(ln.Addr())
		start(func() error { return c.serveTCP(ctx, ln, "tls") })
	}
	close(c.ready)
	for _, a := range c.addrs {
		c.log.Info().Str("address", a.String()).Str("transport", a.Network()).Msg("collector listening")
	}
	if plain := exposedPlain(host, c.cfg.Listen, c.cfg.Allow); len(plain) > 0 {
		c.log.Warn().Str("host", host).Strs("transports", plain).
			Msg("collector reachable beyond this host over plain IPFIX without an allow-list: anyone who reaches it can inject or forge flows; use IPFIX over TLS with client certificates (--tls-cert, --tls-key, --tls-client-ca), restrict exporters with --allow, or listen on 127.0.0.1")
	}
	<-ctx.Done()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// exposedPlain returns the plain (unauthenticated) transports of listen
// that a non-loopback host serves to everyone (no allow-list).
func exposedPlain(host string, listen []string, allow []netip.Prefix) []string {
	if len(allow) > 0 || host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	var out []string
	for _, t := range listen {
		if t == "udp" || t == "tcp" {
			out = append(out, t)
		}
	}
	return out
}

func (c *Collector) addAddr(a net.Addr) {
	c.mu.Lock()
	c.addrs = append(c.addrs, a)
	c.mu.Unlock()
}

// handler decodes messages of one decoding context (a UDP reader, a TCP
// connection, a file) and batches documents for the sink, or hands the
// records to emit (ReadRecords).
type handler struct {
	c    *Collector
	dec  *flow.Decoder
	docs []flow.Document
	rec  flow.Record
	from netip.AddrPort
	now  time.Time
	// emit, if set, gets each flow instead of the sink; its first error
	// stops decoding and is kept in emitErr.
	emit    func(r *flow.Record, mqtt bool) error
	emitErr error
	// counters accumulated per message, merged into the exporter's
	mqtt, coap, other, options, invalid uint64             // mqtt, coap: flows of our templates by protocol
	invalidReason                       flow.InvalidReason // of the last invalid record
	invalidTemplate                     uint16
	// sysInit holds exporters' systemInitTimeMilliseconds by session and
	// observation domain, for flows timed in system uptime.
	sysInit map[initKey]time.Time
	// The journal record of the message being decoded (nil: none), its
	// receive time, and the index of the next data record in it.
	jseg     *jseg
	joff     int64
	received time.Time
	recIdx   uint32
}

type initKey struct {
	exporter netip.AddrPort
	domain   uint32
}

func (c *Collector) newHandler() *handler {
	return &handler{c: c, dec: flow.NewDecoder(c.cfg.EnterpriseNumber), docs: make([]flow.Document, 0, 64),
		sysInit: make(map[initKey]time.Time)}
}

// record is the ipfix decode callback.
func (h *handler) record(rec ipfix.Record) error {
	key := initKey{h.from, rec.Header.ObservationDomainID}
	idx := h.recIdx
	h.recIdx++
	if rec.Template.IsOptions() {
		h.options++
		if t, ok := flow.SystemInit(rec); ok {
			if len(h.sysInit) >= maxExporters {
				clear(h.sysInit)
			}
			h.sysInit[key] = t
		}
		return nil
	}
	r := &h.rec
	mqtt, err := h.dec.DecodeRecord(rec, r, h.sysInit[key])
	if err != nil {
		// Not a flow (a hostile or broken template): count and drop.
		var ie *flow.InvalidRecordError
		if errors.As(err, &ie) && int(ie.Reason) < len(h.c.invalid) {
			h.c.invalid[ie.Reason].Add(1)
			h.invalidReason = ie.Reason
		}
		h.invalid++
		h.invalidTemplate = rec.Template.ID
		if q := h.c.cfg.Quarantine; q != nil && h.emit == nil {
			reason := "invalid"
			if ie != nil {
				reason = ie.Reason.String()
			}
			q.PutInvalid(map[string]any{"exporterAddress": h.from.String(), "observationDomainId": rec.Header.ObservationDomainID,
				"templateId": rec.Template.ID, "reason": reason, "fields": rec.Map(), "collectorReceiveTime": h.now})
		}
		return nil
	}
	r.Exporter = h.from
	r.Received = h.now
	if mqtt {
		if r.ApplicationProtocol == flow.AppCoAP {
			h.coap++
		} else {
			h.mqtt++
		}
		if r.ApplicationProtocol != flow.AppCoAP {
			// MQTT sessions only: a CoAP flow has no client id to learn or fill.
			h.c.ids.observe(r)
		}
		if h.c.cfg.Flows != nil {
			h.c.cfg.Flows(r)
		}
	} else {
		h.other++
	}
	if h.emit != nil {
		rec := *r
		if err := h.emit(&rec, mqtt); err != nil {
			h.emitErr = err
			return err
		}
		return nil
	}
	d := r.ToDocument()
	if d.FlowID == 0 && h.jseg != nil {
		// No flow id: the store would draw a random _id; one derived from
		// the journal record keeps a replay from storing a copy.
		d.ID = journalDocID(h.jseg, h.joff, idx)
	}
	if !mqtt {
		d.MQTTControlTypeName = ""
		d.MQTTCorrelationSource = ""
		d.IPFIXFields = rec.Map()
	}
	h.docs = append(h.docs, d)
	return nil
}

// message decodes one IPFIX message from an exporter with sess and stores
// its records.
func (h *handler) message(sess *ipfix.Session, msg []byte) error {
	h.now = time.Now()
	if !h.received.IsZero() {
		h.now, h.received = h.received, time.Time{}
	}
	h.recIdx = 0
	before := sess.Counters()
	err := sess.Decode(msg, h.record)
	after := sess.Counters()
	templates := sess.NumTemplates()
	h.flush()

	c := h.c
	c.totals.messages.Add(1)
	c.totals.records.Add(h.mqtt + h.coap + h.other)
	c.totals.mqtt.Add(h.mqtt)
	c.totals.coap.Add(h.coap)
	c.totals.other.Add(h.other)
	c.totals.options.Add(h.options)
	c.mu.Lock()
	s := c.exporter(h.from.Addr())
	s.Messages++
	s.Records += h.mqtt + h.coap + h.other
	s.MQTTFlows += h.mqtt
	s.CoAPFlows += h.coap
	s.OtherFlows += h.other
	s.OptionsRecords += h.options
	s.TemplateMisses += after.DataSetsDropped - before.DataSetsDropped
	s.RecordsLost += after.RecordsLost - before.RecordsLost
	s.SequenceGaps += after.SequenceGaps - before.SequenceGaps
	s.TemplatesActive = templates
	s.InvalidRecords += h.invalid
	malformed := errors.Is(err, ipfix.ErrMalformed) || errors.Is(err, ipfix.ErrIncomplete)
	if malformed {
		s.Malformed++
	}
	c.mu.Unlock()
	if h.invalid > 0 {
		c.invalidWarn.Warn().Uint64("records", h.invalid).Str("reason", h.invalidReason.String()).
			Uint16("template", h.invalidTemplate).Str("exporter", h.from.String()).
			Msg("data records that are not valid flows dropped")
	}
	h.mqtt, h.coap, h.other, h.options, h.invalid = 0, 0, 0, 0, 0
	c.logEvictions()

	switch {
	case h.emitErr != nil:
		err = h.emitErr
	case malformed:
		c.totals.malformed.Add(1)
		c.warn.Warn().Err(err).Str("exporter", h.from.String()).Msg("malformed IPFIX message")
	default:
		err = nil // template problems are counted, not fatal
	}
	if lost := after.RecordsLost - before.RecordsLost; lost > 0 {
		c.warn.Warn().Uint64("records", lost).Str("exporter", h.from.String()).
			Msg("records lost between exporter and collector (sequence gap); on UDP raise the socket buffer or use TCP")
	}
	if miss := after.DataSetsDropped - before.DataSetsDropped; miss > 0 {
		c.warn.Warn().Uint64("data_sets", miss).Str("exporter", h.from.String()).Msg("data sets without template dropped")
	}
	return err
}

func (h *handler) flush() {
	seg := h.jseg
	h.jseg = nil
	if len(h.docs) == 0 {
		if seg != nil {
			seg.release()
		}
		return
	}
	var err error
	if as, ok := h.c.sink.(AckSink); ok && seg != nil {
		err = as.PutBatchAck(h.docs, seg.release)
	} else {
		err = h.c.sink.PutBatch(h.docs)
		if seg != nil {
			seg.release()
		}
	}
	if err != nil {
		h.c.totals.storeErrors.Add(1)
		h.c.warn.Error().Err(err).Int("documents", len(h.docs)).Msg("store refused documents")
	}
	clear(h.docs)
	h.docs = h.docs[:0]
}

// InvalidRecords returns the records dropped as invalid flows, by reason.
func (c *Collector) InvalidRecords() map[flow.InvalidReason]uint64 {
	out := make(map[flow.InvalidReason]uint64, len(c.invalid))
	for _, r := range flow.InvalidReasons() {
		out[r] = c.invalid[r].Load()
	}
	return out
}

// Budget returns the template state budget shared by all listeners.
func (c *Collector) Budget() *ipfix.Budget { return c.cfg.IPFIX.Budget }

// evictionLog logs the budget's evictions at most once per period, one
// line per exporter that lost state since the last log.
type evictionLog struct {
	seen atomic.Uint64 // budget eviction count last logged
	next atomic.Int64  // unix nanoseconds before which nothing is logged
	mu   sync.Mutex
	last map[netip.Addr]ipfix.Evictions // as of the last log; bounded by the budget's own table
}

const (
	evictionLogPeriod   = 10 * time.Second
	evictionLogMaxLines = 10
)

// logEvictions is called after every message: it costs two atomic loads
// unless there are new evictions to report and the period has passed.
func (c *Collector) logEvictions() {
	b := c.cfg.IPFIX.Budget
	e := &c.evictions
	n := b.EvictionCount()
	if n == e.seen.Load() {
		return
	}
	now := time.Now()
	if now.UnixNano() < e.next.Load() || !e.mu.TryLock() {
		return
	}
	defer e.mu.Unlock()
	e.next.Store(now.Add(evictionLogPeriod).UnixNano())
	e.seen.Store(n)
	lines := 0
	for _, ex := range b.Exporters() {
		prev, cur := e.last[ex.Exporter], ex.Evictions
		if cur == prev {
			continue
		}
		e.last[ex.Exporter] = cur
		if lines++; lines > evictionLogMaxLines {
			continue
		}
		c.log.Warn().Str("exporter", ex.Exporter.String()).
			Uint64("sessions", cur.Sessions-prev.Sessions).Uint64("templates", cur.Templates-prev.Templates).
			Uint64("fields", cur.Fields-prev.Fields).Uint64("pending_data_sets", cur.PendingBytes-prev.PendingBytes).
			Int("sessions_held", ex.Usage.Sessions).Int("templates_held", ex.Usage.Templates).
			Msg("IPFIX template state evicted: collector bounds hit, this exporter holds the most (flood or misconfigured exporter?)")
	}
	if lines > evictionLogMaxLines {
		c.log.Warn().Int("exporters", lines-evictionLogMaxLines).Msg("IPFIX template state evicted from more exporters")
	}
}

// loadIdentities reads the persisted identity table before the first
// flow is decoded; a store that cannot be read leaves it empty (logged).
func (c *Collector) loadIdentities(ctx context.Context) {
	if err := c.ids.load(ctx); err != nil {
		c.log.Warn().Err(err).Msg("identity table not loaded from the store; flows of connections opened before this run may lack client ids")
	}
}

// Quarantine receives data records that are not valid flows, as
// documents: exporterAddress, observationDomainId, templateId, reason,
// fields (every field by element name) and collectorReceiveTime. It must
// not block. The store's quarantine collection implements it.
type Quarantine interface {
	PutInvalid(doc map[string]any)
}
