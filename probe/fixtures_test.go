package probe

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
)

// fixture writes a hand-made capture of one TCP connection between a
// client and a broker on port 1883.
type fixture struct {
	t     *testing.T
	w     *pcapgo.Writer
	f     *os.File
	seq   [2]uint32 // next sequence number: client, broker
	now   time.Time
	frame int
}

const fixturePort = 1883

func newFixture(t *testing.T, file string) *fixture {
	f, err := os.Create(file)
	require.NoError(t, err)
	w := pcapgo.NewWriter(f)
	require.NoError(t, w.WriteFileHeader(65536, layers.LinkTypeEthernet))
	return &fixture{t: t, w: w, f: f, seq: [2]uint32{1000, 5000}, now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
}

// send writes one segment from the client (fromBroker false) or the
// broker, 1 ms after the previous frame, acknowledging everything the peer
// sent; skip advances the sender's sequence first (a segment never
// captured).
func (x *fixture) send(fromBroker bool, flags string, payload []byte) time.Time {
	i := 0
	if fromBroker {
		i = 1
	}
	x.now = x.now.Add(time.Millisecond)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	cli, brk := net.IP{10, 0, 0, 2}, net.IP{10, 0, 0, 1}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli, DstIP: brk}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: fixturePort, Seq: x.seq[i], Ack: x.seq[i^1], ACK: true, Window: 65535}
	if fromBroker {
		ip.SrcIP, ip.DstIP = brk, cli
		tcp.SrcPort, tcp.DstPort = fixturePort, 40000
	}
	tcp.SYN = strings.Contains(flags, "S")
	tcp.FIN = strings.Contains(flags, "F")
	tcp.PSH = len(payload) > 0
	if tcp.SYN && !fromBroker {
		tcp.ACK = false
	}
	require.NoError(x.t, tcp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(x.t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(payload)))
	b := buf.Bytes()
	require.NoError(x.t, x.w.WritePacket(gopacket.CaptureInfo{Timestamp: x.now, CaptureLength: len(b), Length: len(b)}, b))
	x.seq[i] += uint32(len(payload))
	if tcp.SYN || tcp.FIN {
		x.seq[i]++
	}
	x.frame++
	return x.now
}

func (x *fixture) handshake() {
	x.send(false, "S", nil)
	x.seq[1]-- // the SYN-ACK's own sequence number
	x.send(true, "S", nil)
	x.seq[1]++
	x.send(false, "", nil)
}

func (x *fixture) close() {
	x.send(false, "F", nil)
	x.send(true, "F", nil)
	x.send(false, "", nil)
	require.NoError(x.t, x.f.Close())
}

// Small MQTT 3.1.1 packets.
func mqttPkt(first byte, body ...byte) []byte {
	var l []byte
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		l = append(l, d)
		if n == 0 {
			break
		}
	}
	return append(append([]byte{first}, l...), body...)
}

func mqttStr(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func mqttPublish(qos byte, pid uint16, topic string, payload []byte) []byte {
	body := mqttStr(topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, pid)
	}
	return mqttPkt(0x30|qos<<1, append(body, payload...)...)
}

// checkFixture compares the probe's flows with tshark's dissection of the
// same file, capture times included.
func checkFixture(t *testing.T, file string, want int) []flow.Record {
	msgs := mqtttest.TsharkMessages(t, file, fixturePort)
	ref, _ := mqtttest.ReferenceFlows(msgs, fixturePort)
	got, _ := runOffline(t, file, fixturePort)
	norm := func(rs []flow.Record) []flow.Record {
		out := make([]flow.Record, len(rs))
		for i := range rs {
			out[i] = *unknownSession(&rs[i])
		}
		return out
	}
	requireSameFlows(t, norm(ref), norm(got), true)
	require.Len(t, got, want)
	return got
}

// TestFixtureLonePing: the capture starts with a lone PINGREQ/PINGRESP
// exchange, proven by the two directions agreeing.
func TestFixtureLonePing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ping.pcap")
	x := newFixture(t, file)
	req := x.send(false, "", mqttPkt(0xc0))
	resp := x.send(true, "", mqttPkt(0xd0))
	got := checkFixture(t, file, 1)
	require.Equal(t, flow.PingReq, got[0].ControlType)
	require.Equal(t, flow.EndOfFlow, got[0].EndReason)
	require.True(t, got[0].Start.Equal(req))
	require.True(t, got[0].End.Equal(resp))
	require.Equal(t, flow.IdentityNone, got[0].IdentitySource)
}

// TestFixtureInsideLargePublish: the capture starts inside a PUBLISH
// spread over three segments (its last two captured), then a DISCONNECT
// and FIN: the DISCONNECT segment ends exactly at the end of the stream.
// tshark cannot dissect the cut capture (it reads the tail of the PUBLISH
// as a packet), so the reference is its dissection of the whole capture,
// the flows that start after the cut.
func TestFixtureInsideLargePublish(t *testing.T) {
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.pcap")
	x := newFixture(t, whole)
	payload := []byte(strings.Repeat(`{"temperature": 21.5, "unit": "C"} `, 120))
	big := mqttPublish(0, 0, "plant/sensors/t", payload)
	third := len(big) / 3
	x.send(false, "", big[:third])
	cutAt := x.send(false, "", big[third:2*third])
	x.send(false, "", big[2*third:])
	disc := x.send(false, "", mqttPkt(0xe0))
	x.close()
	pkts, lt := loadPackets(t, whole)
	cut := filepath.Join(dir, "cut.pcap")
	writePackets(t, cut, lt, pkts[1:], stampsOf(pkts[1:]))

	ref, _ := mqtttest.ReferenceFlows(mqtttest.TsharkMessages(t, whole, fixturePort), fixturePort)
	var after []flow.Record
	for _, r := range ref {
		if !r.Start.Before(cutAt) {
			after = append(after, *unknownSession(&r))
		}
	}
	require.Len(t, after, 2, "tshark: the PUBLISH (completed after the cut) and the DISCONNECT")
	got, st := runOffline(t, cut, fixturePort)
	require.Len(t, got, 1)
	requireSameFlows(t, after[1:], got, true) // the PUBLISH started before the cut
	require.Equal(t, flow.Disconnect, got[0].ControlType)
	require.True(t, got[0].Start.Equal(disc), "stamped with the DISCONNECT's own segment")
	require.EqualValues(t, len(big)-third, st.Tracker.ResyncDropped, "the captured tail of the cut PUBLISH is counted")
}

// TestFixtureMissingConnect: the CONNECT segment was not captured (the
// broker's ACK of it proves the gap); two SUBSCRIBE/SUBACK exchanges follow.
func TestFixtureMissingConnect(t *testing.T) {
	file := filepath.Join(t.TempDir(), "noconnect.pcap")
	x := newFixture(t, file)
	x.handshake()
	connect := mqttPkt(0x10, append(append(mqttStr("MQTT"), 4, 0x02, 0, 60), mqttStr("sensor-7")...)...)
	x.seq[0] += uint32(len(connect)) // never captured
	x.send(true, "", mqttPkt(0x20, 0, 0))
	sub := func(pid uint16, filter string) []byte {
		return mqttPkt(0x82, append(append(binary.BigEndian.AppendUint16(nil, pid), mqttStr(filter)...), 1)...)
	}
	s1 := x.send(false, "", sub(1, "plant/a/#"))
	a1 := x.send(true, "", mqttPkt(0x90, 0, 1, 1))
	s2 := x.send(false, "", sub(2, "plant/b/#"))
	a2 := x.send(true, "", mqttPkt(0x90, 0, 2, 1))
	x.close()
	msgs := mqtttest.TsharkMessages(t, file, fixturePort)
	ref, _ := mqtttest.ReferenceFlows(msgs, fixturePort)
	got, st := runOffline(t, file, fixturePort)
	requireSameFlows(t, ref, got, true)
	require.Len(t, got, 2)
	require.True(t, got[0].Start.Equal(s1) && got[0].End.Equal(a1), "first SUBSCRIBE keeps its own times")
	require.True(t, got[1].Start.Equal(s2) && got[1].End.Equal(a2))
	for _, g := range got {
		require.Equal(t, flow.EndOfFlow, g.EndReason)
	}
	require.EqualValues(t, 1, st.Tracker.Unmatched[2], "the CONNACK without its CONNECT is counted")
}
