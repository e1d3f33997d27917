package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/internal/plant"
	"github.com/mission-ids/mission/mining"
	"github.com/mission-ids/mission/store"
)

// The research plant runs accelerated in this test: one round (every
// sensor reads once) per 100 ms instead of the study's one per second, so
// one second of wall time is ten seconds of plant time. The model is
// learned, and detection runs, at that same rate (the rate checks compare
// flows per 10 s window).
const (
	roundInterval = 100 * time.Millisecond
	trainFor      = 20 * time.Second // 200 rounds, 1000 chains
	normalFor     = 60 * time.Second // 600 rounds: 10 minutes of plant time
	attackRunFor  = 8 * time.Second  // each attack run: 80 rounds …
	attackAt      = 3 * time.Second  // … with the attack starting after 30
	// maxLatency bounds the time from a flow's last packet to the alert it
	// raises (checks raised on the flow itself).
	maxLatency = time.Second
	// maxIncidents bounds the incidents of one attack run.
	maxIncidents = 5
)

// detectionRun is one live recording by `mission all-in-one`.
type detectionRun struct {
	name    string
	dataDir string
	logs    string
	rep     *plant.Report
	attack  *plant.AttackReport
	flows   []flow.Document
	byID    map[uint64]*flow.Document
	alerts  []storedAlert // the alerts collection (live detection)
	// incidents: the incidents collection (live detection)
	incidents []storedIncident
	logged    []loggedAlert // the alert lines of mission's log
	offline   []mining.Alert
}

type storedAlert struct {
	Check    string    `bson:"check" json:"check"`
	Severity string    `bson:"severity" json:"severity"`
	Time     time.Time `bson:"time" json:"time"`
	Client   string    `bson:"client" json:"client,omitempty"`
	Topic    string    `bson:"topic" json:"topic,omitempty"`
	Case     string    `bson:"case" json:"case,omitempty"`
	Flows    []uint64  `bson:"flows" json:"flows,omitempty"`
	Message  string    `bson:"message" json:"message"`
}

func (a storedAlert) String() string {
	return fmt.Sprintf("%s/%s client=%q topic=%q case=%q flows=%v: %s", a.Check, a.Severity, a.Client, a.Topic, a.Case, a.Flows, a.Message)
}

type storedIncident struct {
	ID       string    `bson:"_id"`
	Check    string    `bson:"check"`
	Severity string    `bson:"severity"`
	First    time.Time `bson:"first"`
	Last     time.Time `bson:"last"`
	Count    int       `bson:"count"`
	Message  string    `bson:"message"`
	Closed   bool      `bson:"closed"`
}

type loggedAlert struct {
	logTime time.Time
	alert   mining.Alert
}

// TestDetectionResearchPlant is the detection evaluation on a real broker: the
// research plant is recorded live by `mission all-in-one`, a model is
// learned with `mission mine`, and then fresh normal traffic and five
// attacks, each recorded live with `mission all-in-one --model`, are
// checked: no alert on normal traffic, the expected checks on each attack,
// alerts that name client, topic, case and flows, and under a second from
// a flow's capture to its alert.
func TestDetectionResearchPlant(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto")
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
	out := os.Getenv("MISSION_DETECTION_OUT") // keep the artefacts (docs/detection.md)
	began := time.Now()

	// 1. Learn: normal traffic, recorded, mined with the CLI.
	train := recordDetectionRun(t, broker.Port, "train", 1, trainFor, "", nil, nil)
	mined := filepath.Join(t.TempDir(), "mined")
	var mineReport struct {
		Flows   int            `json:"flows"`
		Cases   int            `json:"cases"`
		Quality map[string]any `json:"heldOutQuality"`
	}
	mineOut := runMission(t, "mine", "--data-dir", train.dataDir, "--out", mined)
	if err := json.Unmarshal(mineOut, &mineReport); err != nil {
		t.Fatalf("mission mine printed %q: %v", mineOut, err)
	}
	t.Logf("trained on %d rounds: %d flows, %d cases; held-out quality %v", train.rep.Rounds, mineReport.Flows, mineReport.Cases, mineReport.Quality)
	if want := len(train.rep.Chains); mineReport.Cases != want {
		t.Errorf("mission mine found %d cases, the plant made %d readings", mineReport.Cases, want)
	}
	modelPath := filepath.Join(mined, "model.json")
	checkRediscoveredDFG(t, modelPath, filepath.Join(mined, "dfg.dot"))
	if out != "" {
		for _, f := range []string{"dfg.dot", "model.json", "events.csv"} {
			copyFile(t, filepath.Join(mined, f), filepath.Join(out, f))
		}
	}

	var rows []resultRow

	// 2. Fresh normal traffic, another seed: no alert, live or offline.
	normal := recordDetectionRun(t, broker.Port, "normal", 2, normalFor, modelPath, nil, func(cfg *plant.Config) {
		// Another start-up than training, inside the recording: sensors
		// and controller first, reading at once, the actuators 300 ms
		// (3 s of plant time) later.
		cfg.StartOrder = []plant.Role{plant.RoleSensor, plant.RoleController, plant.RoleActuator}
		cfg.StartGap = 150 * time.Millisecond
	})
	normal.detectOffline(t, modelPath)
	for _, a := range normal.alerts {
		t.Errorf("false alarm on fresh normal traffic (live): %s", a)
	}
	for _, a := range normal.offline {
		t.Errorf("false alarm on fresh normal traffic (mission detect): %+v", a)
	}
	for _, inc := range normal.incidents {
		t.Errorf("false incident on fresh normal traffic (live): %s", inc.Message)
	}
	if len(normal.logged) != len(normal.alerts) {
		t.Errorf("%d alerts logged, %d stored", len(normal.logged), len(normal.alerts))
	}
	rows = append(rows, normal.row("fresh normal traffic (seed 2)", nil))
	t.Logf("fresh normal traffic: %d rounds (%s of plant time), %d chains, %d flows: %d alerts live, %d with mission detect",
		normal.rep.Rounds, time.Duration(normal.rep.Rounds)*time.Second, len(normal.rep.Chains), len(normal.flows), len(normal.alerts), len(normal.offline))

	// 3. Attacks, each in its own recording, alongside the plant's rounds.
	for i, sc := range detectionScenarios() {
		ok := t.Run(sc.name, func(t *testing.T) {
			r := recordDetectionRun(t, broker.Port, sc.name, uint64(10+i), attackRunFor, modelPath, sc.attack, nil)
			r.detectOffline(t, modelPath)
			a := r.attack
			t.Logf("%s: %s as %q (hijacked %v), %d PUBLISH, %d SUBSCRIBE, %d CONNECT in %s",
				sc.name, a.Name, a.Client, a.Hijacked, a.Publishes, a.Subscribes, a.Connects, a.End.Sub(a.Start).Round(time.Millisecond))
			for _, al := range r.alerts {
				t.Logf("  alert %s", al)
			}
			// Nothing before the attack: the normal part of the run is quiet.
			for _, al := range r.alerts {
				if al.Time.Before(a.Start.Add(-50 * time.Millisecond)) {
					t.Errorf("alert %v before the attack started (%v): %s", al.Time.Format(time.StampMicro), a.Start.Format(time.StampMicro), al)
				}
			}
			for _, w := range sc.want {
				r.requireAlert(t, w)
			}
			for _, inc := range r.incidents {
				t.Logf("  incident %s %s ×%d: %s", inc.Check, inc.Severity, inc.Count, inc.Message)
			}
			if n := len(r.incidents); n == 0 || n > maxIncidents {
				t.Errorf("%d incidents, want 1 to %d", n, maxIncidents)
			}
			if d, ok := r.delay(); !ok {
				t.Error("no attack flow to measure the delay from")
			} else if d > time.Second {
				t.Errorf("first incident %s after the first attack flow (capture time), want under 1 s", d)
			}
			if len(r.logged) != len(r.alerts) {
				t.Errorf("%d alerts logged, %d stored", len(r.logged), len(r.alerts))
			}
			lat := r.latencies()
			if len(lat) == 0 {
				t.Error("no alert to measure the detection latency on")
			} else if worst := lat[len(lat)-1]; worst > maxLatency {
				t.Errorf("detection latency up to %s (median %s) from a flow's last packet to its alert; want under %s", worst, lat[len(lat)/2], maxLatency)
			}
			// Offline detection over the stored flows agrees on the checks.
			live, off := map[string]bool{}, map[string]bool{}
			for _, al := range r.alerts {
				live[al.Check] = true
			}
			for _, al := range r.offline {
				off[string(al.Check)] = true
			}
			for _, w := range sc.want {
				if !off[w.check] {
					t.Errorf("mission detect over the stored flows raised no %s alert (live: %v, offline: %v)", w.check, live, off)
				}
			}
			rows = append(rows, r.row(sc.name, sc.want))
		})
		if !ok {
			t.Logf("scenario %s failed", sc.name)
		}
	}

	table := resultsTable(rows)
	t.Logf("results (whole test %s):\n%s", time.Since(began).Round(time.Second), table)
	if out != "" {
		if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// wantAlert is an alert an attack must raise.
type wantAlert struct {
	check, client, topic string
	// withCase: the alert must name a case (a correlation id) whose flows
	// it lists; caseID, if set, is that case.
	withCase bool
	caseID   string
}

type detectionScenario struct {
	name   string
	attack func(ctx context.Context, p *plant.Plant) (plant.AttackReport, error)
	want   []wantAlert
}

func detectionScenarios() []detectionScenario {
	const (
		floodCorr  = "c0ffee00-0000-4000-8000-000000000001"
		injectCorr = "deadbeef-0000-4000-8000-00000000cafe"
		intrCorr   = "11111111-2222-4333-8444-555555555555"
	)
	return []detectionScenario{
		{
			// The paper's DoS: motionSensor (compromised) floods the
			// temperature topic; half the PUBLISHes reuse one correlation id.
			name: "publish flood",
			attack: func(ctx context.Context, p *plant.Plant) (plant.AttackReport, error) {
				return p.Flood(ctx, plant.FloodConfig{Client: "motionSensor", Topic: "plant/sensors/temperature",
					Count: 300, Over: 3 * time.Second, ReuseEvery: 2, Reused: []byte(floodCorr)})
			},
			want: []wantAlert{
				{check: "unknown-activity", client: "motionSensor", topic: "plant/sensors/temperature", withCase: true},
				{check: "rate", client: "motionSensor"},
				{check: "skeleton", client: "", withCase: true, caseID: floodCorr},
			},
		},
		{
			// The paper's second attack: 50 toggles injected into the LED's
			// toggle topic with one fixed correlation id, as the controller.
			name: "toggle injection",
			attack: func(ctx context.Context, p *plant.Plant) (plant.AttackReport, error) {
				return p.InjectToggles(ctx, "controller", "led", 50, 2*time.Second, []byte(injectCorr))
			},
			want: []wantAlert{
				{check: "directly-follows", client: "controller", topic: "plant/actuators/led/toggleState", withCase: true, caseID: injectCorr},
				{check: "skeleton", withCase: true, caseID: injectCorr},
			},
		},
		{
			// Reconnaissance: doorSensor (compromised) subscribes to the whole
			// plant and to the broker's $SYS tree for a second.
			name: "wildcard and $SYS subscription",
			attack: func(ctx context.Context, p *plant.Plant) (plant.AttackReport, error) {
				return p.Recon(ctx, "doorSensor", time.Second, "plant/#", "$SYS/#")
			},
			want: []wantAlert{
				{check: "subscription", client: "doorSensor", topic: "plant/#"},
				{check: "subscription", client: "doorSensor", topic: "$SYS/#"},
			},
		},
		{
			// CONNECT flood: 200 short connections of one client id in 2 s.
			name: "connect flood",
			attack: func(ctx context.Context, p *plant.Plant) (plant.AttackReport, error) {
				return p.ConnectFlood(ctx, "flooder", 200, 2*time.Second)
			},
			want: []wantAlert{
				{check: "unknown-client", client: "flooder"},
				{check: "rate", client: "flooder"},
			},
		},
		{
			// An unknown client toggles the door opener directly.
			name: "unknown client toggles actuator",
			attack: func(ctx context.Context, p *plant.Plant) (plant.AttackReport, error) {
				return p.Intrude(ctx, "intruder", "doorOpener", []byte(intrCorr))
			},
			want: []wantAlert{
				{check: "unknown-client", client: "intruder"},
				{check: "unknown-activity", client: "intruder", topic: "plant/actuators/doorOpener/toggleState", withCase: true, caseID: intrCorr},
			},
		},
	}
}

// recordDetectionRun records the plant (seed, for d; with attack started
// attackAt into the run) live with `mission all-in-one` (with --model if
// model is set) and reads back what was stored and logged.
func recordDetectionRun(t *testing.T, port int, name string, seed uint64, d time.Duration, model string,
	attack func(context.Context, *plant.Plant) (plant.AttackReport, error), tune func(*plant.Config)) *detectionRun {
	t.Helper()
	r := &detectionRun{name: name, dataDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	var extra []string
	if model != "" {
		// Alerts are logged at debug level (incidents at warn): the
		// latency is measured on the alert lines.
		extra = []string{"--model", model, "--log-level", "debug"}
	}
	m := startLiveMission(t, ctx, port, r.dataDir, extra...)
	if model != "" {
		waitLog(t, m.logs, m.exited, "detection enabled", 5*time.Second)
	}

	cfg := plant.DefaultConfig(fmt.Sprintf("127.0.0.1:%d", port))
	cfg.Interval, cfg.Duration, cfg.WatchStates, cfg.Seed = roundInterval, d, true, seed
	if tune != nil {
		tune(&cfg)
	}
	p, err := plant.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("%s: plant: %v", name, err)
	}
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	if attack != nil {
		time.Sleep(attackAt)
		ar, err := attack(ctx, p)
		if err != nil {
			t.Errorf("%s: attack: %v", name, err)
		}
		r.attack = &ar
	}
	runErr := <-ran
	rep, stopErr := p.Stop(context.WithoutCancel(ctx))
	if runErr != nil || stopErr != nil {
		t.Fatalf("%s: plant: run: %v; stop: %v", name, runErr, stopErr)
	}
	r.rep = rep

	r.logs = m.stop(t, name)
	r.flows, r.alerts, r.incidents = readStore(t, r.dataDir)
	r.byID = map[uint64]*flow.Document{}
	for i := range r.flows {
		r.byID[r.flows[i].FlowID] = &r.flows[i]
	}
	r.logged = loggedAlerts(t, r.logs)
	return r
}

// readStore returns the stored flows, alerts and incidents of a data directory.
func readStore(t *testing.T, dataDir string) ([]flow.Document, []storedAlert, []storedIncident) {
	t.Helper()
	var docs []flow.Document
	var alerts []storedAlert
	var incs []storedIncident
	withStore(t, dataDir, func(ctx context.Context, db *mongo.Database) {
		findAll(t, ctx, db.Collection(store.DefaultCollection), &docs)
		findAll(t, ctx, db.Collection(store.AlertCollection), &alerts, options.Find().SetSort(bson.D{{Key: "time", Value: 1}}))
		findAll(t, ctx, db.Collection(store.IncidentCollection), &incs, options.Find().SetSort(bson.D{{Key: "first", Value: 1}}))
	})
	return docs, alerts, incs
}

// loggedAlerts parses the alert lines of mission's JSON log.
func loggedAlerts(t *testing.T, logs string) []loggedAlert {
	t.Helper()
	var out []loggedAlert
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time  string          `json:"time"`
			Alert json.RawMessage `json:"alert"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || len(l.Alert) == 0 {
			continue
		}
		var la loggedAlert
		if err := json.Unmarshal(l.Alert, &la.alert); err != nil {
			t.Errorf("alert in the log: %v: %s", err, sc.Text())
			continue
		}
		lt, err := time.Parse(time.RFC3339Nano, l.Time)
		if err != nil {
			t.Errorf("log time %q: %v", l.Time, err)
			continue
		}
		la.logTime = lt
		out = append(out, la)
	}
	return out
}

// detectOffline runs `mission detect` over the run's stored flows.
func (r *detectionRun) detectOffline(t *testing.T, model string) {
	t.Helper()
	out := runMission(t, "detect", "--model", model, "--data-dir", r.dataDir)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var a mining.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("mission detect printed %q: %v", line, err)
		}
		r.offline = append(r.offline, a)
	}
}

// requireAlert finds an alert matching w and checks that it names its
// client, topic, case and flows, and that those flows are stored flows of
// that client (and case).
func (r *detectionRun) requireAlert(t *testing.T, w wantAlert) {
	t.Helper()
	var cands []storedAlert
	for _, a := range r.alerts {
		if a.Check == w.check && (w.client == "" || a.Client == w.client) && (w.topic == "" || a.Topic == w.topic) &&
			(w.caseID == "" || a.Case == w.caseID) && (!w.withCase || a.Case != "") {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		t.Errorf("no %s alert (client %q, topic %q, case %q) among %d alerts", w.check, w.client, w.topic, w.caseID, len(r.alerts))
		return
	}
	a := cands[0]
	if a.Client == "" || a.Message == "" || len(a.Flows) == 0 {
		t.Errorf("alert names no client, message or flows: %s", a)
	}
	if w.topic != "" && a.Topic == "" {
		t.Errorf("alert names no topic: %s", a)
	}
	for _, id := range a.Flows {
		d := r.byID[id]
		if d == nil {
			t.Errorf("alert names flow %d, which is not stored: %s", id, a)
			continue
		}
		if a.Case != "" && d.MQTTCorrelationData != a.Case {
			t.Errorf("alert on case %q names flow %d of case %q", a.Case, id, d.MQTTCorrelationData)
		}
	}
	last := r.byID[a.Flows[len(a.Flows)-1]]
	if last != nil && a.Client != mining.TotalClient && a.Client != mining.Broker && !w.withCase && last.MQTTSrcClientID != a.Client {
		t.Errorf("alert on client %q names flow %d from %q", a.Client, last.FlowID, last.MQTTSrcClientID)
	}
}

// endOfCase tells the alerts raised when a case closes (CaseTimeout, 30 s,
// after its last event, or at shutdown) from the message the detector
// gives them; every other alert is raised by a flow: at once (unknown
// client or activity, rate, subscription, missing correlation, case
// length, occurrences, never-together) or, for the checks that depend on
// the order of a case's events, once the detector's Reorder window
// (500 ms) has passed.
func endOfCase(msg string) bool {
	for _, s := range []string{"case ends with", "at least", "not followed by", "always equally often"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// latencies returns, for the logged alerts raised by a flow, the time
// from the end of the alert's triggering flow (its last packet, captured;
// the last flow the alert lists) to the alert's log line.
func (r *detectionRun) latencies() []time.Duration {
	var out []time.Duration
	for _, la := range r.logged {
		a := la.alert
		if endOfCase(a.Message) || len(a.Flows) == 0 {
			continue
		}
		d := r.byID[a.Flows[len(a.Flows)-1]]
		if d == nil {
			continue
		}
		out = append(out, la.logTime.Sub(time.Unix(0, d.FlowEndNs)))
	}
	slices.Sort(out)
	return out
}

// delay is the time from the first flow of the attack (capture time: the
// attacker's client's first flow at or after the attack started) to the
// first incident's first alert (flow time).
func (r *detectionRun) delay() (time.Duration, bool) {
	if r.attack == nil || len(r.incidents) == 0 {
		return 0, false
	}
	var first time.Time
	for _, d := range r.flows {
		st := time.Unix(0, d.FlowStartNs)
		if st.Before(r.attack.Start.Add(-50*time.Millisecond)) || d.MQTTSrcClientID != r.attack.Client && d.MQTTDstClientID != r.attack.Client {
			continue
		}
		if first.IsZero() || st.Before(first) {
			first = st
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return r.incidents[0].First.Sub(first), true
}

// checkRediscoveredDFG requires the mined model's directly-follows graph
// (and dfg.dot) to be exactly the plant's designed chains.
func checkRediscoveredDFG(t *testing.T, modelPath, dotPath string) {
	t.Helper()
	f, err := os.Open(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := mining.ReadModel(f)
	if err != nil {
		t.Fatal(err)
	}
	sensors, actuators := plant.DefaultDevices("plant")
	act := map[string]plant.Actuator{}
	for _, a := range actuators {
		act[a.Name] = a
	}
	var wantActs, wantStart, wantEnd, wantEdges []string
	for _, s := range sensors {
		a := act[s.Actuator]
		chain := []string{
			mining.Activity(s.ClientID, s.Topic),
			mining.Activity(mining.Broker, s.Topic), // delivery to the controller
			mining.Activity("controller", a.ToggleTopic),
			mining.Activity(mining.Broker, a.ToggleTopic), // delivery to the actuator
			mining.Activity(a.ClientID, a.StateTopic),
			mining.Activity(mining.Broker, a.StateTopic), // delivery to the controller
		}
		wantActs = append(wantActs, chain...)
		wantStart = append(wantStart, chain[0])
		wantEnd = append(wantEnd, chain[len(chain)-1])
		for i := 1; i < len(chain); i++ {
			wantEdges = append(wantEdges, chain[i-1]+" ⇒ "+chain[i])
		}
	}
	var gotActs, gotStart, gotEnd, gotEdges []string
	for _, a := range m.Activities {
		gotActs = append(gotActs, a.Activity)
	}
	for _, s := range m.Start {
		gotStart = append(gotStart, s.Activity)
	}
	for _, s := range m.End {
		gotEnd = append(gotEnd, s.Activity)
	}
	for _, e := range m.DirectlyFollows {
		gotEdges = append(gotEdges, e.From+" ⇒ "+e.To)
	}
	for _, l := range [][]string{wantActs, wantStart, wantEnd, wantEdges, gotActs, gotStart, gotEnd, gotEdges} {
		slices.Sort(l)
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"activities", gotActs, wantActs}, {"start activities", gotStart, wantStart}, {"end activities", gotEnd, wantEnd}, {"directly-follows edges", gotEdges, wantEdges}} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("rediscovered %s:\n got %q\nwant %q", c.what, c.got, c.want)
		}
	}
	dot, err := os.ReadFile(dotPath)
	if err != nil {
		t.Fatal(err)
	}
	edges := 0
	for _, l := range strings.Split(string(dot), "\n") {
		if strings.Contains(l, " -> ") && !strings.Contains(l, "@@") {
			edges++
		}
	}
	if edges != len(wantEdges) {
		t.Errorf("dfg.dot has %d edges between activities, want %d", edges, len(wantEdges))
	}
	t.Logf("rediscovered DFG: %d activities, %d edges, %d start and %d end activities: exactly the designed chains", len(gotActs), len(gotEdges), len(gotStart), len(gotEnd))
}

// resultRow is one line of the results table.
type resultRow struct {
	scenario  string
	flows     int
	cases     int
	live      map[string]int
	offline   map[string]int
	want      []string
	latency   []time.Duration
	incidents int
	delay     string
}

func (r *detectionRun) row(name string, want []wantAlert) resultRow {
	row := resultRow{scenario: name, flows: len(r.flows), live: map[string]int{}, offline: map[string]int{}}
	cases := map[string]bool{}
	for _, d := range r.flows {
		if d.MQTTCorrelationData != "" {
			cases[d.MQTTCorrelationData] = true
		}
	}
	row.cases = len(cases)
	for _, a := range r.alerts {
		row.live[a.Check]++
	}
	for _, a := range r.offline {
		row.offline[string(a.Check)]++
	}
	for _, w := range want {
		if !slices.Contains(row.want, w.check) {
			row.want = append(row.want, w.check)
		}
	}
	row.latency = r.latencies()
	row.incidents = len(r.incidents)
	row.delay = "–"
	if d, ok := r.delay(); ok {
		row.delay = d.Round(time.Millisecond).String()
	}
	return row
}

func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var keys []string
	total := 0
	for k, n := range m {
		keys = append(keys, k)
		total += n
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return fmt.Sprintf("%d: %s", total, strings.Join(parts, ", "))
}

func resultsTable(rows []resultRow) string {
	var b strings.Builder
	b.WriteString("| scenario | flows | cases | expected checks | incidents (live) | alerts, live (`all-in-one --model`) | alerts, `mission detect` | first attack flow → first incident (capture time) | latency flow end → alert (median / max) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		want := "none"
		if len(r.want) > 0 {
			want = strings.Join(r.want, ", ")
		}
		lat := "–"
		if n := len(r.latency); n > 0 {
			lat = fmt.Sprintf("%s / %s", r.latency[n/2].Round(time.Millisecond), r.latency[n-1].Round(time.Millisecond))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %d | %s | %s | %s | %s |\n", r.scenario, r.flows, r.cases, want, r.incidents, countsText(r.live), countsText(r.offline), r.delay, lat)
	}
	return b.String()
}

func runMission(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(missionBin, append([]string{"--log-level", "warn"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("mission %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
