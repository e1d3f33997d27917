// Package probe runs `mission probe`: it captures traffic live (AF_PACKET,
// no cgo) or from pcap/pcapng files, dispatches it by transport and port to
// the trackers of the application protocols configured (protocols.go: MQTT
// over reassembled TCP, CoAP over UDP), and exports one flow record per
// transaction through an Exporter (IPFIX over UDP/TCP/TLS, IPFIX file,
// JSON lines).
//
// Finished flows are gathered in batches of up to 256 (handed over when
// full, after 10 ms of capture time (and of wall time, reading a file), or
// when the capture is idle for a poll timeout), which go through a queue
// bounded in flows (QueueSize) to a single export goroutine that batches
// them and flushes at least every FlushInterval. Emptied batches go back
// to the capture; a batch handed over nearly empty is copied to its own
// size first, so the queue's memory follows the flows it holds, not the
// batches. When the queue is full, a live capture
// (which cannot wait: the kernel would drop packets instead) drops flows
// and counts them; a capture file waits for the exporter (backpressure):
// capture time drives every timeout, so waiting changes no flow.
//
// An exporter that is unavailable (a TCP/TLS collector down, see
// ErrUnavailable) is offered the same batch again every FlushInterval
// while the queue holds the flows behind it: live, until the queue is full
// (then flows are dropped and counted); from a file, for at most
// ConnectTimeout, after which refused batches are counted lost until the
// collector is back.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/app"
	"github.com/mission-ids/mission/probe/bpf"
	"github.com/mission-ids/mission/probe/capture"
	"github.com/mission-ids/mission/probe/coaptrack"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/mission-ids/mission/probe/tracker"
)

// Config configures a probe. Zero values take the defaults.
type Config struct {
	Interface string // live capture on this interface
	ReadFile  string // or read this pcap/pcapng file
	Filter    string // tcpdump-syntax filter, ANDed with nothing: the user's expression
	// Protocols are the application protocols dissected (protocols.go):
	// "mqtt", "coap"; default both.
	Protocols   []string
	MQTTPorts   []uint16
	TLSPorts    []uint16 // MQTT over TLS: counted, not decoded
	CoAPPorts   []uint16 // UDP; default 5683
	CoAPSPorts  []uint16 // CoAP over DTLS: counted, not decoded; default 5684
	SnapLen     int
	Promiscuous bool

	QueueSize     int           // flows waiting for export; default 65536
	BatchSize     int           // flows per export call; default 256
	FlushInterval time.Duration // default 100 ms
	// ConnectTimeout bounds how long flows wait for an unavailable
	// collector when reading a file, and at shutdown; default 30 s.
	ConnectTimeout time.Duration

	Reassembly reassembly.Config
	Tracker    tracker.Config // MQTT
	CoAP       coaptrack.Config

	// StateFile, if set, keeps the MQTT sessions of live connections
	// across runs (state.go): read at start, so connections picked up
	// midstream get their client ids back, and written atomically every
	// StateInterval (default 5 s, wall clock), at the end of a file and at
	// shutdown. An unusable file is logged and ignored.
	StateFile     string
	StateInterval time.Duration

	// LatencyLog, if set, receives a CSV line per exported flow: latency
	// from the capture of its last packet to export, with process CPU and
	// memory (the original prototype's BENCHMARK/FILE_NAME output).
	LatencyLog io.Writer

	Logger zerolog.Logger
}

func (c *Config) defaults() {
	if len(c.MQTTPorts) == 0 {
		c.MQTTPorts = []uint16{1883}
	}
	if c.TLSPorts == nil {
		c.TLSPorts = []uint16{8883}
	}
	if len(c.Protocols) == 0 {
		c.Protocols = DefaultProtocols()
	}
	if len(c.CoAPPorts) == 0 {
		c.CoAPPorts = []uint16{5683}
	}
	if c.CoAPSPorts == nil {
		c.CoAPSPorts = []uint16{5684}
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 65536
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 100 * time.Millisecond
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.SnapLen <= 0 {
		c.SnapLen = capture.MaxFrame
	}
}

// DefaultConnectTimeout is Config.ConnectTimeout's default.
const DefaultConnectTimeout = 30 * time.Second

// Stats is a snapshot of everything the probe counts.
type Stats struct {
	Packets        uint64 // frames read from the source
	Bytes          uint64
	Filtered       uint64 // frames the user-space filter rejected (files)
	NotTCP         uint64 // not IPv4/IPv6 TCP (nor UDP when a UDP protocol is on)
	Fragments      uint64 // IP fragments (not reassembled)
	DecodeErrors   uint64 // truncated or malformed L2–L4 headers
	Unsupported    uint64 // unsupported link type
	TLSPackets     uint64 // TCP segments on the MQTT-over-TLS ports
	OtherTCP       uint64 // TCP segments on other ports
	MQTTSegments   uint64 // TCP segments on the MQTT ports
	CoAPDatagrams  uint64 // UDP datagrams on the CoAP ports
	DTLSPackets    uint64 // UDP datagrams on the CoAP-over-DTLS ports
	OtherUDP       uint64 // UDP datagrams on other ports (a UDP protocol is on)
	KernelReceived uint64
	KernelDropped  uint64

	FlowsQueued   uint64
	FlowsDropped  uint64 // export queue full (live capture only)
	FlowsExported uint64 // taken by the exporter (sent, or held to be resent)
	FlowsLost     uint64 // export failed (write error, collector unavailable past ConnectTimeout)
	ExportErrors  uint64
	QueueDepth    int
	// ExportWait is how long a file capture waited for the exporter
	// (backpressure on a full queue).
	ExportWait time.Duration
	// FlowsDeferred counts flows of batches an unavailable exporter
	// refused and was offered again (each batch counted once per outage).
	FlowsDeferred uint64
	Export        ExportStats // the exporter's own counters (resent, refused datagrams, reconnects)

	Reassembly reassembly.Stats
	Tracker    tracker.Stats // MQTT
	CoAP       coaptrack.Stats
}

// Probe is one capture pipeline.
type Probe struct {
	cfg      Config
	exp      Exporter
	log      zerolog.Logger
	ports    portTables // transport and port → protocol (protocols.go)
	protos   []*protocol
	trackers []app.Tracker // every protocol's, AdvanceAt and FlushAll in this order
	udpOn    bool          // a UDP protocol is on: decode UDP too
	dgram    app.Datagram
	queue    chan []flow.Record    // batches of flows
	room     chan struct{}         // poked by the export goroutine when it took a batch
	free     chan []flow.Record    // emptied batches, back to the capture
	pending  []flow.Record         // the batch being filled by the capture
	due      int64                 // capture time (Unix ns) by which pending is handed over
	started  time.Time             // wall time pending got its first flow (file reads)
	now      int64                 // capture time (Unix ns) of the current packet
	depth    atomic.Int64          // flows in the queue
	asm      *reassembly.Assembler // nil without a TCP protocol
	tr       *tracker.Tracker      // MQTT; nil when off
	coap     coapTracker           // nil when off
	filters  map[capture.LinkType]*bpf.Program
	live     *capture.Live
	src      capture.Source // opened by Open, or by Run
	mu       sync.Mutex
	snapshot Stats
	cap      Stats // owned by the capture goroutine
	exported atomic.Uint64
	lost     atomic.Uint64
	expErrs  atomic.Uint64
	dropped  atomic.Uint64
	deferred atomic.Uint64
	waited   atomic.Int64 // ns the capture waited for the queue
	dropLog  zerolog.Logger
	// wait: the capture waits for room in the queue (file reads) until
	// done is closed (the run is cancelled).
	wait     bool
	done     <-chan struct{}
	stopping chan struct{} // closed when the capture has ended
	state    *stateKeeper
}

// Errors of New for the packet source: a probe reads either an interface
// (Config.Interface) or a capture file (Config.ReadFile).
var (
	ErrNoSource   = errors.New("probe: no packet source: neither an interface nor a capture file")
	ErrTwoSources = errors.New("probe: both an interface and a capture file: a probe reads one source")
)

// ErrCollectorAddress is returned by NewIPFIXExporter over UDP when the
// collector's address (IPFIXConfig.Address, host:port) cannot be used: it
// does not parse or its host does not resolve.
var ErrCollectorAddress = errors.New("probe: unusable collector address")

// New prepares a probe that exports through exp.
func New(cfg Config, exp Exporter) (*Probe, error) {
	cfg.defaults()
	switch {
	case cfg.Interface == "" && cfg.ReadFile == "":
		return nil, ErrNoSource
	case cfg.Interface != "" && cfg.ReadFile != "":
		return nil, fmt.Errorf("%w (interface %q, file %q)", ErrTwoSources, cfg.Interface, cfg.ReadFile)
	}
	// The queue is bounded in flows (depth); the channel only has to hold
	// that many batches of one flow, up to a limit on its own size.
	nbatch := max(1, cfg.QueueSize/captureBatch)
	p := &Probe{cfg: cfg, exp: exp, log: cfg.Logger, queue: make(chan []flow.Record, min(cfg.QueueSize, 1<<16)),
		room: make(chan struct{}, 1), free: make(chan []flow.Record, nbatch+2),
		filters: make(map[capture.LinkType]*bpf.Program), wait: cfg.ReadFile != "", stopping: make(chan struct{})}
	p.dropLog = p.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	if err := p.setupProtocols(); err != nil {
		return nil, err
	}
	rcfg := p.reassemblyConfig()
	if cfg.StateFile != "" && p.tr != nil {
		maxConns := rcfg.MaxConnections
		if maxConns <= 0 {
			maxConns = 200_000
		}
		p.state = newStateKeeper(cfg.StateFile, cfg.StateInterval, maxConns)
		states, err := readStateFile(cfg.StateFile, maxConns)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// The first run: the file is written while running and at shutdown.
			p.log.Debug().Str("file", cfg.StateFile).Msg("no state file yet")
		case err != nil:
			p.log.Warn().Err(err).Msg("state file not used: connections picked up midstream start without their MQTT session")
		default:
			age := rcfg.IdleTimeout
			if age <= 0 {
				age = 10 * time.Minute
			}
			p.tr.Restore(states, age)
			p.log.Info().Str("file", cfg.StateFile).Int("connections", len(states)).Msg("state file read")
		}
	}
	if cfg.Filter != "" {
		// Compile once up front so a bad expression fails at start.
		if _, err := p.filterFor(capture.LinkEthernet); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Probe) filterFor(lt capture.LinkType) (*bpf.Program, error) {
	if f, ok := p.filters[lt]; ok {
		return f, nil
	}
	f, err := bpf.Compile(p.cfg.Filter, bpf.LinkType(lt), p.cfg.SnapLen)
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", p.cfg.Filter, err)
	}
	p.filters[lt] = f
	return f, nil
}

// captureBatch is the number of flows the capture hands to the export
// goroutine at once (each hand-over may wake it: bigger batches cost the
// capture fewer wake-ups); captureLinger bounds how long (capture time) a
// flow waits in a batch that is not full. The export queue is bounded in
// flows, not batches, so a low rate (batches closed by the linger, nearly
// empty) holds as many flows during a collector outage as a high one.
const (
	captureBatch  = 256
	captureLinger = int64(10 * time.Millisecond)
)

// enqueue is the tracker's flow handler: it never blocks the capture.
func (p *Probe) enqueue(r *flow.Record) {
	if p.pending == nil {
		p.pending = p.freeBatch()
	}
	if len(p.pending) == 0 {
		p.due = p.now + captureLinger
		if p.wait {
			p.started = time.Now()
		}
	}
	p.pending = append(p.pending, *r)
	if len(p.pending) == cap(p.pending) {
		p.handOver()
	}
}

// lingerDue hands the pending batch over once its first flow has waited
// captureLinger of capture time; a file read faster than real time waits
// for captureLinger of wall time too (or a full batch), so that a fast
// read hands over full batches instead of one per 10 ms of the capture,
// while a capture piped in as it is recorded keeps the same latency.
func (p *Probe) lingerDue() {
	if p.wait && time.Since(p.started) < time.Duration(captureLinger) {
		p.due = p.now + captureLinger
		return
	}
	p.handOver()
}

// freeBatch returns an emptied batch, or a new one. When none is free but
// batches are queued, the export goroutine is given the processor first:
// with one core (GOMAXPROCS=1) it would otherwise run only when the
// scheduler preempts the capture, and every batch of those 10 ms would be
// a new allocation. The capture still never waits for the exporter.
func (p *Probe) freeBatch() []flow.Record {
	select {
	case b := <-p.free:
		return b[:0]
	default:
	}
	if len(p.queue) > 0 {
		runtime.Gosched()
		select {
		case b := <-p.free:
			return b[:0]
		default:
		}
	}
	return make([]flow.Record, 0, captureBatch)
}

// handOver queues the pending batch. When the queue is full a file
// capture waits (unless the run is cancelled); a live capture drops the
// batch and counts it.
func (p *Probe) handOver() {
	n := len(p.pending)
	if n == 0 {
		return
	}
	b := p.pending
	if n < captureBatch/4 {
		// Nearly empty (closed by the linger): queued as a copy of its own
		// size, so that waiting flows, not batch buffers, fill memory.
		b = slices.Clone(p.pending)
		clear(p.pending)
		p.pending = p.pending[:0]
	} else {
		p.pending = nil
	}
	if p.admit(b) {
		p.cap.FlowsQueued += uint64(n)
		return
	}
	clear(b)
	if p.pending == nil {
		p.pending = b[:0]
	}
	p.dropped.Add(uint64(n))
	p.dropLog.Warn().Uint64("dropped", p.dropped.Load()).
		Msg("export queue full: dropping flows (collector too slow or unreachable; raise --queue-size)")
}

// admit queues b if the queue has room for its flows; a file capture
// waits for room until the run is cancelled.
func (p *Probe) admit(b []flow.Record) bool {
	n := int64(len(b))
	var start time.Time
	for {
		// Only the capture adds to depth, so room seen here stays.
		if p.depth.Load()+n <= int64(p.cfg.QueueSize) {
			p.depth.Add(n)
			select {
			case p.queue <- b:
				if !start.IsZero() {
					p.waited.Add(int64(time.Since(start)))
				}
				return true
			default: // the channel's own bound: as full
				p.depth.Add(-n)
			}
		}
		if !p.wait {
			return false
		}
		if start.IsZero() {
			start = time.Now()
		}
		select {
		case <-p.room:
		case <-p.done:
			p.waited.Add(int64(time.Since(start)))
			return false
		}
	}
}

// Stats returns the latest snapshot (refreshed about every second and at
// the end of the run).
func (p *Probe) Stats() Stats {
	p.mu.Lock()
	s := p.snapshot
	p.mu.Unlock()
	s.FlowsExported = p.exported.Load()
	s.FlowsLost = p.lost.Load()
	s.ExportErrors = p.expErrs.Load()
	s.FlowsDropped = p.dropped.Load()
	s.FlowsDeferred = p.deferred.Load()
	s.QueueDepth = int(p.depth.Load())
	s.ExportWait = time.Duration(p.waited.Load())
	if es, ok := p.exp.(ExportStatser); ok {
		s.Export = es.ExportStats()
		s.FlowsLost += s.Export.FlowsLost
	}
	return s
}

func (p *Probe) publish() {
	s := p.cap
	p.protocolStats(&s)
	if p.live != nil {
		if ks, err := p.live.Stats(); err == nil {
			s.KernelReceived, s.KernelDropped = ks.Received, ks.Dropped
		}
	}
	p.mu.Lock()
	p.snapshot = s
	p.mu.Unlock()
}

// Open opens the packet source (the capture socket, which needs
// CAP_NET_RAW, or the file) without capturing yet, so that the caller can
// drop its privileges before Run. Run opens it when Open was not called.
func (p *Probe) Open() error {
	if p.src != nil {
		return nil
	}
	src, err := p.open()
	if err != nil {
		return err
	}
	p.src = src
	return nil
}

// Run captures until the file ends or ctx is cancelled, then ends every
// open transaction, drains the export queue and flushes the exporter.
func (p *Probe) Run(ctx context.Context) error {
	if err := p.Open(); err != nil {
		return err
	}
	src := p.src
	p.done = ctx.Done()
	exportDone := make(chan error, 1)
	go func() { exportDone <- p.exportLoop() }()

	last, runErr := p.capture(ctx, src)
	_ = src.Close()
	close(p.stopping)

	// Shutdown: keep the live sessions for the next run, then end every
	// connection and transaction, flush the export.
	if p.state != nil && p.tr != nil {
		if err := p.state.final(p.tr); err != nil {
			p.log.Warn().Err(err).Msg("state file not written")
		}
	}
	if p.asm != nil {
		p.asm.FlushAllAt(last)
	}
	for _, t := range p.trackers {
		t.FlushAll()
	}
	p.handOver()
	p.publish()
	close(p.queue)
	expErr := <-exportDone
	p.publish()
	st := p.Stats()
	p.log.Info().Uint64("packets", st.Packets).Uint64("flows", st.FlowsExported).
		Uint64("dropped", st.FlowsDropped).Uint64("lost", st.FlowsLost).Uint64("kernel_dropped", st.KernelDropped).
		Msg("probe stopped")
	return errors.Join(runErr, expErr)
}

func (p *Probe) open() (capture.Source, error) {
	if p.cfg.ReadFile != "" {
		return capture.OpenFile(p.cfg.ReadFile)
	}
	lc := capture.LiveConfig{Interface: p.cfg.Interface, SnapLen: p.cfg.SnapLen, Promiscuous: p.cfg.Promiscuous}
	if p.cfg.Filter != "" && p.cfg.Interface != capture.AnyInterface {
		f, err := p.filterFor(capture.LinkEthernet)
		if err != nil {
			return nil, err
		}
		lc.Filter = f.Raw()
	}
	live, err := capture.OpenLive(lc)
	if err != nil {
		return nil, err
	}
	p.live = live
	p.log.Info().Str("interface", p.cfg.Interface).Str("filter", p.cfg.Filter).Msg("capturing")
	return live, nil
}

// capture is the packet loop. It returns the time of the last packet
// (Unix ns).
func (p *Probe) capture(ctx context.Context, src capture.Source) (int64, error) {
	var (
		pkt      capture.Packet
		seg      capture.Segment
		rseg     reassembly.Segment
		last     int64 // capture time (Unix ns) of the latest packet
		advanced int64 // capture time (Unix ns) of the last Advance
	)
	// Files, and cooked "any" captures, are filtered in user space.
	userFilter := p.cfg.Filter != "" && (p.live == nil || p.cfg.Interface == capture.AnyInterface)
	// Cancellation is noticed at the next packet or poll timeout: a flag
	// costs one atomic load per packet, where polling ctx.Err() only every
	// so many iterations would let a quiet interface (one poll timeout per
	// iteration) delay shutdown by minutes.
	var stop atomic.Bool
	defer context.AfterFunc(ctx, func() { stop.Store(true) })()
	for {
		if stop.Load() {
			return last, nil
		}
		err := src.ReadPacket(&pkt)
		if err != nil {
			switch {
			case errors.Is(err, capture.ErrTimeout):
				// No traffic: let idle timers run on the wall clock.
				p.now = time.Now().UnixNano()
				p.advance()
				p.handOver()
				p.publish()
				advanced = p.now
				p.keepState()
				continue
			case errors.Is(err, io.EOF), errors.Is(err, capture.ErrClosed):
				return last, nil
			}
			return last, fmt.Errorf("read packets: %w", err)
		}
		p.cap.Packets++
		p.cap.Bytes += uint64(pkt.Length)
		if p.cap.Packets&4095 == 0 {
			p.keepState()
		}
		ts := unixNanos(pkt.Timestamp)
		if ts > last {
			last = ts
		}
		if userFilter {
			f, err := p.filterFor(pkt.LinkType)
			if err != nil {
				p.cap.Unsupported++
				continue
			}
			if !f.MatchLen(pkt.Data, pkt.Length) {
				p.cap.Filtered++
				continue
			}
		}
		if p.udpOn {
			err = capture.DecodeL4(pkt.LinkType, pkt.Data, &seg)
		} else {
			err = capture.DecodeTCP(pkt.LinkType, pkt.Data, &seg)
		}
		if err != nil {
			switch {
			case errors.Is(err, capture.ErrNotTCP), errors.Is(err, capture.ErrNotIP), errors.Is(err, capture.ErrNotUDP):
				p.cap.NotTCP++
			case errors.Is(err, capture.ErrFragment):
				p.cap.Fragments++
			case errors.Is(err, capture.ErrUnsupported):
				p.cap.Unsupported++
			default:
				p.cap.DecodeErrors++
			}
			continue
		}
		if seg.Proto == capture.ProtoUDP {
			p.now = ts
			p.datagram(&seg, ts)
		} else {
			switch v := max(p.ports.tcp[seg.SrcPort], p.ports.tcp[seg.DstPort]); v {
			case portNone:
				p.cap.OtherTCP++
				continue
			case portCounted:
				p.cap.TLSPackets++
				continue
			default:
				p.protos[v-portFirst].packets++
			}
			p.segment(&seg, &rseg, ts)
		}
		if len(p.pending) > 0 && p.now >= p.due {
			p.lingerDue()
		}
		if p.now-advanced >= int64(time.Second) || p.now < advanced {
			p.advance()
			p.publish()
			advanced = p.now
		}
	}
}

// segment hands a TCP segment of a stream protocol to the assembler.
func (p *Probe) segment(seg *capture.Segment, rseg *reassembly.Segment, ts int64) {
	{
		// Field by field: every field is set, and a composite literal
		// would be built in a temporary and copied.
		rseg.Src, rseg.Dst = netip.AddrPortFrom(seg.Src, seg.SrcPort), netip.AddrPortFrom(seg.Dst, seg.DstPort)
		rseg.Seq, rseg.Ack = seg.Seq, seg.Ack
		rseg.SYN, rseg.ACK = seg.Flags&capture.TCPSyn != 0, seg.Flags&capture.TCPAck != 0
		rseg.FIN, rseg.RST = seg.Flags&capture.TCPFin != 0, seg.Flags&capture.TCPRst != 0
		rseg.Payload = seg.Payload
		p.now = ts
		p.asm.AssembleAt(rseg, ts)
	}
}

// exportLoop batches queued flows into the exporter.
//
// A batch the exporter refuses as unavailable is held and offered again
// on every tick; the loop takes nothing from the queue meanwhile, so the
// flows behind it wait there (and a file capture waits for room). A file
// capture, and any capture once it has ended, waits at most
// ConnectTimeout per outage: then the held batch, and every refused batch
// after it until the exporter takes one again, is counted lost.
func (p *Probe) exportLoop() error {
	batch := make([]flow.Record, 0, p.cfg.BatchSize)
	tick := time.NewTicker(p.cfg.FlushInterval)
	defer tick.Stop()
	var latency *latencyLog
	if p.cfg.LatencyLog != nil {
		latency = newLatencyLog(p.cfg.LatencyLog)
	}
	errLog := p.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	warnLog := p.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	var (
		held     bool      // batch was refused: offer it again
		outage   time.Time // first refusal of the current outage
		gaveUp   bool      // waited ConnectTimeout in this outage
		stopping = p.stopping
		stopAt   time.Time // the capture ended: wait until then at most
	)
	deadline := func() time.Time {
		var d time.Time
		if p.wait {
			d = outage.Add(p.cfg.ConnectTimeout)
		}
		if !stopAt.IsZero() && (d.IsZero() || stopAt.Before(d)) {
			d = stopAt
		}
		return d
	}
	lose := func(err error, msg string) {
		p.lost.Add(uint64(len(batch)))
		errLog.Error().Err(err).Int("flows", len(batch)).Msg(msg)
		batch = batch[:0]
		held = false
	}
	// Every batch is flushed: a flow leaves the probe within FlushInterval.
	send := func(flush bool) {
		if len(batch) == 0 {
			if flush {
				if err := p.exp.Flush(); err != nil && !errors.Is(err, ErrUnavailable) {
					p.expErrs.Add(1)
				}
			}
			return
		}
		err := p.exp.Export(batch)
		if err == nil {
			// Taken: an unavailable Flush means the exporter holds the
			// flows and sends them again once reconnected.
			if err = p.exp.Flush(); errors.Is(err, ErrUnavailable) {
				err = nil
			}
			if err != nil {
				p.expErrs.Add(1)
				lose(err, "export failed; flows lost")
				return
			}
			p.exported.Add(uint64(len(batch)))
			if latency != nil {
				latency.write(batch, time.Now())
			}
			batch = batch[:0]
			held, outage, gaveUp = false, time.Time{}, false
			return
		}
		if !errors.Is(err, ErrUnavailable) {
			p.expErrs.Add(1)
			lose(err, "export failed; flows lost")
			return
		}
		now := time.Now()
		if outage.IsZero() {
			outage = now
		}
		if !held && !gaveUp {
			p.deferred.Add(uint64(len(batch)))
		}
		if d := deadline(); gaveUp || (!d.IsZero() && !now.Before(d)) {
			if !gaveUp {
				errLog.Error().Err(err).Dur("waited", now.Sub(outage)).
					Msg("collector unavailable longer than the connect timeout; flows lost until it is back")
			}
			gaveUp = true
			p.lost.Add(uint64(len(batch)))
			batch = batch[:0]
			held = false
			return
		}
		if !held {
			warnLog.Warn().Err(err).Int("queued", int(p.depth.Load())+len(batch)).
				Msg("collector unavailable; flows wait in the export queue")
		}
		held = true
	}
	// settle offers a held batch again until it is taken or given up.
	settle := func() {
		for held {
			select {
			case <-tick.C:
				send(true)
			case <-stopping:
				stopAt, stopping = time.Now().Add(p.cfg.ConnectTimeout), nil
			}
		}
	}
	for {
		select {
		case b, ok := <-p.queue:
			if !ok {
				send(true)
				settle()
				p.drainHeld(tick.C)
				err := p.exp.Close()
				if latency != nil {
					err = errors.Join(err, latency.flush())
				}
				return err
			}
			p.depth.Add(-int64(len(b)))
			select {
			case p.room <- struct{}{}:
			default:
			}
			for rest := b; len(rest) > 0; {
				n := copy(batch[len(batch):cap(batch)], rest)
				batch, rest = batch[:len(batch)+n], rest[n:]
				if len(batch) == cap(batch) {
					send(true)
					settle()
				}
			}
			clear(b) // the records' strings and slices may be collected
			if cap(b) == captureBatch {
				select {
				case p.free <- b[:0]:
				default:
				}
			}
		case <-tick.C:
			send(true)
			settle()
		}
	}
}

// drainHeld gives an exporter that holds flows to resend (its connection
// died) up to ConnectTimeout to deliver them before it is closed.
func (p *Probe) drainHeld(tick <-chan time.Time) {
	es, ok := p.exp.(ExportStatser)
	if !ok {
		return
	}
	end := time.Now().Add(p.cfg.ConnectTimeout)
	for es.ExportStats().FlowsHeld > 0 && time.Now().Before(end) {
		<-tick
		_ = p.exp.Flush()
	}
}

// unixNanos returns t in Unix nanoseconds; a missing timestamp (the zero
// time, e.g. a pcapng simple packet block) counts as 0.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// keepState writes the state file when it is due.
func (p *Probe) keepState() {
	if p.state != nil && p.tr != nil {
		p.state.maybeWrite(p.tr, time.Now(), func(err error) {
			p.log.Warn().Err(err).Msg("state file not written")
		})
	}
}
