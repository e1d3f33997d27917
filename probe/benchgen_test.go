package probe

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// benchSpec describes a synthetic capture of MQTT v5 traffic to one broker
// (10.0.0.1:1883) from many clients, for the benchmarks:
//
//   - every connection: TCP handshake, CONNECT/CONNACK; subscribers also
//     SUBSCRIBE/SUBACK;
//   - Rounds rounds, in each of which every publisher sends a QoS 2 PUBLISH
//     (topic, 16 bytes of Correlation Data, 32-byte payload) and the
//     exchange completes (PUBREC, PUBREL, PUBCOMP), followed by the client's
//     pure ACK; connections are interleaved, as on a busy broker;
//   - every DeliverEvery-th publish is delivered to a subscriber at QoS 1
//     (PUBLISH with the correlation data, PUBACK);
//   - at the end DISCONNECT and FIN/FIN/ACK for every connection.
//
// Frames are Ethernet/IPv4/TCP, 10 µs apart.
type benchSpec struct {
	Publishers   int
	Subscribers  int
	Rounds       int
	DeliverEvery int
}

// benchCaptureInfo counts what a generated capture holds.
type benchCaptureInfo struct {
	File        string
	Packets     int // frames
	MQTTPackets int // frames whose TCP payload carries MQTT
	Flows       int // flows a probe must export
	Bytes       int64
}

// benchGenVersion changes whenever the generator's output changes, so a
// cached file of an older generator is not reused.
const benchGenVersion = "v1"

// benchCapture returns the capture of spec, generated once into the
// system's temporary directory under a name derived from the spec and the
// generator version, and reused by later runs.
func benchCapture(tb testing.TB, spec benchSpec) benchCaptureInfo {
	tb.Helper()
	sum := sha256.Sum256(fmt.Appendf(nil, "%s %+v", benchGenVersion, spec))
	file := filepath.Join(os.TempDir(), "mission-bench-"+hex.EncodeToString(sum[:8])+".pcap")
	info := benchCaptureInfo{File: file}
	g := &benchGen{spec: spec}
	if fi, err := os.Stat(file); err == nil {
		g.count() // the counts without writing
		info.Packets, info.MQTTPackets, info.Flows, info.Bytes = g.packets, g.mqtt, g.flows, fi.Size()
		return info
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "mission-bench-*.tmp")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		tb.Fatal(err)
	}
	g.w = w
	g.run()
	if g.err != nil {
		tb.Fatal(g.err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		tb.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		tb.Fatal(err)
	}
	info.Packets, info.MQTTPackets, info.Flows, info.Bytes = g.packets, g.mqtt, g.flows, fi.Size()
	return info
}

type benchConn struct {
	client     [4]byte
	port       uint16
	cseq, sseq uint32
	id         string
	pid        uint16 // the broker's packet ids towards a subscriber
}

type benchGen struct {
	spec    benchSpec
	w       *pcapgo.Writer // nil: only count
	err     error
	ts      time.Time
	frame   []byte
	mqttBuf []byte
	packets int
	mqtt    int
	flows   int
}

var benchBroker = [4]byte{10, 0, 0, 1}

const benchBrokerPort = 1883

func (g *benchGen) count() { g.w = nil; g.run() }

func (g *benchGen) run() {
	g.ts = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sp := g.spec
	n := sp.Publishers + sp.Subscribers
	conns := make([]*benchConn, n)
	for i := range conns {
		c := &benchConn{client: [4]byte{10, 1, byte(i >> 8), byte(i)}, port: uint16(20000 + i%40000),
			cseq: uint32(i) * 7919, sseq: uint32(i) * 104729}
		if i < sp.Publishers {
			c.id = fmt.Sprintf("sensor-%05d", i)
		} else {
			c.id = fmt.Sprintf("dashboard-%05d", i)
		}
		conns[i] = c
	}
	const syn, ack, fin, psh = 0x02, 0x10, 0x01, 0x08
	for _, c := range conns {
		g.tcp(c, true, syn, nil)
		g.tcp(c, false, syn|ack, nil)
		g.tcp(c, true, ack, nil)
		g.tcp(c, true, psh|ack, g.connect(c.id))
		g.tcp(c, false, psh|ack, []byte{0x20, 3, 0, 0, 0})
		g.flows++
	}
	subs := conns[sp.Publishers:]
	for i, c := range subs {
		g.tcp(c, true, psh|ack, g.subscribe(uint16(i+1), "plant/#"))
		g.tcp(c, false, psh|ack, []byte{0x90, 4, byte((i + 1) >> 8), byte(i + 1), 0, 1})
		g.flows++
	}
	var corr [16]byte
	msg := 0
	for r := range sp.Rounds {
		pid := uint16(r%65535 + 1)
		for i, c := range conns[:sp.Publishers] {
			msg++
			binary.BigEndian.PutUint64(corr[:8], uint64(msg))
			binary.BigEndian.PutUint64(corr[8:], uint64(i))
			topic := fmt.Sprintf("plant/line%d/sensor%d/temperature", i%16, i)
			g.tcp(c, true, psh|ack, g.publish(0x34, topic, pid, corr[:]))
			g.tcp(c, false, psh|ack, []byte{0x50, 2, byte(pid >> 8), byte(pid)})
			g.tcp(c, true, psh|ack, []byte{0x62, 2, byte(pid >> 8), byte(pid)})
			g.tcp(c, false, psh|ack, []byte{0x70, 2, byte(pid >> 8), byte(pid)})
			g.tcp(c, true, ack, nil)
			g.flows++
			if len(subs) > 0 && sp.DeliverEvery > 0 && msg%sp.DeliverEvery == 0 {
				s := subs[(msg/sp.DeliverEvery)%len(subs)]
				s.pid = s.pid%65535 + 1
				g.tcp(s, false, psh|ack, g.publish(0x32, topic, s.pid, corr[:]))
				g.tcp(s, true, psh|ack, []byte{0x40, 2, byte(s.pid >> 8), byte(s.pid)})
				g.flows++
			}
		}
	}
	for _, c := range conns {
		g.tcp(c, true, psh|ack|fin, []byte{0xe0, 0})
		g.flows++
		g.tcp(c, false, fin|ack, nil)
		g.tcp(c, true, ack, nil)
	}
}

// tcp writes one frame of connection c (client to broker if up).
func (g *benchGen) tcp(c *benchConn, up bool, flags byte, payload []byte) {
	g.packets++
	if len(payload) > 0 {
		g.mqtt++
	}
	src, dst, sport, dport, seq, ack := c.client, benchBroker, c.port, uint16(benchBrokerPort), &c.cseq, c.sseq
	if !up {
		src, dst, sport, dport, seq, ack = benchBroker, c.client, benchBrokerPort, c.port, &c.sseq, c.cseq
	}
	if flags == 0x02 { // the SYN acknowledges nothing
		ack = 0
	}
	if g.w != nil {
		b := g.frame[:0]
		b = append(b, 0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00) // Ethernet
		if !up {
			copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 0x02})
			copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 0x01})
		}
		total := 40 + len(payload)
		b = append(b, 0x45, 0, byte(total>>8), byte(total), byte(g.packets>>8), byte(g.packets), 0x40, 0, 64, 6, 0, 0)
		b = append(b, src[:]...)
		b = append(b, dst[:]...)
		b = binary.BigEndian.AppendUint16(b, sport)
		b = binary.BigEndian.AppendUint16(b, dport)
		b = binary.BigEndian.AppendUint32(b, *seq)
		b = binary.BigEndian.AppendUint32(b, ack)
		b = append(b, 5<<4, flags, 0xff, 0xff, 0, 0, 0, 0)
		b = append(b, payload...)
		g.frame = b
		ci := gopacket.CaptureInfo{Timestamp: g.ts, CaptureLength: len(b), Length: len(b)}
		if err := g.w.WritePacket(ci, b); err != nil && g.err == nil {
			g.err = err
		}
	}
	*seq += uint32(len(payload))
	if flags&0x03 != 0 { // SYN, FIN
		*seq++
	}
	g.ts = g.ts.Add(10 * time.Microsecond)
}

func appendMQTTString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

func appendVarint(b []byte, n int) []byte {
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

// packet prepends a fixed header to body.
func (g *benchGen) packet(first byte, body []byte) []byte {
	out := appendVarint([]byte{first}, len(body))
	return append(out, body...)
}

func (g *benchGen) connect(id string) []byte {
	b := appendMQTTString(g.mqttBuf[:0], "MQTT")
	b = append(b, 5, 0x02, 0, 60, 0)
	b = appendMQTTString(b, id)
	g.mqttBuf = b
	return g.packet(0x10, b)
}

func (g *benchGen) subscribe(pid uint16, filter string) []byte {
	b := binary.BigEndian.AppendUint16(g.mqttBuf[:0], pid)
	b = append(b, 0)
	b = appendMQTTString(b, filter)
	b = append(b, 0x01)
	g.mqttBuf = b
	return g.packet(0x82, b)
}

func (g *benchGen) publish(first byte, topic string, pid uint16, corr []byte) []byte {
	b := appendMQTTString(g.mqttBuf[:0], topic)
	b = binary.BigEndian.AppendUint16(b, pid)
	b = append(b, byte(3+len(corr)), 0x09)
	b = append(binary.BigEndian.AppendUint16(b, uint16(len(corr))), corr...)
	b = append(b, `{"t":21.5,"unit":"C","seq":12345}`[:32]...)
	g.mqttBuf = b
	return g.packet(first, b)
}
