package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
)

// collectExporter is a test Exporter that keeps every record.
type collectExporter struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (c *collectExporter) Export(recs []flow.Record) error {
	c.mu.Lock()
	c.recs = append(c.recs, recs...)
	c.mu.Unlock()
	return nil
}
func (c *collectExporter) Flush() error { return nil }
func (c *collectExporter) Close() error { return nil }

func (c *collectExporter) records() []flow.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.recs)
}

// runOffline runs the probe on a capture file and returns its flows.
func runOffline(t testing.TB, file string, port int) ([]flow.Record, Stats) {
	t.Helper()
	exp := &collectExporter{}
	p, err := New(Config{ReadFile: file, MQTTPorts: []uint16{uint16(port)}, TLSPorts: []uint16{}}, exp)
	require.NoError(t, err)
	require.NoError(t, p.Run(context.Background()))
	st := p.Stats()
	require.Zero(t, st.FlowsDropped+st.FlowsLost, "export queue")
	return exp.records(), st
}

// flowLine renders every field the probe and the reference both compute,
// one line per flow, so sorted lists can be diffed. Times are included
// unless withTimes is false (rewritten captures shift them).
func flowLine(r *flow.Record, withTimes bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s:%d>%s:%d v%d pid=%d qos=%d retain=%t dup=%t topic=%q filters=%q src=%q dst=%q user=%q",
		r.ControlType, r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort, r.ProtocolVersion, r.PacketID, r.QoS,
		r.Retain, r.Dup, r.Topic, r.TopicFilters, r.SrcClientID, r.DstClientID, r.Username)
	fmt.Fprintf(&b, " corr=%q/%s resp=%q payload=%d pkts=%d octets=%d end=%d rc=%t/%d proto=%d",
		r.CorrelationData, r.CorrelationSource, r.ResponseTopic, r.PayloadLength, r.Packets, r.Octets, r.EndReason,
		r.HasReasonCode, r.ReasonCode, r.Protocol)
	if withTimes {
		fmt.Fprintf(&b, " start=%d end=%d", r.Start.UnixNano(), r.End.UnixNano())
	}
	return b.String()
}

func flowLines(recs []flow.Record, withTimes bool) []string {
	out := make([]string, len(recs))
	for i := range recs {
		out[i] = flowLine(&recs[i], withTimes)
	}
	sort.Strings(out)
	return out
}

// diffLines returns the lines only in a and only in b (multisets).
func diffLines(a, b []string) (onlyA, onlyB []string) {
	count := map[string]int{}
	for _, l := range b {
		count[l]++
	}
	for _, l := range a {
		if count[l] > 0 {
			count[l]--
		} else {
			onlyA = append(onlyA, l)
		}
	}
	for _, l := range b {
		if count[l] > 0 {
			count[l]--
			onlyB = append(onlyB, l)
		}
	}
	return onlyA, onlyB
}

func requireSameFlows(t *testing.T, want, got []flow.Record, withTimes bool) {
	t.Helper()
	onlyRef, onlyProbe := diffLines(flowLines(want, withTimes), flowLines(got, withTimes))
	if len(onlyRef)+len(onlyProbe) > 0 {
		show := func(l []string) string {
			if len(l) > 15 {
				l = append(l[:15:15], fmt.Sprintf("… and %d more", len(l)-15))
			}
			return strings.Join(l, "\n  ")
		}
		t.Fatalf("probe and tshark reference differ (%d reference flows, %d probe flows)\nonly in the reference:\n  %s\nonly in the probe:\n  %s",
			len(want), len(got), show(onlyRef), show(onlyProbe))
	}
}

// realCapture is a capture of real mosquitto traffic made once per test
// binary run and shared by the tests that read it.
type realCapture struct {
	file string
	port int
	err  string
}

var (
	realOnce sync.Once
	realCap  realCapture
	realDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if realDir != "" {
		os.RemoveAll(realDir)
	}
	os.Exit(code)
}

// sharedCapture records the scenario below the first time it is asked for.
func sharedCapture(t *testing.T) realCapture {
	t.Helper()
	realOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mission-realtraffic-")
		require.NoError(t, err)
		realDir = dir
		ok := false
		defer func() {
			if !ok {
				realCap.err = "recording the real-traffic capture failed: see the first test's output"
			}
		}()
		realCap = recordScenario(t, dir)
		ok = true
	})
	if realCap.err != "" {
		t.Fatal(realCap.err)
	}
	return realCap
}

// recordScenario runs mosquitto in one network namespace and clients in
// another, joined by a veth with MTU 1500, over IPv4 and IPv6, and captures
// the broker's side of the veth with dumpcap.
//
// Traffic: MQTT 3.1, 3.1.1 and 5.0; QoS 0, 1, 2 in both directions
// (broker deliveries to subscribers of every version); retained; wills
// (one delivered after a client dies); username/password; subscribe and
// unsubscribe; PINGREQ (keepalive 5 s); v5 correlation data, traceparent
// user property, response topic, topic alias; 200 KB payloads segmented at
// the MTU in both directions; hundreds of small messages from one client
// (many MQTT packets per TCP segment); --repeat.
func recordScenario(t *testing.T, dir string) realCapture {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto", "mosquitto_pub", "mosquitto_sub", "dumpcap", "tshark", "ip")
	ns := mqtttest.NewNetnsPair(t, 1500)
	port := mqtttest.FreePort(t)
	file := filepath.Join(dir, "real.pcap")
	capt := mqtttest.StartCapture(t, ns.BrokerNS, ns.BrokerIf, fmt.Sprintf("tcp port %d", port), file)
	// Connection attempts before the broker listens (SYN, RST: no payload)
	// until dumpcap really captures: a missed CONNECT made the test flaky.
	capt.WaitCapturing(t, func() {
		_ = mqtttest.Command(context.Background(), ns.ClientNS, "bash", "-c",
			fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", ns.BrokerV4, port)).Run()
	})
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Port: port, NS: ns.BrokerNS})

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	p := strconv.Itoa(port)
	h4 := []string{"-h", ns.BrokerV4, "-p", p}
	h6 := []string{"-h", ns.BrokerV6, "-p", p}
	cmd := func(host []string, args ...string) *exec.Cmd {
		return mqtttest.Command(ctx, ns.ClientNS, append(append([]string{args[0]}, host...), args[1:]...)...)
	}
	run := func(host []string, args ...string) {
		t.Helper()
		out, err := cmd(host, args...).CombinedOutput()
		require.NoError(t, err, "%v: %s", args, out)
	}
	big := filepath.Join(dir, "big.bin")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 200*1024/16), 0o644))

	// Subscribers, each exiting (with DISCONNECT) after its exact count.
	type sub struct {
		cmd     *exec.Cmd
		out     bytes.Buffer
		timeout bool // ends by -W (exit status 27)
	}
	var subs []*sub
	startSub := func(host []string, id string, args ...string) {
		s := &sub{cmd: cmd(host, append([]string{"mosquitto_sub", "-i", id, "-W", "30", "-N"}, args...)...)}
		s.timeout = slices.Contains(args, "-W")
		s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
		require.NoError(t, s.cmd.Start())
		subs = append(subs, s)
		broker.WaitLog(t, "Sending SUBACK to "+id, 10*time.Second)
	}
	startSub(h4, "sub5", "-V", "mqttv5", "-q", "2", "-t", "t5/#", "-t", "big/#", "-C", "325")
	startSub(h4, "sub311", "-V", "mqttv311", "-q", "1", "-t", "t311/#", "-t", "t31/#", "-C", "102")
	startSub(h4, "sub31", "-V", "mqttv31", "-q", "0", "-t", "t31/x", "-C", "1")
	startSub(h6, "sub6", "-V", "mqttv5", "-q", "2", "-t", "v6/#", "-C", "3")
	// An idle client: its keepalive of 5 s makes it ping.
	startSub(h6, "pinger", "-V", "mqttv311", "-k", "5", "-t", "idle/x", "-W", "6")
	// A client with a will that dies without DISCONNECT: the broker
	// publishes its will to sub5.
	willer := cmd(h4, "mosquitto_sub", "-i", "willer", "-V", "mqttv5", "-t", "none",
		"--will-topic", "t5/will", "--will-payload", "dead", "--will-qos", "1")
	require.NoError(t, willer.Start())
	broker.WaitLog(t, "Sending SUBACK to willer", 10*time.Second)

	run(h4, "mosquitto_pub", "-V", "mqttv31", "-i", "pub31", "-q", "1", "-t", "t31/x", "-m", "three-one")
	run(h4, "mosquitto_pub", "-V", "mqttv311", "-i", "pub311", "-q", "2", "-r", "-t", "t311/a", "-m", "retained",
		"-u", "alice", "-P", "secret", "--will-topic", "will/311", "--will-payload", "bye", "--will-qos", "1")
	run(h4, "mosquitto_pub", "-V", "mqttv5", "-i", "pub5", "-q", "2", "-t", "t5/big", "-f", big,
		"-D", "publish", "user-property", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"-D", "publish", "user-property", "k", "v1", "-D", "publish", "correlation-data", "corr-123",
		"-D", "publish", "response-topic", "reply/5", "--will-topic", "will/5", "--will-payload", "gone")
	run(h4, "mosquitto_pub", "-V", "mqttv5", "-i", "pubtp", "-q", "1", "-t", "t5/tp", "-m", "traced",
		"-D", "publish", "user-property", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	run(h4, "mosquitto_pub", "-V", "mqttv5", "-i", "pub5a", "-q", "1", "-t", "t5/alias", "-m", "aliased",
		"-D", "publish", "topic-alias", "1", "-D", "connect", "topic-alias-maximum", "10")
	run(h4, "mosquitto_pub", "-V", "mqttv311", "-i", "pubbig311", "-q", "1", "-t", "big/311", "-f", big)
	run(h4, "mosquitto_sub", "-V", "mqttv311", "-i", "unsub311", "-t", "u/x", "-t", "u/z", "-U", "u/x", "-E")
	run(h6, "mosquitto_sub", "-V", "mqttv5", "-i", "unsub5", "-t", "u/y", "-U", "u/y", "-E")
	lines := cmd(h4, "mosquitto_pub", "-V", "mqttv5", "-i", "lines5", "-q", "0", "-t", "t5/lines", "-l")
	lines.Stdin = mqtttest.Lines("l5", 300)
	out, err := lines.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines = cmd(h4, "mosquitto_pub", "-V", "mqttv311", "-i", "lines311", "-q", "1", "-t", "t311/lines", "-l")
	lines.Stdin = mqtttest.Lines("l311", 100)
	out, err = lines.CombinedOutput()
	require.NoError(t, err, "%s", out)
	run(h4, "mosquitto_pub", "-V", "mqttv5", "-i", "rep5", "-q", "2", "-t", "t5/rep", "-m", "again", "--repeat", "20",
		"-D", "publish", "correlation-data", "rep-corr")
	run(h6, "mosquitto_pub", "-V", "mqttv5", "-i", "pub6a", "-q", "1", "-t", "v6/a", "-m", "six")
	run(h6, "mosquitto_pub", "-V", "mqttv311", "-i", "pub6b", "-q", "2", "-t", "v6/b", "-m", "six-b")
	run(h6, "mosquitto_pub", "-V", "mqttv5", "-i", "pub6c", "-q", "0", "-t", "v6/c", "-m", "six-c")
	require.NoError(t, willer.Process.Signal(syscall.SIGKILL))
	_ = willer.Wait()

	for _, s := range subs {
		err := s.cmd.Wait()
		if s.timeout {
			require.Equal(t, 27, s.cmd.ProcessState.ExitCode(), "%v", s.cmd.Args)
			continue
		}
		require.NoError(t, err, "%v: received %d bytes", s.cmd.Args, s.out.Len())
	}
	capt.Stop(t)
	broker.Stop()
	return realCapture{file: file, port: port}
}

// TestRealTrafficMatchesTshark: every flow the probe exports from a capture
// of real mosquitto traffic equals the flow computed independently from
// tshark's dissection of the same capture.
func TestRealTrafficMatchesTshark(t *testing.T) {
	rc := sharedCapture(t)
	msgs := mqtttest.TsharkMessages(t, rc.file, rc.port)
	ref, rst := mqtttest.ReferenceFlows(msgs, uint16(rc.port))
	got, st := runOffline(t, rc.file, rc.port)
	t.Logf("%d MQTT messages, %d reference flows, %d probe flows; reference unmatched %v", len(msgs), len(ref), len(got), rst.Unmatched)
	checkScenarioCoverage(t, msgs, ref)
	requireSameFlows(t, ref, got, true)
	require.Zero(t, st.Reassembly.Gaps, "gaps on a clean capture")
	require.Zero(t, st.Tracker.FramingErrors+st.Tracker.Malformed+st.Tracker.ResyncDropped, "tracker errors on a clean capture")
	var unmatched uint64
	for _, n := range st.Tracker.Unmatched {
		unmatched += n
	}
	require.Zero(t, unmatched)
}

// checkScenarioCoverage makes sure the capture really holds what the test
// claims to cover, so a broken scenario cannot pass silently.
func checkScenarioCoverage(t *testing.T, msgs []mqtttest.Message, ref []flow.Record) {
	t.Helper()
	var (
		types                       = map[flow.ControlType]int{}
		versions                    = map[uint8]int{}
		qos                         = map[[2]int]int{} // (qos, broker-initiated)
		v6, corrData, corrTP, alias int
		retained, dup, bigSeg       int
	)
	for i := range ref {
		r := &ref[i]
		types[r.ControlType]++
		versions[r.ProtocolVersion]++
		if r.ControlType == flow.Publish {
			b := 0
			if r.SrcClientID == flow.BrokerClientID {
				b = 1
			}
			qos[[2]int{int(r.QoS), b}]++
			if r.Retain {
				retained++
			}
			if r.Dup {
				dup++
			}
			if r.PayloadLength >= 200*1024 {
				bigSeg++
			}
			if r.Topic == "t5/alias" {
				alias++
			}
		}
		if r.SrcAddr.Is6() {
			v6++
		}
		switch r.CorrelationSource {
		case flow.CorrelationData:
			corrData++
		case flow.CorrelationTraceparent:
			corrTP++
		}
	}
	t.Logf("coverage: types %v versions %v qos(qos,broker) %v ipv6 %d corr %d/%d retained %d big %d", types, versions, qos, v6, corrData, corrTP, retained, bigSeg)
	for _, ct := range []flow.ControlType{flow.Connect, flow.Publish, flow.Subscribe, flow.Unsubscribe, flow.PingReq, flow.Disconnect} {
		require.Positive(t, types[ct], "no %s flow", ct)
	}
	for _, v := range []uint8{3, 4, 5} {
		require.Positive(t, versions[v], "no flow of protocol level %d", v)
	}
	for q := range 3 {
		for b := range 2 {
			require.Positive(t, qos[[2]int{q, b}], "no QoS %d publish (broker-initiated %v)", q, b == 1)
		}
	}
	require.Positive(t, v6, "no IPv6 flow")
	require.Positive(t, corrData, "no correlation data")
	require.Positive(t, corrTP, "no traceparent correlation")
	require.Positive(t, retained, "no retained publish")
	require.GreaterOrEqual(t, bigSeg, 3, "200 KB publishes (two in, their deliveries out)")
	require.Positive(t, alias, "topic alias")
	// Many MQTT packets in one TCP segment.
	perFrame := map[int]int{}
	maxPer := 0
	for _, m := range msgs {
		perFrame[m.Frame]++
		maxPer = max(maxPer, perFrame[m.Frame])
	}
	require.GreaterOrEqual(t, maxPer, 5, "no TCP segment carries several MQTT packets")
}

// readPcap returns the packets of a libpcap file.
func readPcap(t testing.TB, file string) ([]gopacket.CaptureInfo, [][]byte, layers.LinkType) {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	require.NoError(t, err)
	var cis []gopacket.CaptureInfo
	var data [][]byte
	for {
		d, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		cis = append(cis, ci)
		data = append(data, d)
	}
	return cis, data, r.LinkType()
}

// TestRealTrafficSegmented: the veth path really has an MTU of 1500, so
// the 200 KB publishes crossed it in many segments.
func TestRealTrafficSegmented(t *testing.T) {
	rc := sharedCapture(t)
	cis, _, lt := readPcap(t, rc.file)
	require.Equal(t, layers.LinkTypeEthernet, lt)
	full := 0
	for _, ci := range cis {
		require.LessOrEqual(t, ci.Length, 1514, "frame larger than the MTU: segmentation offload left on?")
		if ci.Length == 1514 {
			full++
		}
	}
	require.Greater(t, full, 4*200*1024/1448, "full-size segments of the 200 KB payloads")
}
