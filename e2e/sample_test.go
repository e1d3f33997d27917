package e2e

import (
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/mission-ids/mission/flow"
)

// TestSampleReplay replays testdata/sample.pcap (see testdata/README.md)
// with `mission all-in-one --read` and no port flags, as a newcomer would,
// and checks the stored flows against how the sample was made: 11 clients,
// 6 rounds × 5 sensors, each reading a chain of five complete QoS 2
// PUBLISH flows. Needs neither root nor a broker.
func TestSampleReplay(t *testing.T) {
	dataDir := t.TempDir()
	out, err := exec.Command(missionBin, "all-in-one", "--read", "../testdata/sample.pcap", "--data-dir", dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("mission all-in-one --read: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "flows from ../testdata/sample.pcap") {
		t.Errorf("no summary printed:\n%s", out)
	}
	docs := storedFlows(t, dataDir)

	const clients, subscribes, chains = 11, 6, 6 * 5
	types := map[string]int{}
	ids := map[string]bool{}
	byCorr := map[string][]flow.Document{}
	for _, d := range docs {
		types[d.MQTTControlTypeName]++
		if d.FlowEndReason != "end of flow" || d.MQTTProtocolVersion != 5 || d.DestinationTransportPort == 0 {
			t.Errorf("flow %s: end %q, version %d", keyOf(d), d.FlowEndReason, d.MQTTProtocolVersion)
		}
		if d.MQTTSrcClientID != flow.BrokerClientID {
			ids[d.MQTTSrcClientID] = true
		}
		if d.MQTTControlTypeName == "PUBLISH" {
			if d.MQTTQoS != 2 || d.PacketDeltaCount != 4 || d.MQTTCorrelationData == "" {
				t.Errorf("flow %s: QoS %d, %d packets", keyOf(d), d.MQTTQoS, d.PacketDeltaCount)
			}
			byCorr[d.MQTTCorrelationData] = append(byCorr[d.MQTTCorrelationData], d)
		}
	}
	want := map[string]int{"CONNECT": clients, "DISCONNECT": clients, "SUBSCRIBE": subscribes, "PUBLISH": 5 * chains}
	if len(types) != len(want) || len(docs) != clients*2+subscribes+5*chains {
		t.Errorf("flows by type %v, want %v", types, want)
	}
	for k, n := range want {
		if types[k] != n {
			t.Errorf("%d %s flows, want %d", types[k], k, n)
		}
	}
	if len(ids) != clients {
		t.Errorf("%d client ids, want %d: %v", len(ids), clients, ids)
	}
	if len(byCorr) != chains {
		t.Errorf("%d correlation ids, want %d", len(byCorr), chains)
	}
	broker := func(s string) string {
		if s == flow.BrokerClientID {
			return "broker"
		}
		return s
	}
	for corr, fl := range byCorr {
		sort.Slice(fl, func(i, j int) bool { return fl[i].FlowStartNs < fl[j].FlowStartNs })
		var hops []string
		for _, d := range fl {
			hops = append(hops, broker(d.MQTTSrcClientID)+"→"+broker(d.MQTTDstClientID)+" "+d.MQTTTopic)
		}
		if len(fl) != 5 {
			t.Errorf("correlation %s on %d flows: %q", corr, len(fl), hops)
			continue
		}
		sensor, kind := fl[0].MQTTSrcClientID, strings.TrimPrefix(fl[0].MQTTTopic, "plant/sensors/")
		act := fl[3].MQTTDstClientID
		wantHops := []string{
			sensor + "→broker plant/sensors/" + kind,
			"broker→controller plant/sensors/" + kind,
			"controller→broker plant/actuators/" + act + "/toggleState",
			"broker→" + act + " plant/actuators/" + act + "/toggleState",
			act + "→broker plant/actuators/" + act + "/state",
		}
		pairs := map[string]string{"temperature": "thermostat", "motion": "led", "window": "shutter", "door": "doorOpener", "smoke": "fireAlarm"}
		if sensor != kind+"Sensor" || pairs[kind] != act || strings.Join(hops, "|") != strings.Join(wantHops, "|") {
			t.Errorf("correlation %s:\n got %q\nwant %q (%s → %s)", corr, hops, wantHops, kind, pairs[kind])
		}
	}
}
