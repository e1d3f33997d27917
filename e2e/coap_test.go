package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/coapplant"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/mining"
)

// The CoAP plant's end-to-end run: a learning period and a detection
// period (fresh normal traffic with another seed, and the attack).
const (
	coapLearnFor  = 15 * time.Second
	coapDetectFor = 10 * time.Second
	coapAttackAt  = 4 * time.Second
)

// The plant runs in its own /24, apart from internal/coapplant's tests
// (127.0.1.0/24), which may run at the same time: the capture takes only
// the server's address and port.
var (
	coapNetwork = netip.MustParseAddr("127.0.3.0")
	coapServer  = netip.MustParseAddr("127.0.3.1")
)

// coapRun is one live recording of the CoAP plant by `mission all-in-one`.
type coapRun struct {
	dataDir string
	rep     *coapplant.Report
	attack  *coapplant.AttackReport
	flows   []flow.Document
	alerts  []storedAlert // the alerts collection (live detection)
}

// TestCoAPEndToEnd runs the CoAP plant (internal/coapplant) on loopback,
// captured live by `mission all-in-one` into its embedded store: every
// exchange the plant made is stored as exactly one CoAP flow (by device,
// kind, method, path, endpoints, type, response code, Observe). `mission
// mine --names` learns a model from that period with exactly the plant's
// activities; a second period of normal traffic (another seed) with an
// unknown client's PUTs and DELETEs on the actuators is recorded by
// `mission all-in-one --model` and checked again by `mission detect`: the
// attack's flows raise alerts (unknown client, unknown activity, unusual
// method), the normal flows none, live and offline alike.
func TestCoAPEndToEnd(t *testing.T) {
	mqtttest.RequireRoot(t)
	began := time.Now()
	port := freeUDPPort(t, coapServer.String())

	learn := recordCoAPRun(t, port, 1, coapLearnFor, "", false)
	checkCoAPFlows(t, "learning", learn)

	names := filepath.Join(t.TempDir(), "names")
	f, err := os.Create(names)
	if err != nil {
		t.Fatal(err)
	}
	if err := coapplant.WriteNames(f, learn.rep.Devices); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	mined := filepath.Join(t.TempDir(), "mined")
	runMission(t, "mine", "--data-dir", learn.dataDir, "--names", names, "--out", mined)
	model := filepath.Join(mined, "model.json")
	checkCoAPModel(t, model, learn.rep)

	run := recordCoAPRun(t, port, 2, coapDetectFor, model, true)
	checkCoAPFlows(t, "detection", run)
	alerts := detectCoAP(t, model, names, run.dataDir)
	checkCoAPAlerts(t, "mission detect", run, alerts)
	// Live detection (all-in-one --model, names from the model) raised the same.
	var live []mining.Alert
	for _, a := range run.alerts {
		live = append(live, mining.Alert{Check: mining.Check(a.Check), Severity: mining.Severity(a.Severity), Client: a.Client, Topic: a.Topic, Flows: a.Flows, Message: a.Message})
	}
	checkCoAPAlerts(t, "all-in-one --model", run, live)
	if got, want := alertSet(live), alertSet(alerts); !slices.Equal(got, want) {
		t.Errorf("live alerts differ from mission detect's:\n live   %q\n detect %q", got, want)
	}
	t.Logf("whole test %s", time.Since(began).Round(time.Second))
}

// freeUDPPort returns a UDP port that was free on addr.
func freeUDPPort(t *testing.T, addr string) int {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// recordCoAPRun runs the plant (seed, for d, the attack coapAttackAt into
// the run if attack) captured live by `mission all-in-one` (detecting
// with model if set) and reads back the stored flows and alerts.
func recordCoAPRun(t *testing.T, port int, seed uint64, d time.Duration, model string, attack bool) *coapRun {
	t.Helper()
	r := &coapRun{dataDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	var extra []string
	if model != "" {
		extra = []string{"--model", model}
	}
	m := startLiveCoAPMission(t, ctx, port, r.dataDir, extra...)
	if model != "" {
		waitLog(t, m.logs, m.exited, "detection enabled", 5*time.Second)
	}

	p, err := coapplant.Start(ctx, coapplant.Config{Network: coapNetwork, Port: uint16(port), Duration: d, Seed: seed})
	if err != nil {
		t.Fatalf("plant: %v", err)
	}
	if attack {
		time.Sleep(coapAttackAt)
		ar, err := p.Attack(ctx, coapplant.AttackConfig{Rounds: 3, Over: time.Second})
		if err != nil {
			t.Errorf("attack: %v", err)
		}
		r.attack = &ar
	}
	if err := p.Run(ctx); err != nil {
		t.Fatalf("plant: %v", err)
	}
	rep, err := p.Stop(context.WithoutCancel(ctx))
	if err != nil {
		t.Fatalf("plant: %v", err)
	}
	r.rep = rep
	m.stop(t, fmt.Sprintf("coap seed %d", seed))
	r.flows, r.alerts, _ = readStore(t, r.dataDir)
	return r
}

// startLiveCoAPMission starts mission all-in-one on lo for CoAP on the
// server's UDP port and waits until it captures.
func startLiveCoAPMission(t *testing.T, ctx context.Context, port int, dataDir string, extra ...string) *liveMission {
	t.Helper()
	args := append([]string{"--log-format", "json", "all-in-one", "--interface", "lo",
		"--filter", fmt.Sprintf("host %s and udp port %d", coapServer, port), "--protocol", "coap", "--coap-ports", strconv.Itoa(port), "--data-dir", dataDir}, extra...)
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
	// The packet socket is open; give it a moment to see packets.
	time.Sleep(200 * time.Millisecond)
	return m
}

// coapFlowKey is what an exchange and its stored flow share.
type coapFlowKey struct {
	From     string // device name (from the source address)
	Kind     coapplant.Kind
	Src, Dst string // address:port
	Type     string
	Method   string
	Path     string
	Response string
	Observe  string // "" when absent
	Packets  uint64
}

func (k coapFlowKey) String() string {
	s := fmt.Sprintf("%s %s %s→%s %s %s %s → %s", k.From, k.Kind, k.Src, k.Dst, k.Type, k.Method, k.Path, k.Response)
	if k.Observe != "" {
		s += " Observe " + k.Observe
	}
	return s + fmt.Sprintf(" [%d packets]", k.Packets)
}

func exchangeKey(x coapplant.Exchange) coapFlowKey {
	k := coapFlowKey{From: x.From, Kind: x.Kind, Src: x.FromAddr.String(), Dst: x.To.String(), Type: x.Type,
		Method: x.Method, Path: x.Path, Response: x.Response, Packets: uint64(2 + x.Retransmissions)}
	if x.Type == "NON" {
		k.Packets-- // a NON notification is one message
	}
	if x.HasObserve {
		k.Observe = strconv.FormatUint(uint64(x.Observe), 10)
	}
	return k
}

func coapDocKey(d flow.Document, byAddr map[string]string) coapFlowKey {
	k := coapFlowKey{From: byAddr[d.SourceIPv4Address], Kind: coapplant.KindRequest,
		Src:  netip.AddrPortFrom(netip.MustParseAddr(d.SourceIPv4Address), d.SourceTransportPort).String(),
		Dst:  netip.AddrPortFrom(netip.MustParseAddr(d.DestinationIPv4Address), d.DestinationTransportPort).String(),
		Type: d.CoAPType, Method: d.CoAPMethod, Path: d.CoAPURIPath, Response: d.CoAPResponseCode, Packets: d.PacketDeltaCount}
	if k.From == "" {
		k.From = d.SourceIPv4Address
	}
	if strings.HasPrefix(d.CoAPCode, "2.") { // a notification: the server's response on the registration's token
		k.Kind = coapplant.KindNotification
	}
	if d.CoAPObserve != nil {
		k.Observe = strconv.FormatUint(uint64(*d.CoAPObserve), 10)
	}
	return k
}

// checkCoAPFlows requires the stored flows to be exactly the plant's
// exchanges, one flow each, and logs the counts by device, method and path.
func checkCoAPFlows(t *testing.T, what string, r *coapRun) {
	t.Helper()
	byAddr := map[string]string{}
	for _, d := range r.rep.Devices {
		byAddr[d.Addr.String()] = d.Name
	}
	want, got := map[coapFlowKey]int{}, map[coapFlowKey]int{}
	for _, x := range r.rep.Exchanges {
		if x.Err != nil {
			t.Errorf("%s: the plant's exchange %s failed: %v", what, x.Key(), x.Err)
		}
		want[exchangeKey(x)]++
	}
	for _, d := range r.flows {
		if !d.IsCoAP() || d.Protocol != 17 {
			t.Errorf("%s: stored a flow that is not CoAP over UDP: %+v", what, d)
			continue
		}
		if d.FlowEndReason != "end of flow" || d.CoAPRetransmissions == nil || *d.CoAPRetransmissions != 0 {
			t.Errorf("%s: flow %s: end reason %q, retransmissions %v", what, coapDocKey(d, byAddr), d.FlowEndReason, d.CoAPRetransmissions)
		}
		got[coapDocKey(d, byAddr)]++
	}
	var lost, extra []string
	for k, n := range want {
		if got[k] < n {
			lost = append(lost, fmt.Sprintf("%d× %s", n-got[k], k))
		}
	}
	for k, n := range got {
		if want[k] < n {
			extra = append(extra, fmt.Sprintf("%d× %s", n-want[k], k))
		}
	}
	sort.Strings(lost)
	sort.Strings(extra)
	if len(lost) > 0 || len(extra) > 0 {
		t.Errorf("%s: stored %d CoAP flows for %d exchanges\n%d lost:\n  %s\n%d unexpected:\n  %s",
			what, len(r.flows), len(r.rep.Exchanges), len(lost), strings.Join(lost, "\n  "), len(extra), strings.Join(extra, "\n  "))
	}
	// The summary the brief asks for: stored flows by device, method, path.
	counts := map[coapplant.Key]int{}
	for _, d := range r.flows {
		k := coapDocKey(d, byAddr)
		counts[coapplant.Key{From: k.From, Kind: k.Kind, Method: k.Method, Path: k.Path}]++
	}
	var lines []string
	for k, n := range r.rep.Counts() {
		if counts[k] != n {
			t.Errorf("%s: %s: %d stored flows, %d exchanges", what, k, counts[k], n)
		}
		lines = append(lines, fmt.Sprintf("%4d %s", n, k))
	}
	sort.Strings(lines)
	t.Logf("%s: %d exchanges, %d CoAP flows stored:\n%s", what, len(r.rep.Exchanges), len(r.flows), strings.Join(lines, "\n"))
}

// checkCoAPModel requires the mined model to know exactly the plant's
// activities: each device's requests by name, the server's notifications.
func checkCoAPModel(t *testing.T, path string, rep *coapplant.Report) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := mining.ReadModel(f)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for k := range rep.Counts() {
		want[mining.Activity(k.From, coapTopic(k))] = true
	}
	var got, wantList []string
	for _, a := range m.Activities {
		got = append(got, a.Activity)
	}
	for a := range want {
		wantList = append(wantList, a)
	}
	slices.Sort(got)
	slices.Sort(wantList)
	if !slices.Equal(got, wantList) {
		t.Errorf("mined activities:\n got %q\nwant %q", got, wantList)
	}
	t.Logf("mined %d activities: %q", len(got), got)
}

// coapTopic is the second half of an exchange's activity ("client →
// METHOD /path"): "METHOD /path" for a request, "NOTIFY /path" for a
// notification (the server's act, not a request of the observer).
func coapTopic(k coapplant.Key) string {
	if k.Kind == coapplant.KindNotification {
		return "NOTIFY " + k.Path
	}
	return k.Method + " " + k.Path
}

// detectCoAP runs `mission detect` over a run's stored flows.
func detectCoAP(t *testing.T, model, names, dataDir string) []mining.Alert {
	t.Helper()
	out := runMission(t, "detect", "--model", model, "--names", names, "--data-dir", dataDir)
	var alerts []mining.Alert
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var a mining.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("mission detect printed %q: %v", line, err)
		}
		alerts = append(alerts, a)
	}
	return alerts
}

// alertSet is the sorted "check client topic" of each alert, once.
func alertSet(alerts []mining.Alert) []string {
	var out []string
	for _, a := range alerts {
		out = append(out, fmt.Sprintf("%s %s %s", a.Check, a.Client, a.Topic))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkCoAPAlerts requires alerts on the attack (unknown client, its
// unknown activities, the unusual DELETE) and none on the normal flows:
// every alert lists only the attacker's flows and names the attacker (or
// all clients together, for a bound of the whole network).
func checkCoAPAlerts(t *testing.T, what string, r *coapRun, alerts []mining.Alert) {
	t.Helper()
	attacker := r.attack.Device.Addr.String() // in no names file: named by its address
	src := map[uint64]string{}
	for _, d := range r.flows {
		src[d.FlowID] = d.SourceIPv4Address
	}
	attackFlows := 0
	for _, d := range r.flows {
		if d.SourceIPv4Address == attacker {
			attackFlows++
		}
	}
	if attackFlows != len(r.attack.Exchanges) || attackFlows == 0 {
		t.Errorf("%d flows from the attacker stored, it made %d exchanges", attackFlows, len(r.attack.Exchanges))
	}
	raised := map[string]bool{}
	normal := 0
	for _, a := range alerts {
		onAttack := (a.Client == attacker || a.Client == mining.TotalClient) && len(a.Flows) > 0
		for _, id := range a.Flows {
			if src[id] != attacker {
				onAttack = false
			}
		}
		if !onAttack {
			normal++
			t.Errorf("%s: false alarm on normal traffic: %s client %q topic %q flows %v: %s", what, a.Check, a.Client, a.Topic, a.Flows, a.Message)
			continue
		}
		raised[string(a.Check)+" "+a.Topic] = true
		t.Logf("%s: alert %s/%s client %q topic %q: %s", what, a.Check, a.Severity, a.Client, a.Topic, a.Message)
	}
	has := func(check, topic string) bool {
		for k := range raised {
			c, tp, _ := strings.Cut(k, " ")
			if c == check && (topic == "" || tp == topic) {
				return true
			}
		}
		return false
	}
	for _, w := range []struct{ check, topic string }{
		{"unknown-client", ""},
		{"unknown-activity", "PUT /actuators/actuator-1"},
		{"unknown-activity", "DELETE /actuators/actuator-2"},
		{"unusual-method", "DELETE /actuators/actuator-1"},
	} {
		if !has(w.check, w.topic) {
			t.Errorf("%s: no %s alert on the attacker %s (topic %q); raised: %v", what, w.check, attacker, w.topic, raised)
		}
	}
	t.Logf("%s: %d flows (%d of the attack), %d alerts, %d on normal traffic", what, len(r.flows), attackFlows, len(alerts), normal)
}
