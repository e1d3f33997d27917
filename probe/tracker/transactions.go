package tracker

import (
	"errors"
	"math/bits"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/lru"
	"github.com/mission-ids/mission/mqttparse"
	"github.com/mission-ids/mission/probe/reassembly"
)

// Transaction kinds: what an open transaction waits for.
const (
	kindConnect uint8 = iota + 1
	kindPublish
	kindSubscribe
	kindUnsubscribe
	kindPing
)

// txKey identifies an open transaction: the session (by its serial
// number), the direction of its initiator, its kind and packet identifier
// (0 where the type has none). Client and broker have separate packet
// identifier spaces, hence the direction. It is packed into 64 bits so the
// transaction table hashes a plain integer on every packet.
type txKey uint64

// serialBits is the width of a session's serial number in a txKey: a
// session would have to outlive 2^40 newer connections to share a key.
const serialBits = 40

func makeTxKey(s *session, dir reassembly.Direction, kind uint8, pid uint16) txKey {
	return txKey(s.serial<<24 | uint64(dir&1)<<23 | uint64(kind&0x7f)<<16 | uint64(pid))
}

type tx struct {
	key        txKey
	s          *session
	rec        flow.Record
	start, end int64        // capture times (Unix ns) of its first and last packets
	last       int64        // of the last packet (LRU order)
	suspect    bool         // begun by a packet held back by a resync: never "end of flow"
	lru        lru.Node[tx] // in Tracker.lru, least recently active first
	inSession  lru.Node[tx] // in session.txs, newest first
	// corr holds the correlation data of an open PUBLISH transaction
	// (longer data is allocated); rec.CorrelationData points here until
	// emit copies it out.
	corr [64]byte
}

func isTooLarge(err error) bool { return errors.Is(err, mqttparse.ErrTooLarge) }

// packet handles one complete MQTT packet of direction dir.
func (t *Tracker) packet(s *session, dir reassembly.Direction, raw []byte, ts int64) {
	p := &t.pkt
	v := s.version
	_, err := mqttparse.Decode(raw, v, p)
	t.an = 0
	if err != nil {
		if !errors.Is(err, mqttparse.ErrViolation) {
			t.stats.Malformed++
			t.malformed(s, dir, ts, uint64(len(raw)))
			return
		}
		t.stats.Violations++
		for w := uint32(p.Violations); w != 0; w &= w - 1 {
			t.stats.ViolationsByBit[bits.TrailingZeros32(w)]++
		}
		t.flag(ViolationAnomalies(p.Violations, p.Header.Type))
	}
	if p.VersionGuessed {
		t.stats.VersionGuessed++
		// Keep the first guess made on a packet with properties (the
		// decoder's advice) and decode by it from then on.
		if !s.known && p.Version == mqttparse.Version5 && p.Properties.Len > 0 {
			s.version = mqttparse.Version5
		}
	}
	typ := p.Header.Type
	t.stats.Packets[typ&15]++
	t.stats.Bytes += uint64(len(raw))
	n := uint64(len(raw))
	if s.provable {
		t.introduce(s, typ)
	}

	switch typ {
	case mqttparse.Connect:
		if s.connected {
			// [MQTT-3.1.0-2]: the broker must close the connection; the
			// session keeps the first CONNECT's identity.
			t.flag(flow.AnomalyDoubleConnect)
			t.anomalyFlow(s, dir, ts, n, nil)
			return
		}
		s.connected = true
		if lvl := mqttparse.Version(p.Connect.ProtocolLevel); lvl >= mqttparse.Version31 && lvl <= mqttparse.Version5 {
			s.version, s.known = lvl, true
		}
		s.clientID = t.names.get(p.Connect.ClientID)
		s.username = t.names.get(p.Connect.Username)
		s.identity = flow.IdentityConnect
		s.keepAlive = p.Connect.KeepAlive
		t.begin(s, dir, kindConnect, 0, ts, n)
	case mqttparse.Connack:
		tx := t.txs[makeTxKey(s, dir.Reverse(), kindConnect, 0)]
		if tx == nil {
			t.orphan(s, dir, typ, flow.AnomalyMissingConnect, ts, n)
			return
		}
		if s.clientID == "" && len(p.Properties.AssignedClientIdentifier) > 0 {
			s.clientID = t.names.get(p.Properties.AssignedClientIdentifier)
			s.assigned = s.clientID
			tx.rec.SrcClientID = s.clientID
		}
		t.attach(tx, ts, n)
		tx.rec.ReasonCode, tx.rec.HasReasonCode = byte(p.ReasonCode), true
		t.end(tx, flow.EndOfFlow)
	case mqttparse.Publish:
		t.publish(s, dir, ts, n)
	case mqttparse.Puback, mqttparse.Pubrec, mqttparse.Pubcomp:
		tx := t.txs[makeTxKey(s, dir.Reverse(), kindPublish, p.PacketID)]
		if tx == nil || (typ == mqttparse.Puback) != (tx.rec.QoS == 1) {
			t.orphan(s, dir, typ, flow.AnomalyMissingPublish, ts, n)
			return
		}
		t.attach(tx, ts, n)
		if !tx.rec.HasReasonCode || tx.rec.ReasonCode < 0x80 {
			tx.rec.ReasonCode, tx.rec.HasReasonCode = byte(p.ReasonCode), true
		}
		// A failed PUBREC (>= 0x80) ends a QoS 2 exchange too.
		if typ != mqttparse.Pubrec || p.ReasonCode >= 0x80 {
			t.end(tx, flow.EndOfFlow)
		}
	case mqttparse.Pubrel:
		tx := t.txs[makeTxKey(s, dir, kindPublish, p.PacketID)]
		if tx == nil || tx.rec.QoS != 2 {
			t.orphan(s, dir, typ, flow.AnomalyMissingPublish, ts, n)
			return
		}
		t.attach(tx, ts, n)
	case mqttparse.Subscribe, mqttparse.Unsubscribe:
		kind := kindSubscribe
		if typ == mqttparse.Unsubscribe {
			kind = kindUnsubscribe
		}
		x := t.begin(s, dir, kind, p.PacketID, ts, n)
		if x == nil {
			return
		}
		r := &x.rec
		if len(p.Filters) > 0 {
			r.TopicFilters = make([]string, len(p.Filters))
			for i, f := range p.Filters {
				r.TopicFilters[i] = t.names.get(f.Filter)
			}
			r.Topic = r.TopicFilters[0]
			r.QoS = p.Filters[0].QoS
		}
	case mqttparse.Suback, mqttparse.Unsuback:
		kind := kindSubscribe
		if typ == mqttparse.Unsuback {
			kind = kindUnsubscribe
		}
		tx := t.txs[makeTxKey(s, dir.Reverse(), kind, p.PacketID)]
		if tx == nil {
			a := flow.AnomalyMissingSubscribe
			if typ == mqttparse.Unsuback {
				a = flow.AnomalyMissingUnsubscribe
			}
			t.orphan(s, dir, typ, a, ts, n)
			return
		}
		t.attach(tx, ts, n)
		if len(p.ReasonCodes) > 0 {
			// The first failure, else the first code (the granted QoS).
			rc := p.ReasonCodes[0]
			for _, c := range p.ReasonCodes {
				if c >= 0x80 {
					rc = c
					break
				}
			}
			tx.rec.ReasonCode, tx.rec.HasReasonCode = byte(rc), true
		}
		t.end(tx, flow.EndOfFlow)
	case mqttparse.Pingreq:
		t.begin(s, dir, kindPing, 0, ts, n)
	case mqttparse.Pingresp:
		tx := t.txs[makeTxKey(s, dir.Reverse(), kindPing, 0)]
		if tx == nil {
			t.orphan(s, dir, typ, flow.AnomalyMissingPingreq, ts, n)
			return
		}
		t.attach(tx, ts, n)
		t.end(tx, flow.EndOfFlow)
	case mqttparse.Reserved:
		t.anomalyFlow(s, dir, ts, n, nil)
	case mqttparse.Disconnect, mqttparse.Auth:
		if p.Violations.Has(mqttparse.ViolationReservedType) {
			t.anomalyFlow(s, dir, ts, n, nil) // AUTH before 5.0
			return
		}
		t.single(s, dir, ts, n, func(r *flow.Record) {
			// A DISCONNECT with a body is 5.0 even when no CONNECT told.
			if s.version == mqttparse.Version5 || typ == mqttparse.Auth || n > 2 {
				r.ReasonCode, r.HasReasonCode = byte(p.ReasonCode), true
			}
		})
	}
}

// publish handles a PUBLISH: QoS 0 is a flow of its own; QoS 1 and 2 open
// a transaction, and a DUP retransmission joins the open one.
func (t *Tracker) publish(s *session, dir reassembly.Direction, ts int64, n uint64) {
	p := &t.pkt
	d := &s.dirs[dir]
	topic := t.resolveTopic(d, p)
	fill := func(r *flow.Record) {
		r.Topic = topic
		r.QoS = p.Header.QoS
		r.Retain = p.Header.Retain
		r.Dup = p.Header.Dup
		r.PayloadLength = uint32(len(p.Payload))
		if p.Properties.Has(mqttparse.PropResponseTopic) {
			r.ResponseTopic = t.names.get(p.Properties.ResponseTopic)
		}
		setCorrelation(r, &p.Properties)
	}
	if p.Header.QoS > 2 {
		t.anomalyFlow(s, dir, ts, n, fill)
		return
	}
	if p.Header.QoS == 0 {
		t.single(s, dir, ts, n, fill)
		return
	}
	key := makeTxKey(s, dir, kindPublish, p.PacketID)
	if tx := t.txs[key]; tx != nil && p.Header.Dup {
		t.attach(tx, ts, n)
		tx.rec.Dup = true
		return
	}
	if x := t.begin(s, dir, kindPublish, p.PacketID, ts, n); x != nil {
		r := &x.rec
		fill(r)
		r.PacketID = p.PacketID
		if len(r.CorrelationData) > 0 {
			// It points into the packet: the transaction keeps a copy.
			if len(r.CorrelationData) <= len(x.corr) {
				r.CorrelationData = x.corr[:copy(x.corr[:], r.CorrelationData)]
			} else {
				r.CorrelationData = append([]byte(nil), r.CorrelationData...)
			}
		}
	}
}

// resolveTopic applies MQTT 5.0 topic aliases (§3.3.2.3.4): a PUBLISH with
// a topic and an alias sets the alias; one with an empty topic uses it.
func (t *Tracker) resolveTopic(d *dirState, p *mqttparse.Packet) string {
	// A client usually publishes to the same topic again: compare with the
	// last one before looking the name up.
	topic := d.topic
	if string(p.Topic) != topic {
		topic = t.names.get(p.Topic)
		d.topic = topic
	}
	if !p.Properties.Has(mqttparse.PropTopicAlias) {
		return topic
	}
	alias := p.Properties.TopicAlias
	if topic != "" {
		if d.aliases == nil {
			d.aliases = make(map[uint16]string)
		}
		if _, ok := d.aliases[alias]; ok || len(d.aliases) < t.cfg.MaxAliases {
			d.aliases[alias] = topic
		}
		return topic
	}
	return d.aliases[alias]
}

// setCorrelation takes the v5 Correlation Data, else the trace id of a W3C
// traceparent user property ("00-<32 hex trace id>-<16 hex>-<2 hex>").
// r.CorrelationData points into the packet: a transaction copies it into
// its own buffer, and emit copies it for the flow handler.
func setCorrelation(r *flow.Record, props *mqttparse.Properties) {
	if props.Has(mqttparse.PropCorrelationData) {
		r.CorrelationData = props.CorrelationData
		r.CorrelationSource = flow.CorrelationData
		return
	}
	if tp, ok := props.UserValue("traceparent"); ok && len(tp) >= 55 && tp[2] == '-' && tp[35] == '-' {
		id := tp[3:35]
		for _, c := range id {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return
			}
		}
		r.CorrelationData = id
		r.CorrelationSource = flow.CorrelationTraceparent
	}
}

// base fills the fields every flow of this session and direction shares
// (not the times) into r, which is zero. Field by field: a composite
// literal would be built in a temporary and copied.
func (t *Tracker) base(r *flow.Record, s *session, dir reassembly.Direction) {
	r.FlowID = t.cfg.FlowIDs()
	r.Protocol = 6
	r.ControlType = flow.ControlType(t.pkt.Header.Type)
	if s.known {
		r.ProtocolVersion = uint8(s.version)
	}
	r.Username = s.username
	r.IdentitySource = s.identity
	c := s.conn
	if dir == reassembly.ClientToServer {
		r.SrcAddr, r.SrcPort = c.Client.Addr(), c.Client.Port()
		r.DstAddr, r.DstPort = c.Server.Addr(), c.Server.Port()
		r.SrcClientID, r.DstClientID = s.clientID, flow.BrokerClientID
	} else {
		r.SrcAddr, r.SrcPort = c.Server.Addr(), c.Server.Port()
		r.DstAddr, r.DstPort = c.Client.Addr(), c.Client.Port()
		r.SrcClientID, r.DstClientID = flow.BrokerClientID, s.clientID
	}
}

// single emits a one-packet flow.
func (t *Tracker) single(s *session, dir reassembly.Direction, ts int64, n uint64, fill func(*flow.Record)) {
	r := &t.rec
	*r = flow.Record{}
	t.base(r, s, dir)
	r.Start = captureTime(ts)
	r.End = r.Start
	r.Packets, r.Octets = 1, n
	if fill != nil {
		fill(r)
	}
	r.Anomalies = t.an
	r.EndReason = flow.EndOfFlow
	t.emit(r)
}

// begin opens a transaction; an open one with the same key is superseded.
func (t *Tracker) begin(s *session, dir reassembly.Direction, kind uint8, pid uint16, ts int64, n uint64) *tx {
	key := makeTxKey(s, dir, kind, pid)
	if old := t.txs[key]; old != nil {
		t.stats.Superseded++
		t.end(old, flow.EndForced)
	}
	if len(t.txs) >= t.cfg.MaxTransactions {
		if oldest := t.lru.Front(); oldest != nil {
			t.flag(flow.AnomalyTooManyTransactions)
			t.end(oldest, flow.EndLackOfResources)
		}
	}
	var x *tx
	if n := len(t.free); n > 0 {
		x = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		x = new(tx)
	}
	x.key = key
	x.s = s
	x.last, x.start, x.end = ts, ts, ts
	x.suspect = s.resuming
	t.base(&x.rec, s, dir) // x is zero: new, or cleared by end
	x.rec.Packets, x.rec.Octets = 1, n
	x.rec.PacketID = pid
	x.rec.Anomalies = t.an
	t.txs[key] = x
	t.lru.PushBack(&x.lru, x)
	s.txs.PushFront(&x.inSession, x)
	return x
}

func (t *Tracker) attach(x *tx, ts int64, n uint64) {
	x.rec.Packets++
	x.rec.Octets += n
	x.rec.Anomalies |= t.an
	if ts > x.end {
		x.end = ts
	}
	x.last = ts
	t.lru.MoveToBack(&x.lru)
}

// end emits an open transaction's flow and frees it.
func (t *Tracker) end(x *tx, reason flow.EndReason) {
	delete(t.txs, x.key)
	t.lru.Remove(&x.lru)
	x.s.txs.Remove(&x.inSession)
	if x.suspect && reason == flow.EndOfFlow {
		// Its answers may have passed while its request was held back.
		reason = flow.EndForced
	}
	if reason != flow.EndOfFlow {
		// Its answers may still come: they are not anomalies. An idle
		// timeout ends it at least IdleTimeout after its last packet.
		t.unseen(x.s, max(t.lastTs, x.last+int64(t.cfg.IdleTimeout)))
	}
	x.rec.EndReason = reason
	x.rec.Start, x.rec.End = captureTime(x.start), captureTime(x.end)
	t.emit(&x.rec)
	*x = tx{}
	if len(t.free) < 4096 {
		t.free = append(t.free, x)
	}
}

// captureTime turns a capture time in Unix nanoseconds back into the
// time.Time the capture reported (time.Unix); 0, a packet without a
// timestamp (a pcapng simple packet block), is the zero time again.
func captureTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (t *Tracker) emit(r *flow.Record) {
	r.ApplicationProtocol = flow.AppMQTT
	if len(r.CorrelationData) > 0 {
		r.CorrelationData = t.bytes.copy(r.CorrelationData)
	}
	t.stats.Flows[r.ControlType&15]++
	if int(r.EndReason) < len(t.stats.FlowsByEnd) {
		t.stats.FlowsByEnd[r.EndReason]++
	}
	t.out.Flow(r)
}

// byteChunks hands out copies of short byte strings cut from shared
// 4 KiB chunks, one allocation for many flows' correlation data. A chunk is
// only appended to, never reused: a copy stays valid as long as a record
// holds it, and only emitted records do (open transactions keep their
// own), so a chunk becomes garbage once the flows cut from it are exported.
type byteChunks struct{ buf []byte }

const (
	chunkSize     = 4096
	chunkMaxPiece = 256 // longer strings get their own allocation
)

func (c *byteChunks) copy(b []byte) []byte {
	if len(b) > chunkMaxPiece {
		return append([]byte(nil), b...)
	}
	if cap(c.buf)-len(c.buf) < len(b) {
		c.buf = make([]byte, 0, chunkSize)
	}
	off := len(c.buf)
	c.buf = append(c.buf, b...)
	return c.buf[off:len(c.buf):len(c.buf)]
}

// interner shares the strings of repeated names (client ids, topics) so a
// flow costs no allocation for them. It is bounded: when full it is reset.
type interner struct {
	m   map[string]string
	max int
}

func newInterner(max int) interner { return interner{m: make(map[string]string), max: max} }

func (in *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	if len(b) > 256 {
		return string(b)
	}
	if len(in.m) >= in.max {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	return s
}
