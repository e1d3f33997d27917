package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/coapplant"
	"github.com/mission-ids/mission/internal/mqtttest"
)

// The CoAP plant's end-to-end run: a learning period and a detection
// period (fresh normal traffic with another seed, and the attack).
const (
	coapLearnFor  = 15 * time.Second
	coapDetectFor = 10 * time.Second
	coapAttackAt  = 4 * time.Second
)

// coapRun is one live recording of the CoAP plant by `mission all-in-one`.
type coapRun struct {
	dataDir string
	rep     *coapplant.Report
	attack  *coapplant.AttackReport
	flows   []flow.Document
}

// TestCoAPEndToEnd runs the CoAP plant (internal/coapplant) on loopback,
// captured live by `mission all-in-one` into its embedded store: every
// exchange the plant made is stored as exactly one CoAP flow (by device,
// kind, method, path, endpoints, type, response code, Observe), in a
// learning period and in a second period of normal traffic (another
// seed) with an unknown client's PUTs and DELETEs on the actuators.
func TestCoAPEndToEnd(t *testing.T) {
	mqtttest.RequireRoot(t)
	began := time.Now()
	port := freeUDPPort(t, "127.0.1.1")

	learn := recordCoAPRun(t, port, 1, coapLearnFor, false)
	checkCoAPFlows(t, "learning", learn)

	run := recordCoAPRun(t, port, 2, coapDetectFor, true)
	checkCoAPFlows(t, "detection", run)
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
// the run if attack) captured live by `mission all-in-one` and reads back
// the stored flows.
func recordCoAPRun(t *testing.T, port int, seed uint64, d time.Duration, attack bool) *coapRun {
	t.Helper()
	r := &coapRun{dataDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	m := startLiveCoAPMission(t, ctx, port, r.dataDir)

	p, err := coapplant.Start(ctx, coapplant.Config{Port: uint16(port), Duration: d, Seed: seed})
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
	r.flows, _, _ = readStore(t, r.dataDir)
	return r
}

// startLiveCoAPMission starts mission all-in-one on lo for CoAP on the
// server's UDP port and waits until it captures.
func startLiveCoAPMission(t *testing.T, ctx context.Context, port int, dataDir string) *liveMission {
	t.Helper()
	cmd := exec.CommandContext(ctx, missionBin, "--log-format", "json", "all-in-one", "--interface", "lo",
		"--filter", fmt.Sprintf("udp port %d", port), "--protocol", "coap", "--coap-ports", strconv.Itoa(port), "--data-dir", dataDir)
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
