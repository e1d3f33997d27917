package tracker

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/stretchr/testify/require"
)

// A small MQTT encoder for the tests, written from the specification,
// independent of mqttparse.

func vbi(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func str(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func pkt(first byte, body ...[]byte) []byte {
	var b []byte
	for _, x := range body {
		b = append(b, x...)
	}
	return append(append([]byte{first}, vbi(len(b))...), b...)
}

func props(ps ...[]byte) []byte {
	var b []byte
	for _, p := range ps {
		b = append(b, p...)
	}
	return append(vbi(len(b)), b...)
}

func propCorrelation(d string) []byte { return append([]byte{0x09}, str(d)...) }
func propAlias(a uint16) []byte       { return append([]byte{0x23}, u16(a)...) }
func propUser(k, v string) []byte     { return append(append([]byte{0x26}, str(k)...), str(v)...) }
func propAssigned(id string) []byte   { return append([]byte{0x12}, str(id)...) }
func propResponse(t string) []byte    { return append([]byte{0x08}, str(t)...) }

func connect(level byte, clientID, user string) []byte {
	flags := byte(0x02)
	var payload []byte
	payload = append(payload, str(clientID)...)
	if user != "" {
		flags |= 0x80 | 0x40
		payload = append(payload, str(user)...)
		payload = append(payload, str("secret")...)
	}
	name := "MQTT"
	if level == 3 {
		name = "MQIsdp"
	}
	vh := append(str(name), level, flags, 0, 60)
	if level == 5 {
		vh = append(vh, props()...)
	}
	return pkt(0x10, vh, payload)
}

func connack(level byte, rc byte, p ...[]byte) []byte {
	if level == 5 {
		return pkt(0x20, []byte{0, rc}, props(p...))
	}
	return pkt(0x20, []byte{0, rc})
}

func publish(level byte, qos byte, dup, retain bool, pid uint16, topic, payload string, p ...[]byte) []byte {
	first := byte(0x30) | qos<<1
	if dup {
		first |= 0x08
	}
	if retain {
		first |= 0x01
	}
	vh := str(topic)
	if qos > 0 {
		vh = append(vh, u16(pid)...)
	}
	if level == 5 {
		vh = append(vh, props(p...)...)
	}
	return pkt(first, vh, []byte(payload))
}

func ack(first byte, pid uint16, level byte, rc byte) []byte {
	if level == 5 && rc != 0 {
		return pkt(first, u16(pid), []byte{rc}, props())
	}
	return pkt(first, u16(pid))
}

func subscribe(level byte, pid uint16, filters ...string) []byte {
	vh := u16(pid)
	if level == 5 {
		vh = append(vh, props()...)
	}
	var pl []byte
	for _, f := range filters {
		pl = append(append(pl, str(f)...), 1)
	}
	return pkt(0x82, vh, pl)
}

func suback(level byte, pid uint16, codes ...byte) []byte {
	vh := u16(pid)
	if level == 5 {
		vh = append(vh, props()...)
	}
	return pkt(0x90, vh, codes)
}

// harness drives a Tracker through a real Assembler.
type harness struct {
	t     *testing.T
	tr    *Tracker
	asm   *reassembly.Assembler
	flows []flow.Record
	seq   [2]uint32
	now   time.Time
	cli   netip.AddrPort
	srv   netip.AddrPort
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		cli: netip.MustParseAddrPort("192.0.2.10:50000"), srv: netip.MustParseAddrPort("192.0.2.1:1883")}
	h.tr = New(cfg, FlowFunc(func(r *flow.Record) { h.flows = append(h.flows, *r) }))
	h.asm = reassembly.New(reassembly.Config{ServerPort: func(p uint16) bool { return p == 1883 }}, h.tr)
	h.seq = [2]uint32{100, 900}
	return h
}

func (h *harness) handshake() {
	h.asm.Assemble(&reassembly.Segment{Src: h.cli, Dst: h.srv, Seq: h.seq[0] - 1, SYN: true}, h.now)
	h.asm.Assemble(&reassembly.Segment{Src: h.srv, Dst: h.cli, Seq: h.seq[1] - 1, SYN: true, ACK: true}, h.now)
}

// send delivers bytes in one segment from the client (c2s) or broker.
func (h *harness) send(dir reassembly.Direction, data ...[]byte) {
	var b []byte
	for _, d := range data {
		b = append(b, d...)
	}
	h.now = h.now.Add(time.Millisecond)
	src, dst := h.cli, h.srv
	if dir == reassembly.ServerToClient {
		src, dst = h.srv, h.cli
	}
	h.asm.Assemble(&reassembly.Segment{Src: src, Dst: dst, Seq: h.seq[dir], Payload: b}, h.now)
	h.seq[dir] += uint32(len(b))
}

const (
	c2s = reassembly.ClientToServer
	s2c = reassembly.ServerToClient
)

func TestTransactionsV5(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.send(c2s, connect(5, "", "alice"))
	h.send(s2c, connack(5, 0, propAssigned("auto-7")))
	h.send(c2s, publish(5, 0, false, true, 0, "plant/temp", "21.5", propCorrelation("c-1")))
	h.send(c2s, publish(5, 1, false, false, 1, "plant/door", "open", propCorrelation("c-2"), propResponse("plant/door/ack")))
	h.send(s2c, ack(0x40, 1, 5, 0))
	// QoS 2 with PUBREL from the initiator, a topic alias set then used.
	h.send(c2s, publish(5, 2, false, false, 2, "plant/smoke", "1", propAlias(3), propCorrelation("c-3")))
	h.send(s2c, ack(0x50, 2, 5, 0))
	h.send(c2s, ack(0x62, 2, 5, 0))
	h.send(s2c, ack(0x70, 2, 5, 0))
	h.send(c2s, publish(5, 0, false, false, 0, "", "2", propAlias(3),
		propUser("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")))
	// Broker-initiated QoS 1 delivery in the broker's packet-id space (id 1 again).
	h.send(s2c, publish(5, 1, false, false, 1, "plant/cmd", "go"))
	h.send(c2s, ack(0x40, 1, 5, 0))
	h.send(c2s, subscribe(5, 3, "plant/+", "$SYS/#"))
	h.send(s2c, suback(5, 3, 1, 0x87))
	h.send(c2s, pkt(0xc0))
	h.send(s2c, pkt(0xd0))
	h.send(c2s, pkt(0xe0, []byte{0x04}, props()))

	f := h.flows
	require.Len(t, f, 9)
	byType := func(i int, ct flow.ControlType) flow.Record {
		require.Equal(t, ct, f[i].ControlType, "flow %d", i)
		return f[i]
	}
	c := byType(0, flow.Connect)
	require.Equal(t, "auto-7", c.SrcClientID, "assigned client id names the client")
	require.Equal(t, flow.BrokerClientID, c.DstClientID)
	require.Equal(t, "alice", c.Username)
	require.Equal(t, uint64(2), c.Packets)
	require.Equal(t, uint8(5), c.ProtocolVersion)
	require.True(t, c.HasReasonCode)
	require.Equal(t, flow.EndOfFlow, c.EndReason)
	require.Equal(t, time.Millisecond, c.Duration())

	q0 := byType(1, flow.Publish)
	require.Equal(t, "plant/temp", q0.Topic)
	require.True(t, q0.Retain)
	require.Equal(t, "c-1", string(q0.CorrelationData))
	require.Equal(t, flow.CorrelationData, q0.CorrelationSource)
	require.Equal(t, uint32(4), q0.PayloadLength)
	require.Equal(t, "auto-7", q0.SrcClientID)
	require.Equal(t, uint64(1), q0.Packets)

	q1 := byType(2, flow.Publish)
	require.Equal(t, uint8(1), q1.QoS)
	require.Equal(t, uint16(1), q1.PacketID)
	require.Equal(t, uint64(2), q1.Packets)
	require.Equal(t, "plant/door/ack", q1.ResponseTopic)

	q2 := byType(3, flow.Publish)
	require.Equal(t, uint8(2), q2.QoS)
	require.Equal(t, uint64(4), q2.Packets)
	require.Equal(t, "plant/smoke", q2.Topic)
	require.Equal(t, flow.EndOfFlow, q2.EndReason)

	al := byType(4, flow.Publish)
	require.Equal(t, "plant/smoke", al.Topic, "topic alias resolved")
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", string(al.CorrelationData))
	require.Equal(t, flow.CorrelationTraceparent, al.CorrelationSource)

	bp := byType(5, flow.Publish)
	require.Equal(t, flow.BrokerClientID, bp.SrcClientID)
	require.Equal(t, "auto-7", bp.DstClientID)
	require.Equal(t, h.srv, netip.AddrPortFrom(bp.SrcAddr, bp.SrcPort))
	require.Equal(t, uint64(2), bp.Packets)

	sub := byType(6, flow.Subscribe)
	require.Equal(t, []string{"plant/+", "$SYS/#"}, sub.TopicFilters)
	require.Equal(t, "plant/+", sub.Topic)
	require.Equal(t, uint8(0x87), sub.ReasonCode, "first failure code")

	byType(7, flow.PingReq)
	d := byType(8, flow.Disconnect)
	require.Equal(t, uint8(4), d.ReasonCode)
	require.Equal(t, 0, h.tr.Stats().Open)
	ids := map[uint64]bool{}
	for _, r := range f {
		require.False(t, ids[r.FlowID], "flow ids are unique")
		ids[r.FlowID] = true
	}
}

func TestTransactionsV311AndDup(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	// Several packets in one segment.
	h.send(c2s, connect(4, "sensor-1", ""), publish(4, 1, false, false, 7, "a/b", "x"))
	h.send(s2c, connack(4, 0), ack(0x40, 7, 4, 0))
	// A DUP retransmission joins the open QoS 2 transaction.
	h.send(c2s, publish(4, 2, false, false, 8, "a/c", "y"))
	h.send(c2s, publish(4, 2, true, false, 8, "a/c", "y"))
	h.send(s2c, ack(0x50, 8, 4, 0))
	h.send(c2s, ack(0x62, 8, 4, 0))
	h.send(s2c, ack(0x70, 8, 4, 0))
	// Packet id reuse after completion is a new transaction.
	h.send(c2s, publish(4, 1, false, false, 7, "a/b", "z"))
	h.send(s2c, ack(0x40, 7, 4, 0))
	// A response without request is an anomaly flow.
	h.send(s2c, ack(0x40, 99, 4, 0))

	require.Len(t, h.flows, 5)
	require.Equal(t, flow.EndAnomaly, h.flows[4].EndReason)
	require.Equal(t, flow.AnomalyMissingPublish, h.flows[4].Anomalies)
	require.Equal(t, uint16(99), h.flows[4].PacketID)
	require.Equal(t, "sensor-1", h.flows[4].DstClientID)
	require.Equal(t, "sensor-1", h.flows[0].SrcClientID)
	require.Equal(t, uint8(4), h.flows[1].ProtocolVersion)
	require.Equal(t, "sensor-1", h.flows[1].SrcClientID)
	require.True(t, h.flows[2].Dup)
	require.Equal(t, uint64(5), h.flows[2].Packets)
	require.Equal(t, uint16(7), h.flows[3].PacketID)
	st := h.tr.Stats()
	require.Equal(t, uint64(1), st.Unmatched[4])
	require.Equal(t, uint64(4), st.FlowsByEnd[flow.EndOfFlow])
	require.Equal(t, uint64(1), st.FlowsByEnd[flow.EndAnomaly])
}

func TestUnfinishedTransactionsEnd(t *testing.T) {
	h := newHarness(t, Config{IdleTimeout: 5 * time.Second})
	h.handshake()
	h.send(c2s, connect(5, "c", ""))
	h.send(s2c, connack(5, 0))
	h.send(c2s, publish(5, 1, false, false, 1, "t", "x"))
	h.tr.Advance(h.now.Add(4 * time.Second))
	require.Len(t, h.flows, 1)
	h.tr.Advance(h.now.Add(6 * time.Second))
	require.Len(t, h.flows, 2)
	require.Equal(t, flow.EndIdleTimeout, h.flows[1].EndReason)

	h.send(c2s, publish(5, 2, false, false, 2, "t", "x"))
	h.asm.FlushAll(h.now)
	require.Len(t, h.flows, 3)
	require.Equal(t, flow.EndForced, h.flows[2].EndReason, "connection closed")
	require.Equal(t, 0, h.tr.Stats().Open)
	require.Equal(t, 0, h.tr.Stats().Sessions)

	h2 := newHarness(t, Config{MaxTransactions: 2})
	h2.handshake()
	h2.send(c2s, connect(5, "c", ""))
	h2.send(s2c, connack(5, 0))
	for i := uint16(1); i <= 3; i++ {
		h2.send(c2s, publish(5, 1, false, false, i, "t", "x"))
	}
	require.Len(t, h2.flows, 2)
	require.Equal(t, flow.EndLackOfResources, h2.flows[1].EndReason)
	require.Equal(t, uint16(1), h2.flows[1].PacketID, "the oldest is evicted")
}

// TestMidstreamResync starts the capture inside a publish payload: the
// tracker must find the next packet boundary and carry on, without a flow
// made of garbage.
func TestMidstreamResync(t *testing.T) {
	h := newHarness(t, Config{})
	big := publish(4, 0, false, false, 0, "big/topic", string(make([]byte, 3000)))
	// No handshake: the first bytes seen are the tail of a packet.
	h.send(c2s, big[1500:])
	h.send(c2s, publish(4, 1, false, false, 5, "a/b", "x"), pkt(0xc0))
	h.send(s2c, ack(0x40, 5, 0, 0), pkt(0xd0))
	require.Len(t, h.flows, 2)
	require.Equal(t, "a/b", h.flows[0].Topic)
	require.Equal(t, uint8(0), h.flows[0].ProtocolVersion, "no CONNECT seen: version unknown")
	require.Equal(t, "", h.flows[0].SrcClientID)
	require.Equal(t, flow.PingReq, h.flows[1].ControlType)
	st := h.tr.Stats()
	require.GreaterOrEqual(t, st.Resyncs, uint64(1))
	require.Equal(t, uint64(len(big)-1500), st.ResyncDropped, "exactly the tail of the packet picked up midstream")
}

// TestGapResync loses a segment inside a connection; flows before and
// after are right and the lost packet yields no flow.
func TestGapResync(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.send(c2s, connect(5, "g", ""))
	h.send(s2c, connack(5, 0))
	lost := publish(5, 0, false, false, 0, "lost", "zzzz")
	h.seq[c2s] += uint32(len(lost)) // never captured
	h.send(c2s, publish(5, 0, false, false, 0, "after/1", "1"), publish(5, 0, false, false, 0, "after/2", "2"))
	// The broker acknowledges everything, proving the hole.
	h.asm.Assemble(&reassembly.Segment{Src: h.srv, Dst: h.cli, Seq: h.seq[s2c], Ack: h.seq[c2s], ACK: true}, h.now)
	require.Len(t, h.flows, 1, "one segment tiled by two packets proves no boundary yet")
	// A second segment that ends at a packet end: segment evidence.
	h.send(c2s, publish(5, 0, false, false, 0, "after/3", "3"))
	var topics []string
	for _, f := range h.flows {
		topics = append(topics, f.Topic)
	}
	require.Equal(t, []string{"", "after/1", "after/2", "after/3"}, topics)
	require.Equal(t, uint8(5), h.flows[1].ProtocolVersion)
}

func BenchmarkPublishQoS2(b *testing.B) {
	var n int
	tr := New(Config{}, FlowFunc(func(r *flow.Record) { n++ }))
	asm := reassembly.New(reassembly.Config{}, tr)
	cli := netip.MustParseAddrPort("192.0.2.10:50000")
	srv := netip.MustParseAddrPort("192.0.2.1:1883")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	asm.Assemble(&reassembly.Segment{Src: cli, Dst: srv, Seq: 0, SYN: true}, now)
	asm.Assemble(&reassembly.Segment{Src: srv, Dst: cli, Seq: 0, SYN: true, ACK: true}, now)
	seq := [2]uint32{1, 1}
	send := func(c2s bool, b []byte) {
		if c2s {
			asm.Assemble(&reassembly.Segment{Src: cli, Dst: srv, Seq: seq[0], Payload: b}, now)
			seq[0] += uint32(len(b))
		} else {
			asm.Assemble(&reassembly.Segment{Src: srv, Dst: cli, Seq: seq[1], Payload: b}, now)
			seq[1] += uint32(len(b))
		}
	}
	send(true, connect(5, "bench", ""))
	send(false, connack(5, 0))
	pub := publish(5, 2, false, false, 1, "plant/sensor/temperature", `{"t":21.5}`, propCorrelation("0123456789abcdef"))
	rec, rel, comp := ack(0x50, 1, 5, 0), ack(0x62, 1, 5, 0), ack(0x70, 1, 5, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		send(true, pub)
		send(false, rec)
		send(true, rel)
		send(false, comp)
	}
	b.ReportMetric(float64(b.N*4)/b.Elapsed().Seconds(), "packets/s")
}

// TestCorrelationDataOwned checks that every emitted flow owns its
// correlation data: the tracker copies it out of the packet and out of the
// transaction (both reused), so a handler that keeps records sees each flow's
// own bytes, short or long, QoS 0 or 1, many flows later.
func TestCorrelationDataOwned(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.send(c2s, connect(5, "owner", ""))
	h.send(s2c, connack(5, 0))
	want := map[uint16]string{}
	for i := range 600 {
		id := uint16(i%500 + 1)
		cd := fmt.Sprintf("corr-%04d", i)
		if i%7 == 0 {
			cd += strings.Repeat("x", 60+i%300) // past the inline buffer, some past a chunk piece
		}
		qos := byte(i % 2)
		if qos == 0 {
			id = 0
		}
		h.send(c2s, publish(5, qos, false, false, id, "plant/x", "v", propCorrelation(cd)))
		if qos == 1 {
			h.send(s2c, ack(0x40, id, 5, 0))
		}
		want[uint16(i)] = cd
	}
	require.Len(t, h.flows, 601)
	for i, f := range h.flows[1:] {
		require.Equal(t, want[uint16(i)], string(f.CorrelationData), "flow %d", i)
		if len(f.CorrelationData) <= chunkMaxPiece {
			require.Equal(t, len(f.CorrelationData), cap(f.CorrelationData), "flow %d: appending must not overwrite a neighbour", i)
		}
	}
}
