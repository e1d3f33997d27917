package command

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// run runs mission in process with args and returns what it printed on
// stdout.
func run(t *testing.T, args ...string) string {
	t.Helper()
	var out, errs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := New("test", &out, &errs).RunContext(ctx, append([]string{"mission", "--log-level", "warn"}, args...))
	require.NoError(t, err, "mission %v\nstderr: %s", args, errs.String())
	return out.String()
}

// flowLine is what the tests read back of a JSON-lines flow.
type flowLine struct {
	Type  string    `json:"mqttControlTypeName"`
	Src   string    `json:"mqttSrcClientId"`
	Topic string    `json:"mqttTopic"`
	Start time.Time `json:"flowStartNanoseconds"`
	Corr  string    `json:"mqttCorrelationData"`
}

func parseLines(t *testing.T, s string) []flowLine {
	t.Helper()
	var out []flowLine
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var f flowLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &f), sc.Text())
		out = append(out, f)
	}
	return out
}

// storedLine reads the extended JSON the query command prints.
type storedLine struct {
	Type  string `json:"mqttControlTypeName"`
	Start struct {
		Date string `json:"$date"`
	} `json:"flowStartNanoseconds"`
}

// fixture is the shipped sample capture, as JSON lines (the probe's
// --stdout), as an IPFIX file (--ipfix-file) and stored by all-in-one in
// an embedded data directory: the three flow sources of mine and detect.
type fixture struct {
	dir, jsonl, ipfix, data string
	flows                   []flowLine
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	sample, err := filepath.Abs("../../testdata/sample.pcap")
	require.NoError(t, err)
	dir := t.TempDir()
	f := fixture{dir: dir, jsonl: filepath.Join(dir, "flows.jsonl"), ipfix: filepath.Join(dir, "flows.ipfix"), data: filepath.Join(dir, "data")}
	out := run(t, "probe", "--read", sample, "--stdout", "--ipfix-file", f.ipfix)
	require.NoError(t, os.WriteFile(f.jsonl, []byte(out), 0o644))
	f.flows = parseLines(t, out)
	require.NotEmpty(t, f.flows)
	summary := run(t, "all-in-one", "--read", sample, "--data-dir", f.data)
	require.Contains(t, summary, "mission all-in-one: "+strconv.Itoa(len(f.flows))+" flows from")
	return f
}

func TestQuery(t *testing.T) {
	f := newFixture(t)
	byType := map[string]int{}
	for _, fl := range f.flows {
		byType[fl.Type]++
	}
	sorted := append([]flowLine(nil), f.flows...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Start.Before(sorted[j].Start) })
	mid := sorted[len(sorted)/2].Start
	late := sorted[len(sorted)*3/4].Start
	inRange := func(from, to time.Time, typ string) int {
		n := 0
		for _, fl := range f.flows {
			if (from.IsZero() || !fl.Start.Before(from)) && (to.IsZero() || fl.Start.Before(to)) && (typ == "" || fl.Type == typ) {
				n++
			}
		}
		return n
	}
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	store := []string{"query", "--data-dir", f.data}

	t.Run("count", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want int
		}{
			{"all", nil, len(f.flows)},
			{"filter", []string{`{"mqttControlTypeName": "PUBLISH"}`}, byType["PUBLISH"]},
			{"from", []string{"--from", ts(mid)}, inRange(mid, time.Time{}, "")},
			{"to", []string{"--to", ts(mid)}, inRange(time.Time{}, mid, "")},
			{"from and to", []string{"--from", ts(mid), "--to", ts(late)}, inRange(mid, late, "")},
			{"range and filter", []string{"--from", ts(mid), "--to", ts(late), `{"mqttControlTypeName": "PUBLISH"}`}, inRange(mid, late, "PUBLISH")},
			{"empty range", []string{"--from", ts(late), "--to", ts(mid)}, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append(append(append([]string{}, store...), "--count"), tc.args...)
				require.Equal(t, strconv.Itoa(tc.want), strings.TrimSpace(run(t, args...)))
			})
		}
	})

	t.Run("count-by", func(t *testing.T) {
		out := run(t, append(store, "--count-by", "mqttControlTypeName")...)
		got := map[string]int{}
		last := -1
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var row struct {
				ID    string `json:"_id"`
				Count int    `json:"count"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &row), line)
			got[row.ID] = row.Count
			require.True(t, last < 0 || row.Count <= last, "sorted by count, descending: %s", out)
			last = row.Count
		}
		require.Equal(t, byType, got)
	})

	t.Run("limit and order", func(t *testing.T) {
		out := run(t, append(store, "--limit", "3", `{"mqttControlTypeName": "PUBLISH"}`)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 3)
		var prev string
		for _, l := range lines {
			var d storedLine
			require.NoError(t, json.Unmarshal([]byte(l), &d), l)
			require.Equal(t, "PUBLISH", d.Type)
			require.GreaterOrEqual(t, d.Start.Date, prev, "sorted by start time")
			prev = d.Start.Date
		}
	})

	t.Run("bad filter", func(t *testing.T) {
		var out, errs bytes.Buffer
		err := New("test", &out, &errs).Run([]string{"mission", "query", "--data-dir", f.data, "{not json"})
		require.ErrorContains(t, err, "not a JSON query document")
	})

	t.Run("no database", func(t *testing.T) {
		var out, errs bytes.Buffer
		err := New("test", &out, &errs).Run([]string{"mission", "query", "--data-dir", filepath.Join(f.dir, "nothing")})
		require.ErrorContains(t, err, "--mongo-url")
	})
}

// TestMineAndDetectFromEverySource learns a model from each of the three
// flow sources: they must see the same flows, so the same cases and the
// same model; detection over the learned traffic raises nothing from any
// source, and an intruder's flow raises unknown-client.
func TestMineAndDetectFromEverySource(t *testing.T) {
	f := newFixture(t)
	cases := map[string]bool{}
	for _, fl := range f.flows {
		if fl.Type == "PUBLISH" && fl.Corr != "" {
			cases[fl.Corr] = true
		}
	}
	sources := []struct {
		name string
		args []string
	}{
		{"jsonl", []string{"--jsonl", f.jsonl}},
		{"ipfix", []string{"--ipfix", f.ipfix}},
		{"store", []string{"--data-dir", f.data}},
	}
	var models []string
	for _, src := range sources {
		t.Run("mine from "+src.name, func(t *testing.T) {
			out := filepath.Join(f.dir, "mined-"+src.name)
			var report struct {
				Flows int      `json:"flows"`
				Cases int      `json:"cases"`
				Files []string `json:"files"`
			}
			require.NoError(t, json.Unmarshal([]byte(run(t, append([]string{"mine", "--out", out}, src.args...)...)), &report))
			require.Equal(t, len(f.flows), report.Flows)
			require.Equal(t, len(cases), report.Cases)
			for _, name := range []string{"events.xes", "events.csv", "dfg.dot", "model.json"} {
				fi, err := os.Stat(filepath.Join(out, name))
				require.NoError(t, err)
				require.Greater(t, fi.Size(), int64(100), name)
			}
			m, err := os.ReadFile(filepath.Join(out, "model.json"))
			require.NoError(t, err)
			models = append(models, string(m))
		})
	}
	require.Len(t, models, len(sources))
	for i := 1; i < len(models); i++ {
		require.JSONEq(t, models[0], models[i], "%s and %s give the same model", sources[0].name, sources[i].name)
	}
	model := filepath.Join(f.dir, "mined-jsonl", "model.json")
	for _, src := range sources {
		t.Run("detect from "+src.name, func(t *testing.T) {
			require.Empty(t, strings.TrimSpace(run(t, append([]string{"detect", "--model", model}, src.args...)...)),
				"no alert on the traffic the model was learned from")
		})
	}

	t.Run("detect an intruder", func(t *testing.T) {
		// An intruder toggles the fire alarm directly, with a made-up correlation id.
		attack := `{"sourceIPv4Address":"10.9.9.9","sourceTransportPort":40000,"destinationIPv4Address":"127.0.0.1","destinationTransportPort":1883,"protocol":6,` +
			`"flowStartNanoseconds":"2026-11-25T23:00:00Z","flowEndNanoseconds":"2026-11-25T23:00:00Z","flowStartNs":0,"flowEndNs":0,"flowDurationMicroseconds":0,` +
			`"packetDeltaCount":4,"octetDeltaCount":60,"flowEndReason":"end of flow","flowId":77,"mqttTopic":"plant/actuators/fireAlarm/toggleState",` +
			`"mqttPacketId":1,"mqttQoS":2,"mqttControlType":3,"mqttControlTypeName":"PUBLISH","mqttSrcClientId":"intruder",` +
			`"mqttDstClientId":"Unknown client, probably a broker.","mqttCorrelationData":"deadbeef","mqttCorrelationSource":"correlationData",` +
			`"mqttRetain":false,"mqttDup":false,"mqttPayloadLength":4,"observationDomainId":1}` + "\n"
		path := filepath.Join(f.dir, "attack.jsonl")
		require.NoError(t, os.WriteFile(path, []byte(attack), 0o644))
		out := run(t, "detect", "--model", model, "--jsonl", path)
		checks := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var a map[string]any
			require.NoError(t, json.Unmarshal([]byte(line), &a), line)
			checks[a["check"].(string)] = true
			require.Equal(t, "intruder", a["client"])
		}
		require.True(t, checks["unknown-client"], "alerts: %s", out)
	})

	t.Run("time range", func(t *testing.T) {
		// Only the flows before the first PUBLISH: nothing to mine.
		first := time.Time{}
		for _, fl := range f.flows {
			if fl.Type == "PUBLISH" && (first.IsZero() || fl.Start.Before(first)) {
				first = fl.Start
			}
		}
		var out, errs bytes.Buffer
		err := New("test", &out, &errs).Run([]string{"mission", "mine", "--jsonl", f.jsonl, "--out", filepath.Join(f.dir, "none"),
			"--to", first.Format(time.RFC3339Nano)})
		require.ErrorContains(t, err, "nothing to mine")
	})
}
