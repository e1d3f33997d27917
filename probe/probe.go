// Package probe runs `mission probe`: it captures MQTT traffic live
// (AF_PACKET, no cgo) or from pcap/pcapng files, reassembles TCP, follows
// MQTT sessions and transactions, and exports one flow record per
// transaction through an Exporter (IPFIX over UDP/TCP/TLS, IPFIX file,
// JSON lines).
//
// Capture never blocks on export: finished flows are gathered in batches of
// up to 64 (handed over when full, after 10 ms of capture time, or when the
// capture is idle for a poll timeout), which go through a bounded queue to a
// single export goroutine that batches them and flushes at least every
// FlushInterval; a full queue drops flows and counts them. Emptied batches
// go back to the capture.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/bpf"
	"github.com/mission-ids/mission/probe/capture"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/mission-ids/mission/probe/tracker"
)

// Config configures a probe. Zero values take the defaults.
type Config struct {
	Interface   string // live capture on this interface
	ReadFile    string // or read this pcap/pcapng file
	Filter      string // tcpdump-syntax filter, ANDed with nothing: the user's expression
	MQTTPorts   []uint16
	TLSPorts    []uint16 // MQTT over TLS: counted, not decoded
	SnapLen     int
	Promiscuous bool

	QueueSize     int           // flows waiting for export; default 65536
	BatchSize     int           // flows per export call; default 256
	FlushInterval time.Duration // default 100 ms

	Reassembly reassembly.Config
	Tracker    tracker.Config

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
	if c.QueueSize <= 0 {
		c.QueueSize = 65536
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 100 * time.Millisecond
	}
	if c.SnapLen <= 0 {
		c.SnapLen = capture.MaxFrame
	}
}

// Stats is a snapshot of everything the probe counts.
type Stats struct {
	Packets        uint64 // frames read from the source
	Bytes          uint64
	Filtered       uint64 // frames the user-space filter rejected (files)
	NotTCP         uint64 // not IPv4/IPv6 TCP
	Fragments      uint64 // IP fragments (not reassembled)
	DecodeErrors   uint64 // truncated or malformed L2–L4 headers
	Unsupported    uint64 // unsupported link type
	TLSPackets     uint64 // TCP segments on the MQTT-over-TLS ports
	OtherTCP       uint64 // TCP segments on other ports
	MQTTSegments   uint64 // TCP segments on the MQTT ports
	KernelReceived uint64
	KernelDropped  uint64

	FlowsQueued   uint64
	FlowsDropped  uint64 // export queue full
	FlowsExported uint64
	FlowsLost     uint64 // export failed (collector unreachable, write error)
	ExportErrors  uint64
	QueueDepth    int

	Reassembly reassembly.Stats
	Tracker    tracker.Stats
}

// Probe is one capture pipeline.
type Probe struct {
	cfg      Config
	exp      Exporter
	log      zerolog.Logger
	mqtt     [65536 / 64]uint64 // port bitmaps
	tls      [65536 / 64]uint64
	queue    chan []flow.Record // batches of flows
	free     chan []flow.Record // emptied batches, back to the capture
	pending  []flow.Record      // the batch being filled by the capture
	due      int64              // capture time (Unix ns) by which pending is handed over
	now      int64              // capture time (Unix ns) of the current packet
	depth    atomic.Int64       // flows in the queue
	asm      *reassembly.Assembler
	tr       *tracker.Tracker
	filters  map[capture.LinkType]*bpf.Program
	live     *capture.Live
	mu       sync.Mutex
	snapshot Stats
	cap      Stats // owned by the capture goroutine
	exported atomic.Uint64
	lost     atomic.Uint64
	expErrs  atomic.Uint64
	dropped  atomic.Uint64
	dropLog  zerolog.Logger
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
	nbatch := max(1, cfg.QueueSize/captureBatch)
	p := &Probe{cfg: cfg, exp: exp, log: cfg.Logger, queue: make(chan []flow.Record, nbatch),
		free:    make(chan []flow.Record, nbatch+2),
		filters: make(map[capture.LinkType]*bpf.Program)}
	p.dropLog = p.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	for _, port := range cfg.MQTTPorts {
		p.mqtt[port/64] |= 1 << (port % 64)
	}
	for _, port := range cfg.TLSPorts {
		p.tls[port/64] |= 1 << (port % 64)
	}
	rcfg := cfg.Reassembly
	rcfg.ServerPort = func(port uint16) bool { return p.isMQTT(port) }
	p.tr = tracker.New(cfg.Tracker, tracker.FlowFunc(p.enqueue))
	p.asm = reassembly.New(rcfg, p.tr)
	if cfg.Filter != "" {
		// Compile once up front so a bad expression fails at start.
		if _, err := p.filterFor(capture.LinkEthernet); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Probe) isMQTT(port uint16) bool { return p.mqtt[port/64]&(1<<(port%64)) != 0 }
func (p *Probe) isTLS(port uint16) bool  { return p.tls[port/64]&(1<<(port%64)) != 0 }

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
// goroutine at once; captureLinger bounds how long (capture time) a flow
// waits in a batch that is not full.
const (
	captureBatch  = 64
	captureLinger = int64(10 * time.Millisecond)
)

// enqueue is the tracker's flow handler: it never blocks the capture.
func (p *Probe) enqueue(r *flow.Record) {
	if p.pending == nil {
		p.pending = p.freeBatch()
	}
	if len(p.pending) == 0 {
		p.due = p.now + captureLinger
	}
	p.pending = append(p.pending, *r)
	if len(p.pending) == cap(p.pending) {
		p.handOver()
	}
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

// handOver queues the pending batch, or drops it if the queue is full.
func (p *Probe) handOver() {
	n := len(p.pending)
	if n == 0 {
		return
	}
	p.depth.Add(int64(n))
	select {
	case p.queue <- p.pending:
		p.cap.FlowsQueued += uint64(n)
		p.pending = nil
	default:
		p.depth.Add(-int64(n))
		clear(p.pending)
		p.pending = p.pending[:0]
		p.dropped.Add(uint64(n))
		p.dropLog.Warn().Uint64("dropped", p.dropped.Load()).
			Msg("export queue full: dropping flows (collector too slow or unreachable; raise --queue-size)")
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
	s.QueueDepth = int(p.depth.Load())
	return s
}

func (p *Probe) publish() {
	s := p.cap
	s.Reassembly = p.asm.Stats()
	s.Tracker = p.tr.Stats()
	if p.live != nil {
		if ks, err := p.live.Stats(); err == nil {
			s.KernelReceived, s.KernelDropped = ks.Received, ks.Dropped
		}
	}
	p.mu.Lock()
	p.snapshot = s
	p.mu.Unlock()
}

// Run captures until the file ends or ctx is cancelled, then ends every
// open transaction, drains the export queue and flushes the exporter.
func (p *Probe) Run(ctx context.Context) error {
	src, err := p.open()
	if err != nil {
		return err
	}
	exportDone := make(chan error, 1)
	go func() { exportDone <- p.exportLoop() }()

	last, runErr := p.capture(ctx, src)
	_ = src.Close()

	// Shutdown: end every connection and transaction, flush the export.
	p.asm.FlushAllAt(last)
	p.tr.FlushAll()
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
				p.asm.AdvanceAt(p.now)
				p.tr.AdvanceAt(p.now)
				p.handOver()
				p.publish()
				advanced = p.now
				continue
			case errors.Is(err, io.EOF), errors.Is(err, capture.ErrClosed):
				return last, nil
			}
			return last, fmt.Errorf("read packets: %w", err)
		}
		p.cap.Packets++
		p.cap.Bytes += uint64(pkt.Length)
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
		if err := capture.DecodeTCP(pkt.LinkType, pkt.Data, &seg); err != nil {
			switch {
			case errors.Is(err, capture.ErrNotTCP), errors.Is(err, capture.ErrNotIP):
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
		switch {
		case p.isMQTT(seg.SrcPort) || p.isMQTT(seg.DstPort):
			p.cap.MQTTSegments++
		case p.isTLS(seg.SrcPort) || p.isTLS(seg.DstPort):
			p.cap.TLSPackets++
			continue
		default:
			p.cap.OtherTCP++
			continue
		}
		// Field by field: every field is set, and a composite literal
		// would be built in a temporary and copied.
		rseg.Src, rseg.Dst = netip.AddrPortFrom(seg.Src, seg.SrcPort), netip.AddrPortFrom(seg.Dst, seg.DstPort)
		rseg.Seq, rseg.Ack = seg.Seq, seg.Ack
		rseg.SYN, rseg.ACK = seg.Flags&capture.TCPSyn != 0, seg.Flags&capture.TCPAck != 0
		rseg.FIN, rseg.RST = seg.Flags&capture.TCPFin != 0, seg.Flags&capture.TCPRst != 0
		rseg.Payload = seg.Payload
		p.now = ts
		p.asm.AssembleAt(&rseg, ts)
		if len(p.pending) > 0 && p.now >= p.due {
			p.handOver()
		}
		if p.now-advanced >= int64(time.Second) || p.now < advanced {
			p.asm.AdvanceAt(ts)
			p.tr.AdvanceAt(ts)
			p.publish()
			advanced = p.now
		}
	}
}

// exportLoop batches queued flows into the exporter.
func (p *Probe) exportLoop() error {
	batch := make([]flow.Record, 0, p.cfg.BatchSize)
	tick := time.NewTicker(p.cfg.FlushInterval)
	defer tick.Stop()
	var latency *latencyLog
	if p.cfg.LatencyLog != nil {
		latency = newLatencyLog(p.cfg.LatencyLog)
	}
	errLog := p.log.Sample(&zerolog.BurstSampler{Burst: 1, Period: 10 * time.Second})
	// Every batch is flushed: a flow leaves the probe within FlushInterval.
	send := func(flush bool) {
		if len(batch) > 0 {
			err := p.exp.Export(batch)
			if err == nil {
				err = p.exp.Flush()
			}
			if err != nil {
				p.expErrs.Add(1)
				p.lost.Add(uint64(len(batch)))
				errLog.Error().Err(err).Int("flows", len(batch)).Msg("export failed; flows lost")
			} else {
				p.exported.Add(uint64(len(batch)))
				if latency != nil {
					latency.write(batch, time.Now())
				}
			}
			batch = batch[:0]
		} else if flush {
			if err := p.exp.Flush(); err != nil {
				p.expErrs.Add(1)
			}
		}
	}
	for {
		select {
		case b, ok := <-p.queue:
			if !ok {
				send(true)
				err := p.exp.Close()
				if latency != nil {
					err = errors.Join(err, latency.flush())
				}
				return err
			}
			p.depth.Add(-int64(len(b)))
			for rest := b; len(rest) > 0; {
				n := copy(batch[len(batch):cap(batch)], rest)
				batch, rest = batch[:len(batch)+n], rest[n:]
				if len(batch) == cap(batch) {
					send(true)
				}
			}
			clear(b) // the records' strings and slices may be collected
			select {
			case p.free <- b[:0]:
			default:
			}
		case <-tick.C:
			send(true)
		}
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
