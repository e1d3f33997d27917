package command

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/mining"
)

// strictModel mines the sample capture and removes the door sensor and
// its chain from the model, as if it had been trained on a plant without
// it: the sample then raises alerts of several kinds (unknown client and
// activity at once, order-dependent and end-of-case checks later).
func strictModel(t *testing.T, f fixture) string {
	t.Helper()
	out := filepath.Join(f.dir, "mined-strict")
	run(t, "mine", "--out", out, "--jsonl", f.jsonl)
	m, err := mining.ReadModelFile(filepath.Join(out, "model.json"))
	require.NoError(t, err)
	door := mining.Activity("doorSensor", "plant/sensors/door")
	m.Clients = slices.DeleteFunc(m.Clients, func(p mining.ClientProfile) bool { return p.Client == "doorSensor" })
	m.Activities = slices.DeleteFunc(m.Activities, func(a mining.ActivityInfo) bool { return a.Activity == door })
	m.Start = slices.DeleteFunc(m.Start, func(c mining.Count) bool { return c.Activity == door })
	// The fire alarm's answer never directly follows its toggle delivery.
	toggle := mining.Activity(mining.Broker, "plant/actuators/fireAlarm/toggleState")
	m.DirectlyFollows = slices.DeleteFunc(m.DirectlyFollows, func(e mining.Edge) bool { return e.From == toggle })
	path := filepath.Join(f.dir, "strict.json")
	w, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, m.WriteJSON(w))
	require.NoError(t, w.Close())
	return path
}

// eveKeys returns what identifies each alert of an EVE file: check
// (signature), client, topic, case and flow time, sorted.
func eveKeys(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var keys []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			Timestamp string `json:"timestamp"`
			EventType string `json:"event_type"`
			FlowID    uint64 `json:"flow_id"`
			Alert     struct {
				SignatureID int `json:"signature_id"`
			} `json:"alert"`
			Mission struct {
				Check, Client, Topic, Case string
			} `json:"mission"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), sc.Text())
		require.Equal(t, "alert", ev.EventType)
		keys = append(keys, strings.Join([]string{ev.Mission.Check, strconv.Itoa(ev.Alert.SignatureID), ev.Mission.Client,
			ev.Mission.Topic, ev.Mission.Case, ev.Timestamp}, "|"))
		require.NotZero(t, ev.FlowID) // flow ids differ between probe runs: not compared
	}
	slices.Sort(keys)
	return keys
}

// One clock: detect over a flow file, all-in-one reading the capture and
// collect reading the probe's IPFIX file raise the same alerts (by check,
// client, topic, case and flow time) and the same incidents.
func TestSameAlertsOfflineAndLive(t *testing.T) {
	f := newFixture(t)
	model := strictModel(t, f)
	sample, err := filepath.Abs("../../testdata/sample.pcap")
	require.NoError(t, err)

	eveDetect := filepath.Join(f.dir, "detect.eve.json")
	alertsOut := run(t, "detect", "--jsonl", f.jsonl, "--model", model, "--eve-log", eveDetect)
	incOut := run(t, "detect", "--jsonl", f.jsonl, "--model", model, "--incidents")

	eveAIO := filepath.Join(f.dir, "aio.eve.json")
	aioData := filepath.Join(f.dir, "aio")
	run(t, "all-in-one", "--read", sample, "--model", model, "--data-dir", aioData, "--eve-log", eveAIO)

	eveCollect := filepath.Join(f.dir, "collect.eve.json")
	colData := filepath.Join(f.dir, "collect")
	run(t, "collect", "--read", f.ipfix, "--model", model, "--data-dir", colData, "--eve-log", eveCollect)

	want := eveKeys(t, eveDetect)
	require.NotEmpty(t, want)
	checks := map[string]bool{}
	for _, k := range want {
		checks[strings.SplitN(k, "|", 2)[0]] = true
	}
	require.True(t, checks["unknown-client"] && checks["unknown-activity"] && checks["directly-follows"], "%v", checks)
	require.Len(t, strings.Split(strings.TrimSpace(alertsOut), "\n"), len(want))
	require.Equal(t, want, eveKeys(t, eveAIO), "all-in-one --read --model")
	require.Equal(t, want, eveKeys(t, eveCollect), "collect --read --model")

	// Incidents: the same ids, in the incidents collection of both
	// stores as mission detect --incidents prints them.
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(incOut), "\n") {
		var inc mining.Incident
		require.NoError(t, json.Unmarshal([]byte(l), &inc), l)
		require.True(t, inc.Closed)
		require.NotEmpty(t, inc.Message)
		ids = append(ids, inc.ID)
	}
	require.NotEmpty(t, ids)
	require.Less(t, len(ids), len(want), "alerts grouped")
	slices.Sort(ids)
	for _, data := range []string{aioData, colData} {
		out := run(t, "query", "--data-dir", data, "--collection", "incidents")
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var doc struct {
				ID     string `json:"_id"`
				Closed bool   `json:"closed"`
			}
			require.NoError(t, json.Unmarshal([]byte(l), &doc), l)
			require.True(t, doc.Closed, l)
			got = append(got, doc.ID)
		}
		slices.Sort(got)
		require.Equal(t, ids, got, data)
	}
}
