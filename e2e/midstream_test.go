package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/internal/plant"
	"github.com/mission-ids/mission/mining"
)

// The probe started into, or restarted in, a running plant (docs/midstream.md,
// docs/detection.md "Connections without client id"). Every scenario runs
// the accelerated research plant (one round per 100 ms: ten times plant
// time) for midRunFor on a real mosquitto while dumpcap records lo: that
// uninterrupted capture, read by `mission probe --read`, is the reference.
// The flows that start at least midSettle after the restart (and end
// before the plant stops) must be stored with the same fields and times,
// and name the right client; a model mined from normal traffic must raise
// no incident.
const (
	midTrainFor = 10 * time.Second       // 100 rounds, 500 chains
	midRunFor   = 8 * time.Second        // 80 rounds: 80 s of plant time …
	midCutAt    = 3 * time.Second        // … cut 30 s of plant time in
	midSettle   = 500 * time.Millisecond // flows this soon after the restart are not compared
)

type midResult struct {
	name                   string
	compared, matched, ids int
	unnamed                int // matched flows whose client is named neither in the store nor by inference
	noVersion              int // matched flows without protocol version (no CONNECT seen: unknown)
	maxDelta               time.Duration
	stampedApart           int // matched with a start or end more than 1 ms apart (two sockets' timestamps)
	alerts, incidents      int
	sources                map[string]int
}

func TestMidstreamResearchPlant(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto", "dumpcap")
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
	began := time.Now()

	train := recordDetectionRun(t, broker.Port, "train", 1, midTrainFor, "", nil, nil)
	mined := filepath.Join(t.TempDir(), "mined")
	runMission(t, "mine", "--data-dir", train.dataDir, "--out", mined)
	model := filepath.Join(mined, "model.json")
	m, err := mining.ReadModelFile(model)
	if err != nil {
		t.Fatal(err)
	}

	var rows []midResult
	for i, sc := range []struct {
		name   string
		run    func(r *midRun, t *testing.T)
		source string // the identity source the compared flows must have ("" any)
	}{
		{"uninterrupted all-in-one", (*midRun).uninterrupted, "connect"},
		{"(a) all-in-one started 30 s (plant) into the run", (*midRun).lateStart, "none"},
		{"(b) probe restarted with its state file", func(r *midRun, t *testing.T) { r.probeRestart(t, true) }, "restored"},
		{"(c) probe restarted without state, collector running", func(r *midRun, t *testing.T) { r.probeRestart(t, false) }, "collector"},
		{"(d) all-in-one restarted (<data-dir>/probe-state)", (*midRun).allInOneRestart, "restored"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			r := &midRun{port: broker.Port, model: model, dir: t.TempDir(), seed: uint64(20 + i)}
			r.record(t, sc.run)
			res := r.compare(t, m, sc.name)
			rows = append(rows, res)
			t.Logf("%s: %d flows compared, %d matched (times within %s, %d more than 1 ms apart, %d without protocol version), %d ids right (%d unnamed), sources %v, %d alerts, %d incidents",
				sc.name, res.compared, res.matched, res.maxDelta, res.stampedApart, res.noVersion, res.ids, res.unnamed, res.sources, res.alerts, res.incidents)
			if res.compared < 1000 {
				t.Errorf("only %d flows to compare", res.compared)
			}
			if float64(res.matched) < 0.999*float64(res.compared) {
				t.Errorf("%d of %d flows after the restart match the uninterrupted capture, want ≥ 99.9 %%", res.matched, res.compared)
			}
			if float64(res.stampedApart) > 0.002*float64(res.compared) {
				t.Errorf("%d of %d flows stamped more than 1 ms apart from the reference capture, want ≤ 0.2 %%", res.stampedApart, res.compared)
			}
			if res.ids != res.matched {
				t.Errorf("%d of %d matched flows name the right client", res.ids, res.matched)
			}
			if sc.source != "" && res.sources[sc.source] != res.matched {
				t.Errorf("identity sources %v, want all %s", res.sources, sc.source)
			}
			if res.incidents != 0 || res.alerts != 0 {
				t.Errorf("%d alerts, %d incidents on normal traffic, want none", res.alerts, res.incidents)
				for _, inc := range r.incidents {
					t.Logf("  incident %s %s ×%d: %s", inc.Check, inc.Severity, inc.Count, inc.Message)
				}
			}
		})
	}
	var b strings.Builder
	b.WriteString("| scenario | flows compared | matched | max Δt | identity source | ids right | alerts / incidents |\n|---|---:|---:|---:|---|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.2f %% | %s | %v | %.2f %% | %d / %d |\n", r.name, r.compared,
			pct(r.matched, r.compared), r.maxDelta.Round(time.Microsecond), r.sources, pct(r.ids, r.matched), r.alerts, r.incidents)
	}
	t.Logf("results (whole test %s):\n%s", time.Since(began).Round(time.Second), b.String())
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// midRun is one scenario: the plant, the reference capture and what
// mission stored.
type midRun struct {
	port      int
	model     string
	dir       string
	seed      uint64
	pcap      string
	dataDir   string
	restart   time.Time // the restarted (or late) capture runs from here
	stopAt    time.Time // the plant's last round started before here
	flows     []flow.Document
	alerts    []storedAlert
	incidents []storedIncident
}

// record runs the plant and the reference capture around run, which
// starts mission, cuts at midCutAt and sets r.restart.
func (r *midRun) record(t *testing.T, run func(*midRun, *testing.T)) {
	t.Helper()
	r.pcap = filepath.Join(r.dir, "reference.pcap")
	r.dataDir = filepath.Join(r.dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), midRunFor+time.Minute)
	defer cancel()
	dc := exec.CommandContext(ctx, "dumpcap", "-q", "-i", "lo", "-f", fmt.Sprintf("tcp port %d", r.port), "-P", "-w", r.pcap)
	var dcOut bytes.Buffer
	dc.Stdout, dc.Stderr = &dcOut, &dcOut
	if err := dc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if dc.ProcessState == nil {
			_ = dc.Process.Kill()
			_ = dc.Wait()
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err := os.Stat(r.pcap); err == nil && st.Size() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dumpcap did not start: %s", dcOut.String())
		}
	}
	time.Sleep(300 * time.Millisecond)
	run(r, t)
	time.Sleep(time.Second)
	_ = dc.Process.Signal(os.Interrupt)
	if err := dc.Wait(); err != nil {
		t.Fatalf("dumpcap: %v: %s", err, dcOut.String())
	}
	r.flows, r.alerts, r.incidents = readStore(t, r.dataDir)
}

// plantRun starts the plant; wait stops it after midRunFor.
func (r *midRun) plantRun(t *testing.T, ctx context.Context) (wait func()) {
	t.Helper()
	cfg := plant.DefaultConfig(fmt.Sprintf("127.0.0.1:%d", r.port))
	cfg.Interval, cfg.Duration, cfg.WatchStates, cfg.Seed = roundInterval, midRunFor, true, r.seed
	p, err := plant.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("plant: %v", err)
	}
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	return func() {
		runErr := <-ran
		r.stopAt = time.Now()
		_, stopErr := p.Stop(context.WithoutCancel(ctx))
		if runErr != nil || stopErr != nil {
			t.Fatalf("plant: run: %v; stop: %v", runErr, stopErr)
		}
	}
}

func (r *midRun) uninterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), midRunFor+time.Minute)
	defer cancel()
	m := startLiveMission(t, ctx, r.port, r.dataDir, "--model", r.model)
	wait := r.plantRun(t, ctx)
	time.Sleep(midCutAt)
	r.restart = time.Now()
	wait()
	m.stop(t, "all-in-one")
}

func (r *midRun) lateStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), midRunFor+time.Minute)
	defer cancel()
	wait := r.plantRun(t, ctx)
	time.Sleep(midCutAt)
	m := startLiveMission(t, ctx, r.port, r.dataDir, "--model", r.model)
	r.restart = time.Now()
	wait()
	m.stop(t, "all-in-one")
}

func (r *midRun) allInOneRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), midRunFor+time.Minute)
	defer cancel()
	m := startLiveMission(t, ctx, r.port, r.dataDir, "--model", r.model)
	wait := r.plantRun(t, ctx)
	time.Sleep(midCutAt)
	terminate(t, m.cmd, m.exited, m.logs, "all-in-one")
	m = startLiveMission(t, ctx, r.port, r.dataDir, "--model", r.model)
	r.restart = time.Now()
	wait()
	m.stop(t, "restarted all-in-one")
}

// probeRestart runs `mission collect` (with the model) and `mission probe
// --transport tcp` to it; the probe is stopped at the cut and started
// again, with or without its state file.
func (r *midRun) probeRestart(t *testing.T, withState bool) {
	ctx, cancel := context.WithTimeout(context.Background(), midRunFor+time.Minute)
	defer cancel()
	col := startProc(t, ctx, "collector listening", "--log-format", "json", "collect", "--listen", "tcp", "--port", "0",
		"--data-dir", r.dataDir, "--model", r.model)
	colPort := listenPort(t, col.logs.String())
	probeArgs := []string{"--log-format", "json", "probe", "--interface", "lo", "--filter", fmt.Sprintf("tcp port %d", r.port),
		"--mqtt-ports", strconv.Itoa(r.port), "--transport", "tcp", "--collector", "127.0.0.1", "--port", strconv.Itoa(colPort)}
	if withState {
		probeArgs = append(probeArgs, "--state-file", filepath.Join(r.dir, "probe-state"))
	}
	p := startProc(t, ctx, "capturing", probeArgs...)
	wait := r.plantRun(t, ctx)
	time.Sleep(midCutAt)
	terminate(t, p.cmd, p.exited, p.logs, "probe")
	p = startProc(t, ctx, "capturing", probeArgs...)
	r.restart = time.Now()
	wait()
	time.Sleep(time.Second)
	terminate(t, p.cmd, p.exited, p.logs, "restarted probe")
	time.Sleep(500 * time.Millisecond)
	terminate(t, col.cmd, col.exited, col.logs, "collector")
}

// startProc starts mission with args and waits for the log line ready.
func startProc(t *testing.T, ctx context.Context, ready string, args ...string) *liveMission {
	t.Helper()
	cmd := exec.CommandContext(ctx, missionBin, args...)
	cmd.WaitDelay = 5 * time.Second
	m := &liveMission{cmd: cmd, logs: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = m.logs, m.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mission: %v", err)
	}
	go func() { m.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-m.exited
		}
	})
	waitLog(t, m.logs, m.exited, ready, 30*time.Second)
	return m
}

// terminate stops a mission process with SIGTERM and waits for it.
func terminate(t *testing.T, cmd *exec.Cmd, exited <-chan error, logs *lockedBuffer, what string) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("%s exited with %v:\n%s", what, err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop within 30 s of SIGTERM:\n%s", what, logs.String())
	}
}

// listenPort is the TCP port of the collector's "collector listening" line.
func listenPort(t *testing.T, logs string) int {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var e struct{ Message, Address, Transport string }
		if json.Unmarshal([]byte(l), &e) != nil || e.Message != "collector listening" || e.Transport != "tcp" {
			continue
		}
		if i := strings.LastIndexByte(e.Address, ':'); i >= 0 {
			if p, err := strconv.Atoi(e.Address[i+1:]); err == nil {
				return p
			}
		}
	}
	t.Fatalf("no collector listening line:\n%s", logs)
	return 0
}

// midKey finds a flow (with its start time: the nearest start within
// midTimeTolerance). Times are compared within that tolerance: the
// reference capture is another socket (dumpcap, pcap with microsecond
// times), whose kernel timestamps differ from the probe's by microseconds
// — or by milliseconds, now and then, on a loaded machine (each packet
// socket is stamped as the softirq reaches it; see
// mqtttest.MatchRecording), hence mqtttest.WideTolerance.
type midKey struct {
	typ      string
	src, dst string
	packetID uint16
	topic    string
	corr     string
}

const midTimeTolerance = mqtttest.WideTolerance

func midKeyOf(d *flow.Document) midKey {
	return midKey{d.MQTTControlTypeName,
		d.SourceIPv4Address + ":" + strconv.Itoa(int(d.SourceTransportPort)),
		d.DestinationIPv4Address + ":" + strconv.Itoa(int(d.DestinationTransportPort)), d.MQTTPacketID, d.MQTTTopic, d.MQTTCorrelationData}
}

// midFields are the fields a flow must have the same in the store and the
// reference.
func midFields(d *flow.Document) string {
	return fmt.Sprintf("pk=%d oct=%d reason=%s topic=%q id=%d qos=%d corr=%q/%s retain=%v dup=%v len=%d filters=%q rc=%v",
		d.PacketDeltaCount, d.OctetDeltaCount, d.FlowEndReason, d.MQTTTopic, d.MQTTPacketID, d.MQTTQoS,
		d.MQTTCorrelationData, d.MQTTCorrelationSource, d.MQTTRetain, d.MQTTDup, d.MQTTPayloadLength, d.MQTTTopicFilters,
		reasonText(d.MQTTReasonCode))
}

func reasonText(p *uint8) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(int(*p))
}

// compare reads the reference capture and compares the flows after the
// restart with the stored ones.
func (r *midRun) compare(t *testing.T, m *mining.Model, name string) midResult {
	t.Helper()
	out, err := exec.Command(missionBin, "--log-level", "warn", "probe", "--read", r.pcap, "--mqtt-ports", strconv.Itoa(r.port), "--stdout").Output()
	if err != nil {
		t.Fatalf("probe --read the reference: %v", err)
	}
	var ref []flow.Document
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var d flow.Document
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("reference flow %q: %v", sc.Text(), err)
		}
		ref = append(ref, d)
	}

	// What the detector infers over the stored flows (in start order):
	// the client of every flow without one.
	stored := slices.Clone(r.flows)
	slices.SortFunc(stored, func(a, b flow.Document) int { return int(a.FlowStartNs - b.FlowStartNs) })
	det := mining.NewDetector(m, mining.DetectorOptions{})
	inferred := map[*flow.Document]string{}
	byKey := map[midKey][]*flow.Document{}
	for i := range stored {
		d := &stored[i]
		byKey[midKeyOf(d)] = append(byKey[midKeyOf(d)], d)
		rec, err := d.Record()
		if err != nil {
			t.Fatal(err)
		}
		det.Observe(&rec)
		if id, ok := det.InferredClient(&rec); ok {
			inferred[d] = id
		}
	}

	res := midResult{name: name, sources: map[string]int{}, alerts: len(r.alerts), incidents: len(r.incidents)}
	from, to := r.restart.Add(midSettle).UnixNano(), r.stopAt.UnixNano()
	shown := 0
	for i := range ref {
		w := &ref[i]
		if w.FlowStartNs < from || w.FlowEndNs > to {
			continue
		}
		res.compared++
		var g *flow.Document
		var dt time.Duration
		for _, c := range byKey[midKeyOf(w)] {
			d := absDur(time.Duration(c.FlowStartNs - w.FlowStartNs))
			if d <= midTimeTolerance && (g == nil || d < dt) {
				g, dt = c, d
			}
		}
		if g != nil {
			dt = max(dt, absDur(time.Duration(g.FlowEndNs-w.FlowEndNs)))
		}
		if g == nil || midFields(g) != midFields(w) || dt > midTimeTolerance || (g.MQTTProtocolVersion != 0 && g.MQTTProtocolVersion != w.MQTTProtocolVersion) {
			if shown < 5 {
				shown++
				got := "missing"
				if g != nil {
					got = midFields(g)
				}
				t.Logf("reference %v %s\n  stored %s", midKeyOf(w), midFields(w), got)
			}
			continue
		}
		res.matched++
		res.maxDelta = max(res.maxDelta, dt)
		if dt > time.Millisecond {
			res.stampedApart++
		}
		if g.MQTTProtocolVersion == 0 {
			res.noVersion++
		}
		res.sources[g.MQTTIdentitySource]++
		wantID, gotID := clientID(w), clientID(g)
		if gotID == "" {
			gotID = inferred[g]
			if gotID == "" {
				res.unnamed++
			}
		}
		if gotID == wantID {
			res.ids++
		} else if shown < 10 {
			shown++
			t.Logf("flow %v: client %q, want %q (source %s)", midKeyOf(w), gotID, wantID, g.MQTTIdentitySource)
		}
	}
	return res
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// clientID is the client side's id of a flow.
func clientID(d *flow.Document) string {
	if d.MQTTSrcClientID == flow.BrokerClientID {
		return d.MQTTDstClientID
	}
	return d.MQTTSrcClientID
}
