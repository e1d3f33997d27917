// Package e2e runs the mission binary as a user would, against real MQTT
// traffic, and checks what it stored. It has only tests.
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/internal/plant"
	"github.com/mission-ids/mission/store"
)

// missionBin is the mission binary, built once by TestMain.
var missionBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mission-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	missionBin = filepath.Join(dir, "mission")
	build := exec.Command("go", "build", "-o", missionBin, ".")
	build.Dir = ".." // the module root: this package is e2e/
	// Static, as released: --user changes every thread, which cgo prevents.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build mission: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestPlantAllInOne captures the study's plant live with `mission
// all-in-one` and checks the stored flows one by one against what the
// plant's clients report they did: nothing lost, nothing unexpected, every
// flow complete, and each reading's correlation id on exactly its chain.
func TestPlantAllInOne(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto")
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
	port := broker.Port
	dataDir := t.TempDir()

	// mission all-in-one, live on lo.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := startLiveMission(t, ctx, port, dataDir)

	// The plant: every sensor once per 500 ms for 5 s; the controller also
	// watches the actuators' states so chains end with a delivery too.
	cfg := plant.DefaultConfig(fmt.Sprintf("127.0.0.1:%d", port))
	cfg.Interval, cfg.Duration, cfg.WatchStates = 500*time.Millisecond, 5*time.Second, true
	rep, err := plant.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("plant: %v", err)
	}
	if len(rep.Chains) == 0 {
		t.Fatal("the plant made no reading")
	}
	checkReport(t, cfg, rep)

	m.stop(t, "plant")

	docs := storedFlows(t, dataDir)
	want := expectedFlows(rep, port)
	compareFlows(t, want, docs)
	checkChains(t, rep, docs)
	checkQuery(t, dataDir, len(want))
}

// checkReport checks the workload did what the scenario says, so the
// expected flows computed from it are the scenario's: per chain, three
// publications and three deliveries at the right clients and topics.
func checkReport(t *testing.T, cfg plant.Config, rep *plant.Report) {
	t.Helper()
	if inc := rep.Incomplete(); len(inc) > 0 {
		t.Fatalf("%d chains incomplete", len(inc))
	}
	if got, want := len(rep.Clients), len(cfg.Sensors)+len(cfg.Actuators)+1; got != want {
		t.Fatalf("%d clients, want %d", got, want)
	}
	for _, c := range rep.Clients {
		if !c.Disconnected || c.Err != nil || c.Pings != 0 || !c.Local.IsValid() {
			t.Fatalf("client %s: disconnected %v, error %v, %d pings, address %v", c.ID, c.Disconnected, c.Err, c.Pings, c.Local)
		}
	}
	type pd struct{ kind, client, topic, corr string }
	var want, got []pd
	for _, ch := range rep.Chains {
		if ch.Round < 0 {
			t.Fatalf("chain %s not started by a plant sensor", ch.CorrelationData)
		}
		c := string(ch.CorrelationData)
		want = append(want,
			pd{"pub", ch.Sensor.ClientID, ch.Sensor.Topic, c},
			pd{"del", ch.Controller, ch.Sensor.Topic, c},
			pd{"pub", ch.Controller, ch.Actuator.ToggleTopic, c},
			pd{"del", ch.Actuator.ClientID, ch.Actuator.ToggleTopic, c},
			pd{"pub", ch.Actuator.ClientID, ch.Actuator.StateTopic, c},
			pd{"del", ch.Controller, ch.Actuator.StateTopic, c})
	}
	for _, m := range rep.Published {
		got = append(got, pd{"pub", m.ClientID, m.Topic, string(m.CorrelationData)})
	}
	for _, m := range rep.Delivered {
		got = append(got, pd{"del", m.ClientID, m.Topic, string(m.CorrelationData)})
		if m.QoS != cfg.QoS {
			t.Errorf("%s received %s at QoS %d", m.ClientID, m.Topic, m.QoS)
		}
	}
	less := func(a, b pd) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
	slices.SortFunc(want, less)
	slices.SortFunc(got, less)
	if !slices.Equal(want, got) {
		t.Fatalf("the plant's messages do not follow its chains:\n got %v\nwant %v", got, want)
	}
}

// flowKey is what identifies an expected flow: its type, ends (address,
// port and client id on each side), QoS, topic or topic filters, and
// correlation id, with the packet count and end reason of a complete flow.
type flowKey struct {
	Type               string
	SrcPort, DstPort   uint16
	SrcID, DstID       string
	QoS                uint8
	Topic, Filters     string
	Correlation        string
	Packets            uint64
	EndReason, SrcAddr string
}

func (k flowKey) String() string {
	s := fmt.Sprintf("%s %s:%d(%s) → :%d(%s)", k.Type, k.SrcAddr, k.SrcPort, k.SrcID, k.DstPort, k.DstID)
	if k.Type == "PUBLISH" {
		s += fmt.Sprintf(" QoS %d", k.QoS)
	}
	if k.Topic != "" {
		s += " topic " + k.Topic
	}
	if k.Filters != "" {
		s += " filters " + k.Filters
	}
	if k.Correlation != "" {
		s += " corr " + k.Correlation
	}
	return s + fmt.Sprintf(" [%d packets, %s]", k.Packets, k.EndReason)
}

// expectedFlows computes every flow the probe must store from what the
// plant's clients did (README.md, "What a flow is").
func expectedFlows(rep *plant.Report, port int) map[flowKey]int {
	want := map[flowKey]int{}
	bp := uint16(port)
	publishPackets := map[byte]uint64{0: 1, 1: 2, 2: 4}
	for _, c := range rep.Clients {
		cp := c.Local.Port()
		up := func(typ string, packets uint64) flowKey {
			return flowKey{Type: typ, SrcAddr: "127.0.0.1", SrcPort: cp, DstPort: bp, SrcID: c.ID, DstID: flow.BrokerClientID,
				Packets: packets, EndReason: "end of flow"}
		}
		want[up("CONNECT", 2)]++
		for _, s := range c.Subscriptions {
			k := up("SUBSCRIBE", 2)
			k.Filters = strings.Join(s.Filters, ",")
			k.Topic = s.Filters[0] // mqttTopic of a SUBSCRIBE: its first filter, as the original
			want[k]++
		}
		for range c.Pings {
			want[up("PINGREQ", 2)]++
		}
		if c.Disconnected {
			want[up("DISCONNECT", 1)]++
		}
	}
	local := map[string]uint16{}
	for _, c := range rep.Clients {
		local[c.ID] = c.Local.Port()
	}
	for _, m := range rep.Published {
		want[flowKey{Type: "PUBLISH", SrcAddr: "127.0.0.1", SrcPort: local[m.ClientID], DstPort: bp, SrcID: m.ClientID, DstID: flow.BrokerClientID,
			QoS: m.QoS, Topic: m.Topic, Correlation: string(m.CorrelationData), Packets: publishPackets[m.QoS], EndReason: "end of flow"}]++
	}
	for _, m := range rep.Delivered {
		want[flowKey{Type: "PUBLISH", SrcAddr: "127.0.0.1", SrcPort: bp, DstPort: local[m.ClientID], SrcID: flow.BrokerClientID, DstID: m.ClientID,
			QoS: m.QoS, Topic: m.Topic, Correlation: string(m.CorrelationData), Packets: publishPackets[m.QoS], EndReason: "end of flow"}]++
	}
	return want
}

func keyOf(d flow.Document) flowKey {
	k := flowKey{Type: d.MQTTControlTypeName, SrcAddr: d.SourceIPv4Address, SrcPort: d.SourceTransportPort, DstPort: d.DestinationTransportPort,
		SrcID: d.MQTTSrcClientID, DstID: d.MQTTDstClientID, Topic: d.MQTTTopic, Filters: strings.Join(d.MQTTTopicFilters, ","),
		Correlation: d.MQTTCorrelationData, Packets: d.PacketDeltaCount, EndReason: d.FlowEndReason}
	if d.MQTTControlType == uint8(flow.Publish) {
		k.QoS = d.MQTTQoS
	}
	return k
}

// withStore serves the embedded store of dataDir while fn reads it.
func withStore(t *testing.T, dataDir string, fn func(ctx context.Context, db *mongo.Database)) {
	t.Helper()
	emb, err := store.StartEmbedded(filepath.Join(dataDir, "db"), "127.0.0.1:0", zerolog.Nop())
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	defer emb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(emb.URL()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	fn(ctx, client.Database(store.DefaultDatabase))
}

// findAll decodes every document of a collection into out.
func findAll(t *testing.T, ctx context.Context, coll *mongo.Collection, out any, opts ...*options.FindOptions) {
	t.Helper()
	cur, err := coll.Find(ctx, bson.D{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := cur.All(ctx, out); err != nil {
		t.Fatalf("decode %s: %v", coll.Name(), err)
	}
}

func storedFlows(t *testing.T, dataDir string) []flow.Document {
	t.Helper()
	var docs []flow.Document
	withStore(t, dataDir, func(ctx context.Context, db *mongo.Database) {
		findAll(t, ctx, db.Collection(store.DefaultCollection), &docs)
	})
	return docs
}

// compareFlows requires the stored flows to be exactly want, and checks the
// fields every flow of this traffic shares.
func compareFlows(t *testing.T, want map[flowKey]int, docs []flow.Document) {
	t.Helper()
	got := map[flowKey]int{}
	for _, d := range docs {
		got[keyOf(d)]++
		if d.MQTTProtocolVersion != 5 || d.Protocol != 6 || d.DestinationIPv4Address != "127.0.0.1" {
			t.Errorf("flow %s: protocol version %d, IP protocol %d, destination %q", keyOf(d), d.MQTTProtocolVersion, d.Protocol, d.DestinationIPv4Address)
		}
		if d.FlowStart.IsZero() || d.FlowEndNs < d.FlowStartNs || d.OctetDeltaCount == 0 {
			t.Errorf("flow %s: start %v, start/end ns %d/%d, %d octets", keyOf(d), d.FlowStart, d.FlowStartNs, d.FlowEndNs, d.OctetDeltaCount)
		}
		wantSource := "none"
		if d.MQTTCorrelationData != "" {
			wantSource = "correlationData"
		}
		if d.MQTTCorrelationSource != wantSource {
			t.Errorf("flow %s: correlation source %q", keyOf(d), d.MQTTCorrelationSource)
		}
	}
	var lost, unexpected []string
	total := 0
	for k, n := range want {
		total += n
		if got[k] < n {
			lost = append(lost, fmt.Sprintf("%d× %s", n-got[k], k))
		}
	}
	for k, n := range got {
		if want[k] < n {
			unexpected = append(unexpected, fmt.Sprintf("%d× %s", n-want[k], k))
		}
	}
	sort.Strings(lost)
	sort.Strings(unexpected)
	summary := func(m map[flowKey]int) string {
		c := map[string]int{}
		for k, n := range m {
			name := k.Type
			if k.Type == "PUBLISH" {
				name = fmt.Sprintf("PUBLISH QoS %d", k.QoS)
				if k.SrcID == flow.BrokerClientID {
					name += " from the broker"
				}
			}
			c[name] += n
		}
		return fmt.Sprint(c)
	}
	if len(lost) > 0 || len(unexpected) > 0 {
		t.Errorf("stored %d flows, expected %d\n got  %s\n want %s\n%d lost:\n  %s\n%d unexpected:\n  %s",
			len(docs), total, summary(got), summary(want), len(lost), strings.Join(lost, "\n  "), len(unexpected), strings.Join(unexpected, "\n  "))
		return
	}
	t.Logf("stored exactly the %d expected flows: %s", total, summary(want))
}

// checkChains follows each reading's correlation id through the stored
// flows: sensor → broker → controller → broker → actuator → broker →
// controller, in that order of start time, and nowhere else.
func checkChains(t *testing.T, rep *plant.Report, docs []flow.Document) {
	t.Helper()
	byCorr := map[string][]flow.Document{}
	for _, d := range docs {
		if d.MQTTCorrelationData != "" {
			byCorr[d.MQTTCorrelationData] = append(byCorr[d.MQTTCorrelationData], d)
		}
	}
	if len(byCorr) != len(rep.Chains) {
		t.Errorf("%d correlation ids stored, %d readings made", len(byCorr), len(rep.Chains))
	}
	for _, ch := range rep.Chains {
		fl := byCorr[string(ch.CorrelationData)]
		sort.Slice(fl, func(i, j int) bool { return fl[i].FlowStartNs < fl[j].FlowStartNs })
		want := []string{
			ch.Sensor.ClientID + "→broker " + ch.Sensor.Topic,
			"broker→" + ch.Controller + " " + ch.Sensor.Topic,
			ch.Controller + "→broker " + ch.Actuator.ToggleTopic,
			"broker→" + ch.Actuator.ClientID + " " + ch.Actuator.ToggleTopic,
			ch.Actuator.ClientID + "→broker " + ch.Actuator.StateTopic,
			"broker→" + ch.Controller + " " + ch.Actuator.StateTopic,
		}
		var got []string
		for _, d := range fl {
			src, dst := d.MQTTSrcClientID, d.MQTTDstClientID
			if src == flow.BrokerClientID {
				src = "broker"
			}
			if dst == flow.BrokerClientID {
				dst = "broker"
			}
			got = append(got, src+"→"+dst+" "+d.MQTTTopic)
		}
		if !slices.Equal(got, want) {
			t.Errorf("chain %s (round %d, %s):\n got %q\nwant %q", ch.CorrelationData, ch.Round, ch.Sensor.Kind, got, want)
		}
	}
}

// checkProbeLog requires the probe's final counters to show no loss.
func checkProbeLog(t *testing.T, logs string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil || l["message"] != "probe stopped" {
			continue
		}
		for _, f := range []string{"dropped", "lost", "kernel_dropped"} {
			if n, _ := l[f].(float64); n != 0 {
				t.Errorf("probe stopped with %s=%v: %s", f, l[f], sc.Text())
			}
		}
		return
	}
	t.Errorf("mission never logged \"probe stopped\":\n%s", logs)
}

// checkQuery asks `mission query --count` what a user would see.
func checkQuery(t *testing.T, dataDir string, want int) {
	t.Helper()
	out, err := exec.Command(missionBin, "--log-level", "warn", "query", "--data-dir", dataDir, "--count").Output()
	if err != nil {
		t.Fatalf("mission query --count: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(want) {
		t.Errorf("mission query --count printed %q, want %d", got, want)
	}
}

// liveMission is `mission all-in-one` capturing live on lo, as the
// end-to-end tests run it.
type liveMission struct {
	cmd    *exec.Cmd
	logs   *lockedBuffer
	exited chan error
}

// startLiveMission starts mission all-in-one on lo for the broker's port
// (extra flags appended) and waits until it captures. It is killed at the
// end of the test if it still runs.
func startLiveMission(t *testing.T, ctx context.Context, port int, dataDir string, extra ...string) *liveMission {
	t.Helper()
	args := append([]string{"--log-format", "json", "all-in-one", "--interface", "lo",
		"--filter", fmt.Sprintf("tcp port %d", port), "--mqtt-ports", strconv.Itoa(port), "--data-dir", dataDir}, extra...)
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
	waitLog(t, m.logs, m.exited, "capturing", 30*time.Second)
	return m
}

// stop lets the last packets reach the probe, stops mission with SIGINT as
// a user would, checks its shutdown log line and returns its log.
func (m *liveMission) stop(t *testing.T, what string) string {
	t.Helper()
	time.Sleep(time.Second)
	if err := m.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.exited:
		if err != nil {
			t.Fatalf("%s: mission exited with %v:\n%s", what, err, m.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: mission did not stop within 30 s of SIGINT:\n%s", what, m.logs.String())
	}
	logs := m.logs.String()
	checkProbeLog(t, logs)
	return logs
}

func waitLog(t *testing.T, logs *lockedBuffer, exited <-chan error, s string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for !strings.Contains(logs.String(), s) {
		select {
		case err := <-exited:
			t.Fatalf("mission exited (%v) before logging %q:\n%s", err, s, logs.String())
		case <-deadline:
			t.Fatalf("mission did not log %q within %v:\n%s", s, d, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
