package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/internal/plant"
	"github.com/mission-ids/mission/probe"
)

// collectProc is `mission collect` run by a fault test.
type collectProc struct {
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan error
}

// freePort returns a port free for TCP and UDP now; a restarted collector
// listens on the same one so that exporters find it again.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// startCollect runs mission collect on 127.0.0.1:port over dataDir and
// waits until it listens (after replaying its journal).
func startCollect(t *testing.T, dataDir string, port int, extra ...string) *collectProc {
	t.Helper()
	args := append([]string{"--log-format", "json", "collect", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--data-dir", dataDir}, extra...)
	cmd := exec.Command(missionBin, args...)
	p := &collectProc{cmd: cmd, logs: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	require.NoError(t, cmd.Start())
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	waitLog(t, p.logs, p.exited, "collector listening", 60*time.Second)
	return p
}

// stop ends the collector with sig and waits for it.
func (p *collectProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	select {
	case err := <-p.exited:
		if sig == syscall.SIGTERM && err != nil {
			t.Fatalf("collector exited with %v after SIGTERM:\n%s", err, p.logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("collector did not stop within 60 s of %v", sig)
	}
}

// logged returns the fields of the first log line with message msg.
func (p *collectProc) logged(msg string) map[string]any {
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["message"] == msg {
			return l
		}
	}
	return nil
}

// streamer exports numbered MQTT flows over TCP with the probe's IPFIX
// exporter at a steady rate, and remembers which flows it exported: those
// whose Export and Flush both succeeded.
type streamer struct {
	mu       sync.Mutex
	exported map[uint64]time.Time
	failed   int
	next     uint64
}

func fakeFlow(id uint64) flow.Record {
	start := time.Now().Add(-time.Second)
	return flow.Record{FlowID: id, SrcAddr: netip.MustParseAddr("10.1.0.1"), DstAddr: netip.MustParseAddr("10.1.0.2"),
		SrcPort: uint16(10000 + id%50000), DstPort: 1883, Protocol: 6, Start: start, End: start.Add(time.Millisecond),
		Packets: 2, Octets: 120, EndReason: flow.EndOfFlow, ControlType: flow.Publish, ProtocolVersion: 5, QoS: 1,
		Topic: "plant/sensor/" + strconv.FormatUint(id%7, 10), SrcClientID: "sensor", DstClientID: flow.BrokerClientID}
}

// run sends perTick flows every 10 ms until ctx ends.
func (s *streamer) run(ctx context.Context, t *testing.T, addr string, perTick int) {
	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "tcp", Address: addr, ObservationDomainID: 5, Logger: zerolog.Nop()})
	if err != nil {
		t.Errorf("exporter: %v", err)
		return
	}
	defer exp.Close()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	batch := make([]flow.Record, perTick)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		first := s.next + 1
		for i := range batch {
			s.next++
			batch[i] = fakeFlow(s.next)
		}
		err := exp.Export(batch)
		if err == nil {
			err = exp.Flush()
		}
		now := time.Now()
		s.mu.Lock()
		if err != nil {
			s.failed += perTick
		} else {
			for id := first; id <= s.next; id++ {
				s.exported[id] = now
			}
		}
		s.mu.Unlock()
	}
}

// faultResult compares what a streamer exported with what was stored.
type faultResult struct {
	exported, stored, lost, duplicates, unexpectedStored int
}

func compareStored(t *testing.T, s *streamer, docs []flow.Document) faultResult {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[uint64]int{}
	ids := map[string]bool{}
	for _, d := range docs {
		seen[d.FlowID]++
		ids[d.ID] = true
	}
	r := faultResult{exported: len(s.exported), stored: len(docs)}
	for id := range s.exported {
		if seen[id] == 0 {
			r.lost++
		}
	}
	for id, n := range seen {
		if n > 1 {
			r.duplicates += n - 1
		}
		if _, ok := s.exported[id]; !ok {
			r.unexpectedStored++ // sent in a batch that reported an error
		}
	}
	require.Equal(t, len(docs), len(ids), "documents vs distinct _id")
	return r
}

// testCollectorRestart streams flows at rate over TCP to mission collect,
// stops it with sig mid-stream, restarts it on the same data directory,
// streams on, and returns what was stored against what was exported.
func testCollectorRestart(t *testing.T, sig syscall.Signal, rate int) faultResult {
	dataDir := t.TempDir()
	port := freePort(t)
	c := startCollect(t, dataDir, port, "--listen", "tcp", "--drain-timeout", "2s")
	s := &streamer{exported: map[uint64]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(ctx, t, fmt.Sprintf("127.0.0.1:%d", port), rate/100)
	}()
	time.Sleep(4 * time.Second)
	c.stop(t, sig)
	time.Sleep(time.Second) // the exporter meets a closed port
	c = startCollect(t, dataDir, port, "--listen", "tcp", "--drain-timeout", "2s")
	if l := c.logged("journal: messages of the earlier run decoded again; now listening"); l != nil {
		t.Logf("replay at restart: %v messages in %v segments, %v", l["messages"], l["segments"], l["took"])
	}
	time.Sleep(4 * time.Second)
	cancel()
	<-done
	time.Sleep(500 * time.Millisecond)
	c.stop(t, syscall.SIGTERM)
	r := compareStored(t, s, storedFlows(t, dataDir))
	t.Logf("%v mid-stream at %d flows/s: exported %d (and %d in batches that failed), stored %d, lost %d, duplicates %d",
		sig, rate, r.exported, s.failed, r.stored, r.lost, r.duplicates)
	return r
}

// TestCollectorSIGTERMMidStream: a collector stopped with SIGTERM while an
// exporter streams over TCP drains the connection and stores everything it
// read before exiting; what the exporter wrote while the connection closed
// comes again from its resend window after the restart: stored = exported.
func TestCollectorSIGTERMMidStream(t *testing.T) {
	r := testCollectorRestart(t, syscall.SIGTERM, 2000)
	require.Zero(t, r.duplicates)
	require.Zero(t, r.lost, "stored = exported")
}

// TestCollectorSIGKILLMidStream: a collector killed (SIGKILL) while an
// exporter streams over TCP loses at most 200 ms of the send rate, thanks
// to the journal replayed at restart, and stores nothing twice.
func TestCollectorSIGKILLMidStream(t *testing.T) {
	const rate = 2000
	r := testCollectorRestart(t, syscall.SIGKILL, rate)
	require.Zero(t, r.duplicates)
	require.LessOrEqual(t, r.lost, rate/5, "at most 200 ms of flows lost")
}

// vmRSS reads a process's resident set size from /proc.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// peakRSS samples a process's RSS every second until ctx ends.
func peakRSS(ctx context.Context, pid int) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if rss, err := vmRSS(pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-ctx.Done():
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// floodMessage is a hostile IPFIX message: a random template of 50–600
// fields (id 256–65535), sometimes with data for it, or data for a
// template never sent.
func floodMessage(rng *rand.Rand, domain uint32) []byte {
	id := uint16(256 + rng.IntN(65536-256))
	b := binary.BigEndian.AppendUint16(nil, 10)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(time.Now().Unix()))
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, domain)
	if rng.IntN(10) < 6 {
		n := 50 + rng.IntN(551)
		rec := binary.BigEndian.AppendUint16(nil, id)
		rec = binary.BigEndian.AppendUint16(rec, uint16(n))
		for range n {
			rec = binary.BigEndian.AppendUint16(rec, uint16(1+rng.IntN(400)))
			rec = binary.BigEndian.AppendUint16(rec, 4)
		}
		b = binary.BigEndian.AppendUint16(b, 2)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(rec)))
		b = append(b, rec...)
		if rng.IntN(2) == 0 {
			b = binary.BigEndian.AppendUint16(b, id)
			b = binary.BigEndian.AppendUint16(b, uint16(4+4*n))
			b = append(b, make([]byte, 4*n)...)
		}
	} else {
		size := 512 + rng.IntN(4096)
		b = binary.BigEndian.AppendUint16(b, id)
		b = binary.BigEndian.AppendUint16(b, uint16(4+size))
		b = append(b, make([]byte, size)...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// TestTemplateFloodKeepsCollectorBounded floods mission collect over UDP
// for 60 s with random templates from 256 source ports and 64 observation
// domains each, while the probe's exporter sends valid flows: the
// collector's RSS stays under the documented ~256 MiB and the valid flows
// are stored.
func TestTemplateFloodKeepsCollectorBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("60 s flood")
	}
	const bound = 256 << 20
	dataDir := t.TempDir()
	port := freePort(t)
	c := startCollect(t, dataDir, port, "--listen", "udp")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peak := peakRSS(ctx, c.cmd.Process.Pid)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	var wg sync.WaitGroup
	var flooded atomic.Uint64
	floodCtx, stopFlood := context.WithTimeout(ctx, 60*time.Second)
	defer stopFlood()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var conns []net.Conn
			for range 64 {
				conn, err := net.Dial("udp", addr)
				if err != nil {
					t.Errorf("flood socket: %v", err)
					return
				}
				defer conn.Close()
				conns = append(conns, conn)
			}
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for floodCtx.Err() == nil {
				<-tick.C
				for range 2 { // ~8,000 messages/s over all workers
					conn := conns[rng.IntN(len(conns))]
					if _, err := conn.Write(floodMessage(rng, uint32(rng.IntN(64)))); err == nil {
						flooded.Add(1)
					}
				}
			}
		}()
	}
	s := &streamer{exported: map[uint64]time.Time{}}
	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "udp", Address: addr, ObservationDomainID: 9, TemplateRefresh: time.Second, Logger: zerolog.Nop()})
	require.NoError(t, err)
	for floodCtx.Err() == nil {
		batch := make([]flow.Record, 10)
		for i := range batch {
			s.next++
			batch[i] = fakeFlow(s.next)
		}
		if exp.Export(batch) == nil && exp.Flush() == nil {
			for _, r := range batch {
				s.exported[r.FlowID] = time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	require.NoError(t, exp.Close())
	time.Sleep(2 * time.Second)
	cancel()
	rssDuringFlood := <-peak
	c.stop(t, syscall.SIGTERM)
	r := compareStored(t, s, storedFlows(t, dataDir))
	t.Logf("flood: %d hostile messages in 60 s; peak RSS %.1f MiB; valid flows exported %d, stored %d, lost %d",
		flooded.Load(), float64(rssDuringFlood)/(1<<20), r.exported, r.stored, r.lost)
	require.Less(t, rssDuringFlood, int64(bound), "RSS under the documented bound")
	require.LessOrEqual(t, r.lost*100, r.exported, "at least 99 % of the valid flows stored")
	require.Zero(t, r.duplicates)
}

// TestIdleTCPConnectionFlood opens 20,000 idle TCP connections to mission
// collect from 400 loopback addresses while a real exporter sends flows
// from 127.0.0.1: the collector stays up, keeps to its connection bounds,
// answers /metrics, and stores the exporter's flows.
func TestIdleTCPConnectionFlood(t *testing.T) {
	// The soft limit up to the hard one (beyond it when root may raise it);
	// the collector inherits it.
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 65536, Max: max(lim.Max, 65536)}) != nil {
		lim.Cur = lim.Max
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	}
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	conns := min(20000, int(lim.Cur)-500)
	if conns < 5000 {
		t.Skipf("RLIMIT_NOFILE %d is too low for this test", lim.Cur)
	}
	dataDir := t.TempDir()
	port := freePort(t)
	mport := freePort(t)
	c := startCollect(t, dataDir, port, "--listen", "tcp", "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", mport))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	var mu sync.Mutex
	var idle []net.Conn
	defer func() {
		for _, conn := range idle {
			conn.Close()
		}
	}()
	var wg sync.WaitGroup
	var dialErrs atomic.Int64
	sem := make(chan struct{}, 64)
	for i := range conns {
		src := net.IPv4(127, 1, byte(i/50/250), byte(1+i/50%250))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
			conn, err := d.Dial("tcp", addr)
			if err != nil {
				dialErrs.Add(1)
				return
			}
			mu.Lock()
			idle = append(idle, conn)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d idle connections opened (%d dials failed)", len(idle), dialErrs.Load())

	s := &streamer{exported: map[uint64]time.Time{}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.run(ctx, t, addr, 10)
	metrics, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	require.NoError(t, err, "/metrics answers")
	require.Contains(t, metrics, "mission_collector_tcp_connections ")
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "mission_collector_tcp_") {
			t.Log(line)
		}
	}
	select {
	case err := <-c.exited:
		t.Fatalf("the collector exited under the connection flood: %v\n%s", err, c.logs.String())
	default:
	}
	time.Sleep(time.Second)
	c.stop(t, syscall.SIGTERM)
	r := compareStored(t, s, storedFlows(t, dataDir))
	t.Logf("exporter amid %d idle connections: exported %d, stored %d, lost %d", len(idle), r.exported, r.stored, r.lost)
	require.Positive(t, r.exported)
	require.Zero(t, r.lost)
}

func httpGet(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// liveProbe is `mission probe` capturing live, run by a fault test.
type liveProbe struct {
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan error
}

// startLiveProbe runs mission probe live on lo for the broker's port,
// exporting over TCP to 127.0.0.1:collectorPort, and waits until it
// captures.
func startLiveProbe(t *testing.T, brokerPort, collectorPort int, extra ...string) *liveProbe {
	t.Helper()
	args := append([]string{"--log-format", "json", "probe", "--interface", "lo",
		"--filter", fmt.Sprintf("tcp port %d", brokerPort), "--mqtt-ports", strconv.Itoa(brokerPort),
		"--transport", "tcp", "--collector", "127.0.0.1", "--port", strconv.Itoa(collectorPort)}, extra...)
	cmd := exec.Command(missionBin, args...)
	p := &liveProbe{cmd: cmd, logs: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	require.NoError(t, cmd.Start())
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	waitLog(t, p.logs, p.exited, "capturing", 30*time.Second)
	return p
}

// stop ends the probe with SIGINT (it flushes every open flow and its
// export queue) and returns the flows it exported by its last log line.
func (p *liveProbe) stop(t *testing.T) int {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	select {
	case err := <-p.exited:
		require.NoError(t, err, "probe exit after SIGINT:\n%s", p.logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("probe did not stop within 60 s of SIGINT:\n%s", p.logs.String())
	}
	logs := p.logs.String()
	checkProbeLog(t, logs)
	for _, line := range strings.Split(logs, "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["message"] == "probe stopped" {
			n, _ := l["flows"].(float64)
			return int(n)
		}
	}
	return -1
}

// replayCapture reads a recording with `mission probe --read` and returns
// its flows in stored form (the JSON lines of --stdout).
func replayCapture(t *testing.T, file string, brokerPort int) []flow.Document {
	t.Helper()
	cmd := exec.Command(missionBin, "--log-level", "warn", "probe", "--read", file,
		"--mqtt-ports", strconv.Itoa(brokerPort), "--stdout")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "mission probe --read %s:\n%s", file, stderr.String())
	var docs []flow.Document
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var d flow.Document
		require.NoError(t, dec.Decode(&d))
		docs = append(docs, d)
	}
	return docs
}

// TestCollectorOutageDuringLiveCapture: the study's plant on a real
// mosquitto, captured live by `mission probe` exporting over TCP to
// `mission collect`; the collector is stopped (SIGTERM) for 5 s mid-run
// and restarted on the same port and data directory. The probe keeps its
// flows queued while the collector is down and resends its window after
// reconnecting: every flow of a dumpcap recording of the same traffic,
// replayed by `mission probe --read`, is stored exactly once, and the
// stored flows are those the probe exported and the plant's clients made.
func TestCollectorOutageDuringLiveCapture(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto", "dumpcap")
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
	bport := broker.Port
	baddr := fmt.Sprintf("127.0.0.1:%d", bport)
	dataDir := t.TempDir()
	cport := freePort(t)
	mport := freePort(t)

	// The reference recording, from before the probe starts to after the
	// plant stops. A poke is a connection without MQTT: no flow.
	capt := mqtttest.StartCapture(t, "", "lo", fmt.Sprintf("tcp port %d", bport), filepath.Join(t.TempDir(), "lo.pcap"))
	capt.WaitCapturing(t, func() {
		if c, err := net.DialTimeout("tcp", baddr, time.Second); err == nil {
			c.Close()
		}
	})
	c := startCollect(t, dataDir, cport, "--listen", "tcp", "--drain-timeout", "2s")
	pr := startLiveProbe(t, bport, cport, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", mport))

	// The plant: every sensor every 200 ms (25 readings/s, 150 PUBLISH
	// flows/s at QoS 2), the controller watching the actuators' states.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := plant.DefaultConfig(baddr)
	cfg.Interval, cfg.WatchStates, cfg.Seed = 200*time.Millisecond, true, 1
	pl, err := plant.Start(ctx, cfg)
	require.NoError(t, err, "plant")
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- pl.Run(runCtx) }()

	time.Sleep(4 * time.Second)
	c.stop(t, syscall.SIGTERM)
	down := time.Now()
	time.Sleep(5 * time.Second)
	c = startCollect(t, dataDir, cport, "--listen", "tcp", "--drain-timeout", "2s")
	t.Logf("collector down for %v", time.Since(down).Round(time.Millisecond))
	time.Sleep(8 * time.Second) // the probe reconnects (backoff up to 5 s) and the plant runs on

	stopRun()
	require.NoError(t, <-runErr, "plant run")
	rep, err := pl.Stop(ctx)
	require.NoError(t, err, "plant stop")
	checkReport(t, cfg, rep)
	capt.Stop(t)
	time.Sleep(500 * time.Millisecond) // the last packets reach the probe
	if metrics, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)); err == nil {
		for _, line := range strings.Split(metrics, "\n") {
			for _, name := range []string{"flows_exported_total", "flows_resent_total", "flows_deferred_total", "export_reconnects_total", "flows_dropped_total"} {
				if strings.HasPrefix(line, "mission_probe_"+name) {
					t.Log("probe before SIGINT: ", line)
				}
			}
		}
	}
	exported := pr.stop(t)
	require.Contains(t, pr.logs.String(), "lost the collector connection", "the probe saw the outage")
	time.Sleep(time.Second) // the collector stores the last batch
	c.stop(t, syscall.SIGTERM)

	docs := storedFlows(t, dataDir)
	ids := map[string]bool{}
	for _, d := range docs {
		ids[d.ID] = true
	}
	ref := replayCapture(t, capt.File, bport)
	m := mqtttest.MatchRecording(ref, docs, 2*time.Millisecond, mqtttest.WideTolerance)
	t.Logf("exported %d (probe's last log line), stored %d (%d distinct _id), reference %d (dumpcap recording read by mission probe --read): matched %d (%d stamped 2–100 ms apart by dumpcap and the probe), lost %d, extra %d, duplicates %d; largest start-time difference %v",
		exported, len(docs), len(ids), m.Reference, m.Matched+m.MatchedWide, m.MatchedWide, m.Lost, m.Extra, m.Duplicates, m.Worst)
	for _, e := range m.Examples {
		t.Log(e)
	}
	require.Equal(t, len(docs), len(ids), "documents vs distinct _id")
	require.Zero(t, m.Duplicates, "duplicates")
	require.Zero(t, m.Lost, "reference flows not stored")
	require.Zero(t, m.Extra, "stored flows not in the reference")
	require.Equal(t, exported, len(docs), "stored = exported")
	compareFlows(t, expectedFlows(rep, bport), docs)
	checkQuery(t, dataDir, len(docs))
}
