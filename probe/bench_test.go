package probe

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/mission-ids/mission/probe/tracker"
)

// The benchmarks (docs/benchmarks.md, section "probe", has the figures and
// commands):
//
//	go test ./probe -run '^$' -bench 'Offline|Tshark' -benchtime 3x -cpu 1
//	go test ./probe -run '^$' -bench Connections -benchtime 1x -cpu 1
//
// Their captures are generated on first use (benchgen_test.go) and cached
// in the temporary directory; normal test runs never build them.

// discardExporter is an Exporter that drops everything.
type discardExporter struct{ n int }

func (d *discardExporter) Export(recs []flow.Record) error { d.n += len(recs); return nil }
func (d *discardExporter) Flush() error                    { return nil }
func (d *discardExporter) Close() error                    { return nil }

// benchLarge is about 1.4 million frames: 1000 connections (900
// publishers, 100 subscribers), 300 QoS 2 publishes per publisher.
var benchLarge = benchSpec{Publishers: 900, Subscribers: 100, Rounds: 300, DeliverEvery: 10}

// benchMedium has the same shape on 100 connections: about 95,000 frames,
// small enough for tshark.
var benchMedium = benchSpec{Publishers: 90, Subscribers: 10, Rounds: 200, DeliverEvery: 10}

// runProbeOnce processes the file once and checks the flows.
func runProbeOnce(b *testing.B, info benchCaptureInfo) {
	exp := &discardExporter{}
	p, err := New(Config{ReadFile: info.File, TLSPorts: []uint16{}}, exp)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	st := p.Stats()
	if exp.n != info.Flows || st.MQTTSegments != uint64(info.Packets) || st.FlowsDropped != 0 {
		b.Fatalf("exported %d flows (want %d), %d MQTT-port segments (want %d), %d dropped at the queue",
			exp.n, info.Flows, st.MQTTSegments, info.Packets, st.FlowsDropped)
	}
}

// BenchmarkProbeOffline reads a large synthetic capture with the probe
// (file reader, L2–L4 decode, reassembly, MQTT decode, transactions,
// export queue to a discarding exporter).
func BenchmarkProbeOffline(b *testing.B) {
	info := benchCapture(b, benchLarge)
	b.Logf("%s: %d frames, %d carrying MQTT, %d flows, %.0f MB", info.File, info.Packets, info.MQTTPackets, info.Flows, float64(info.Bytes)/1e6)
	b.SetBytes(info.Bytes)
	b.ResetTimer()
	for range b.N {
		runProbeOnce(b, info)
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(info.MQTTPackets)*float64(b.N)/sec, "mqtt-pkts/s")
	b.ReportMetric(float64(info.Packets)*float64(b.N)/sec, "frames/s")
	b.ReportMetric(float64(info.Flows)*float64(b.N)/sec, "flows/s")
}

var (
	tsharkOnce sync.Once
	tsharkWall time.Duration
	tsharkCPU  time.Duration
	tsharkErr  error
)

// timeTshark runs tshark on the file, as an analyst would to find its MQTT
// messages, and returns its wall and CPU time.
func timeTshark(file string) (wall, cpu time.Duration, err error) {
	cmd := exec.Command("tshark", "-r", file, "-Y", "mqtt", "-d", fmt.Sprintf("tcp.port==%d,mqtt", benchBrokerPort))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("tshark: %w: %s", err, stderr.String())
	}
	wall = time.Since(start)
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// BenchmarkProbeVsTshark processes a medium capture with the probe (timed)
// and once with tshark -Y mqtt (not timed by the framework), and reports
// both rates and the ratio, per MQTT-bearing packet.
func BenchmarkProbeVsTshark(b *testing.B) {
	info := benchCapture(b, benchMedium)
	if _, err := exec.LookPath("tshark"); err != nil {
		b.Fatalf("tshark not found: apt-get install tshark (%v)", err)
	}
	tsharkOnce.Do(func() { tsharkWall, tsharkCPU, tsharkErr = timeTshark(info.File) })
	if tsharkErr != nil {
		b.Fatal(tsharkErr)
	}
	b.ResetTimer()
	for range b.N {
		runProbeOnce(b, info)
	}
	ours := float64(info.MQTTPackets) * float64(b.N) / b.Elapsed().Seconds()
	theirs := float64(info.MQTTPackets) / tsharkWall.Seconds()
	b.ReportMetric(ours, "mqtt-pkts/s")
	b.ReportMetric(theirs, "tshark-mqtt-pkts/s")
	b.ReportMetric(float64(info.MQTTPackets)/tsharkCPU.Seconds(), "tshark-mqtt-pkts/cpu-s")
	b.ReportMetric(ours/theirs, "x-tshark")
}

// BenchmarkConnectionsMemory tracks 100,000 concurrent MQTT connections
// (TCP handshake, CONNECT, CONNACK, ACK each, all left open) in the
// probe's reassembly and tracker, and reports the memory they hold.
func BenchmarkConnectionsMemory(b *testing.B) {
	const conns = 100_000
	for range b.N {
		b.StopTimer()
		runtime.GC()
		debug.FreeOSMemory()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		rssBefore := processRSS()
		b.StartTimer()

		flows := 0
		tr := tracker.New(tracker.Config{}, tracker.FlowFunc(func(*flow.Record) { flows++ }))
		asm := reassembly.New(reassembly.Config{}, tr)
		feedConnections(asm, conns)

		b.StopTimer()
		runtime.GC()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		rss := processRSS()
		st, ts := asm.Stats(), tr.Stats()
		if st.Connections != conns || ts.Sessions != conns || flows != conns {
			b.Fatalf("tracking %d connections, %d sessions, %d flows; want %d each", st.Connections, ts.Sessions, flows, conns)
		}
		heap := float64(after.HeapInuse) - float64(before.HeapInuse)
		b.ReportMetric(heap/1e6, "heap-MB")
		b.ReportMetric(heap/conns, "heap-B/conn")
		b.ReportMetric(float64(rss)/1e6, "rss-MB")
		b.ReportMetric(float64(rss-rssBefore)/1e6, "rss-growth-MB")
		runtime.KeepAlive(asm)
		runtime.KeepAlive(tr)
		b.StartTimer()
	}
}

// feedConnections opens n MQTT v5 connections on the assembler.
func feedConnections(asm *reassembly.Assembler, n int) {
	broker := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), 1883)
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := &benchGen{}
	connack := []byte{0x20, 3, 0, 0, 0}
	for i := range n {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(1 + i>>16), byte(i >> 8), byte(i)}), uint16(20000+i%40000))
		cs, ss := uint32(i)*7919, uint32(i)*104729
		connect := g.connect(fmt.Sprintf("sensor-%06d", i))
		for _, s := range []reassembly.Segment{
			{Src: client, Dst: broker, Seq: cs, SYN: true},
			{Src: broker, Dst: client, Seq: ss, Ack: cs + 1, SYN: true, ACK: true},
			{Src: client, Dst: broker, Seq: cs + 1, Ack: ss + 1, ACK: true},
			{Src: client, Dst: broker, Seq: cs + 1, Ack: ss + 1, ACK: true, Payload: connect},
			{Src: broker, Dst: client, Seq: ss + 1, Ack: cs + 1 + uint32(len(connect)), ACK: true, Payload: connack},
			{Src: client, Dst: broker, Seq: cs + 1 + uint32(len(connect)), Ack: ss + 1 + uint32(len(connack)), ACK: true},
		} {
			asm.Assemble(&s, ts)
			ts = ts.Add(time.Microsecond)
		}
	}
}
