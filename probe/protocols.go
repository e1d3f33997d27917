package probe

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/app"
	"github.com/mission-ids/mission/probe/capture"
	"github.com/mission-ids/mission/probe/coaptrack"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/mission-ids/mission/probe/tracker"
)

// The protocol seam (docs/architecture.md, "Adding a protocol"). Every
// application protocol is a protocolDef: a transport, the ports that carry
// it (Config), the ports of its encrypted form (counted, not decoded) and
// a constructor of its tracker (an app.StreamTracker behind the TCP
// assembler, or an app.DatagramTracker fed UDP datagrams). The packet loop
// looks the transport's port table up once per packet (the larger of the
// two ports' entries wins: decoded over counted over none) and hands the
// packet on; every tracker emits through Probe.enqueue and is advanced and
// flushed with capture time in the same way.

// protocolDef describes one protocol the probe can dissect.
type protocolDef struct {
	name      string
	transport app.Transport
	ports     func(*Config) []uint16 // decoded
	counted   func(*Config) []uint16 // encrypted form: counted, not decoded
	start     func(p *Probe, out app.FlowHandler) app.Tracker
}

// protocolDefs are the protocols known, in the order of DefaultProtocols.
var protocolDefs = []protocolDef{
	{
		name: "mqtt", transport: app.TCP,
		ports:   func(c *Config) []uint16 { return c.MQTTPorts },
		counted: func(c *Config) []uint16 { return c.TLSPorts },
		start: func(p *Probe, out app.FlowHandler) app.Tracker {
			p.tr = tracker.New(p.cfg.Tracker, out)
			return p.tr
		},
	},
	{
		name: "coap", transport: app.UDP,
		ports:   func(c *Config) []uint16 { return c.CoAPPorts },
		counted: func(c *Config) []uint16 { return c.CoAPSPorts },
		start: func(p *Probe, out app.FlowHandler) app.Tracker {
			// Reading a file on several cores, the exchanges are spread
			// over a tracker per core (same flows, capture order kept per
			// endpoint pair); live, one tracker hands every flow over at
			// once.
			if n := runtime.GOMAXPROCS(0); p.cfg.ReadFile != "" && n > 1 {
				p.coap = coaptrack.NewSharded(p.cfg.CoAP, n, out)
			} else {
				p.coap = coaptrack.New(p.cfg.CoAP, out)
			}
			return p.coap
		},
	},
}

// DefaultProtocols lists every protocol the probe knows, its default.
func DefaultProtocols() []string {
	out := make([]string, len(protocolDefs))
	for i, d := range protocolDefs {
		out[i] = d.name
	}
	return out
}

// ErrUnknownProtocol is returned by New for a Config.Protocols entry the
// probe does not know.
var ErrUnknownProtocol = errors.New("probe: unknown application protocol")

// Port table entries: portFirst + i is protocol i of Probe.protos.
const (
	portNone    uint8 = 0
	portCounted uint8 = 1
	portFirst   uint8 = 2
)

type portTables struct {
	tcp, udp [65536]uint8
}

// protocol is one enabled protocol.
type protocol struct {
	def     *protocolDef
	tracker app.Tracker
	packets uint64 // segments or datagrams on its ports
}

// setupProtocols builds the trackers and port tables of cfg.Protocols.
func (p *Probe) setupProtocols() error {
	ids := p.cfg.Tracker.FlowIDs
	if ids == nil {
		ids = p.cfg.CoAP.FlowIDs
	}
	if ids == nil {
		ids = newFlowIDs()
	}
	// One generator: flow ids stay unique across protocols.
	if p.cfg.Tracker.FlowIDs == nil {
		p.cfg.Tracker.FlowIDs = ids
	}
	if p.cfg.CoAP.FlowIDs == nil {
		p.cfg.CoAP.FlowIDs = ids
	}
	var streams []*protocol
	for _, name := range p.cfg.Protocols {
		name = strings.ToLower(strings.TrimSpace(name))
		i := slices.IndexFunc(protocolDefs, func(d protocolDef) bool { return d.name == name })
		if i < 0 {
			return fmt.Errorf("%w %q (known: %s)", ErrUnknownProtocol, name, strings.Join(DefaultProtocols(), ", "))
		}
		def := &protocolDefs[i]
		if slices.ContainsFunc(p.protos, func(q *protocol) bool { return q.def == def }) {
			continue
		}
		if len(p.protos) >= 255-int(portFirst) {
			return fmt.Errorf("%w: too many protocols", ErrUnknownProtocol)
		}
		pr := &protocol{def: def}
		pr.tracker = def.start(p, flowHandler{p})
		v := portFirst + uint8(len(p.protos))
		table := &p.ports.tcp
		if def.transport == app.UDP {
			table = &p.ports.udp
			p.udpOn = true
		} else {
			streams = append(streams, pr)
		}
		for _, port := range def.counted(&p.cfg) {
			if table[port] == portNone {
				table[port] = portCounted
			}
		}
		for _, port := range def.ports(&p.cfg) {
			table[port] = v
		}
		p.protos = append(p.protos, pr)
	}
	var h reassembly.Handler
	switch len(streams) {
	case 0:
		p.trackers = p.trackerList()
		return nil
	case 1:
		h = streams[0].tracker.(app.StreamTracker) // wired directly: no dispatch per chunk
	default:
		h = &streamMux{p: p}
	}
	p.asm = reassembly.New(p.reassemblyConfig(), h)
	p.trackers = p.trackerList()
	return nil
}

func (p *Probe) trackerList() []app.Tracker {
	out := make([]app.Tracker, len(p.protos))
	for i, pr := range p.protos {
		out[i] = pr.tracker
	}
	return out
}

// reassemblyConfig is cfg.Reassembly with the stream protocols' ports as
// server ports.
func (p *Probe) reassemblyConfig() reassembly.Config {
	rcfg := p.cfg.Reassembly
	rcfg.ServerPort = func(port uint16) bool { return p.ports.tcp[port] >= portFirst }
	return rcfg
}

// coapTracker is a coaptrack.Tracker, or a coaptrack.Sharded reading a
// file on several cores.
type coapTracker interface {
	app.DatagramTracker
	Stats() coaptrack.Stats
}

// flowHandler is every tracker's app.FlowHandler.
type flowHandler struct{ p *Probe }

func (h flowHandler) Flow(r *flow.Record) { h.p.enqueue(r) }

// advance runs every tracker's idle timers at the current capture time.
func (p *Probe) advance() {
	if p.asm != nil {
		p.asm.AdvanceAt(p.now)
	}
	for _, t := range p.trackers {
		t.AdvanceAt(p.now)
	}
}

// datagram hands a UDP datagram to its protocol's tracker.
func (p *Probe) datagram(seg *capture.Segment, ts int64) {
	switch v := max(p.ports.udp[seg.SrcPort], p.ports.udp[seg.DstPort]); v {
	case portNone:
		p.cap.OtherUDP++
	case portCounted:
		p.cap.DTLSPackets++
	default:
		pr := p.protos[v-portFirst]
		pr.packets++
		d := &p.dgram
		d.Src, d.Dst = netip.AddrPortFrom(seg.Src, seg.SrcPort), netip.AddrPortFrom(seg.Dst, seg.DstPort)
		d.Payload, d.Time, d.Truncated = seg.Payload, ts, seg.Truncated
		pr.tracker.(app.DatagramTracker).Datagram(d)
		d.Payload = nil
	}
}

// protocolStats fills the per-protocol counters of s.
func (p *Probe) protocolStats(s *Stats) {
	for _, pr := range p.protos {
		switch pr.def.name {
		case "mqtt":
			s.MQTTSegments = pr.packets
		case "coap":
			s.CoAPDatagrams = pr.packets
		}
	}
	if p.asm != nil {
		s.Reassembly = p.asm.Stats()
	}
	if p.tr != nil {
		s.Tracker = p.tr.Stats()
	}
	if p.coap != nil {
		s.CoAP = p.coap.Stats()
	}
}

// streamMux dispatches the assembler's connections to the stream
// protocol of their server port (or client port), when more than one
// stream protocol is on.
type streamMux struct{ p *Probe }

func (m *streamMux) pick(c *reassembly.Conn) app.StreamTracker {
	v := m.p.ports.tcp[c.Server.Port()]
	if v < portFirst {
		v = m.p.ports.tcp[c.Client.Port()]
	}
	if v < portFirst {
		return nil
	}
	st, _ := m.p.protos[v-portFirst].tracker.(app.StreamTracker)
	return st
}

func (m *streamMux) Open(c *reassembly.Conn) {
	if t := m.pick(c); t != nil {
		t.Open(c)
	}
}

func (m *streamMux) Data(c *reassembly.Conn, dir reassembly.Direction, ch reassembly.Chunk) {
	if t := m.pick(c); t != nil {
		t.Data(c, dir, ch)
	}
}

func (m *streamMux) Close(c *reassembly.Conn, reason reassembly.CloseReason, ts int64) {
	if t := m.pick(c); t != nil {
		t.Close(c, reason, ts)
	}
}

// newFlowIDs is the flow id generator shared by the trackers: a random
// 23-bit prefix per probe and a 40-bit counter (below 2^63: BSON has no
// uint64).
func newFlowIDs() func() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := binary.BigEndian.Uint64(b[:]) & 0x7fffff << 40
	var n uint64
	return func() uint64 { n++; return prefix | n&(1<<40-1) }
}
