package mining

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

func TestNamer(t *testing.T) {
	broker := netip.MustParseAddrPort("10.0.0.1:1883")
	client := netip.MustParseAddrPort("10.0.0.9:40001")
	connect := flow.Record{ControlType: flow.Connect, SrcAddr: client.Addr(), SrcPort: client.Port(), DstAddr: broker.Addr(), DstPort: broker.Port()}
	for _, tc := range []struct {
		name     string
		learn    bool
		id       string
		endpoint netip.AddrPort
		want     string
	}{
		{"client id", false, "thermostat", client, "thermostat"},
		{"broker label", false, flow.BrokerClientID, broker, Broker},
		{"no id, unknown endpoint", false, "", client, "10.0.0.9:40001"},
		{"no id, broker endpoint unknown yet", false, "", broker, "10.0.0.1:1883"},
		{"no id, endpoint that received a CONNECT", true, "", broker, Broker},
		{"no id, client endpoint stays a client", true, "", client, "10.0.0.9:40001"},
		{"IPv4-mapped broker endpoint", true, "", netip.AddrPortFrom(netip.AddrFrom16(broker.Addr().As16()), 1883), Broker},
		{"no id, no address", false, "", netip.AddrPort{}, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NewNamer()
			if tc.learn {
				n.Learn(&connect)
			}
			require.Equal(t, tc.want, n.Name(tc.id, tc.endpoint.Addr(), tc.endpoint.Port()))
		})
	}
}

func trainingLog(t testing.TB) *EventLog {
	t.Helper()
	return FromRecords(normalPlant(1, t0, 600))
}

func TestDiscoverDFGRediscoversThePlant(t *testing.T) {
	l := trainingLog(t)
	g := DiscoverDFG(l, DFGOptions{})

	var got []Edge
	for _, e := range g.Edges {
		require.Positive(t, e.Mean, e.From+" → "+e.To)
		require.Positive(t, e.Median)
		require.LessOrEqual(t, e.Min, e.Median)
		require.LessOrEqual(t, e.Median, e.Max)
		got = append(got, Edge{From: e.From, To: e.To})
	}
	require.Equal(t, designedEdges(), got, "exactly the designed chains")

	var starts, ends []string
	for _, p := range plantPairs {
		c := chainActivities(p)
		starts, ends = append(starts, c[0]), append(ends, c[len(c)-1])
	}
	slices.Sort(starts)
	slices.Sort(ends)
	names := func(cs []Count) (out []string) {
		for _, c := range cs {
			out = append(out, c.Activity)
		}
		return out
	}
	require.Equal(t, starts, names(g.Start))
	require.Equal(t, ends, names(g.End))
	require.Len(t, g.Activities, 30)
	total := 0
	for _, s := range g.Start {
		total += s.Count
	}
	require.Equal(t, g.Cases, total)

	// The designed edge durations: sensor → delivery 1–3 ms.
	e, ok := g.Edge(chainActivities(plantPairs[0])[0], chainActivities(plantPairs[0])[1])
	require.True(t, ok)
	require.InDelta(t, float64(2*time.Millisecond), float64(e.Mean), float64(200*time.Microsecond))

	t.Run("filters", func(t *testing.T) {
		f := DiscoverDFG(l, DFGOptions{Activities: chainActivities(plantPairs[1])})
		require.Len(t, f.Activities, 6)
		require.Len(t, f.Edges, 5)
		require.Len(t, f.Start, 1)
		none := DiscoverDFG(l, DFGOptions{MinEdgeCount: g.Cases + 1})
		require.Empty(t, none.Edges)
		require.Len(t, none.Activities, 30)
		few := DiscoverDFG(l, DFGOptions{MinActivityCount: 1 << 30})
		require.Empty(t, few.Activities)
		require.Empty(t, few.Edges)
	})

	t.Run("dot", func(t *testing.T) {
		var b bytes.Buffer
		require.NoError(t, g.WriteDOT(&b))
		dot := b.String()
		require.True(t, strings.HasPrefix(dot, "digraph dfg {"))
		require.True(t, strings.HasSuffix(dot, "}\n"))
		c := chainActivities(plantPairs[0])
		require.Contains(t, dot, fmt.Sprintf("%q -> %q", c[0], c[1]))
		require.Contains(t, dot, fmt.Sprintf("\"@@start\" -> %q", c[0]))
		require.Contains(t, dot, fmt.Sprintf("%q -> \"@@end\"", c[5]))
		require.Equal(t, strings.Count(dot, "{"), strings.Count(dot, "}"))
		// Every quoted string is closed on its line.
		for _, line := range strings.Split(dot, "\n") {
			require.Zero(t, (strings.Count(line, `"`)-strings.Count(line, `\"`))%2, line)
		}
	})
}

func TestDOTQuoting(t *testing.T) {
	require.Equal(t, `"a \"b\" \\ c\nd"`, dotID("a \"b\" \\ c\nd"))
}

// Independent readers for the exports: encoding/xml into minimal structs,
// and encoding/csv.
type xesLog struct {
	XMLName xml.Name   `xml:"log"`
	Version string     `xml:"xes.version,attr"`
	Traces  []xesTrace `xml:"trace"`
}

type xesTrace struct {
	Strings []xesAttrT `xml:"string"`
	Events  []xesEvent `xml:"event"`
}

type xesEvent struct {
	Strings []xesAttrT `xml:"string"`
	Dates   []xesAttrT `xml:"date"`
	Ints    []xesAttrT `xml:"int"`
}

type xesAttrT struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

func attr(as []xesAttrT, key string) string {
	for _, a := range as {
		if a.Key == key {
			return a.Value
		}
	}
	return "\x00missing " + key
}

// row is one expected event, computed from the records without the
// package's event log.
type row struct{ caseID, activity, time, resource, topic, flowID string }

func expectedRows(recs []flow.Record) []row {
	var out []row
	for _, r := range recs {
		if r.ControlType != flow.Publish || len(r.CorrelationData) == 0 {
			continue
		}
		src := r.SrcClientID
		if src == flow.BrokerClientID {
			src = "broker"
		}
		if src == "" {
			src = netip.AddrPortFrom(r.SrcAddr, r.SrcPort).String()
		}
		out = append(out, row{flow.CorrelationText(r.CorrelationData), src + " → " + r.Topic,
			r.Start.UTC().Format(time.RFC3339Nano), src, r.Topic, fmt.Sprint(r.FlowID)})
	}
	sortRows(out)
	return out
}

func sortRows(rs []row) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].caseID != rs[j].caseID {
			return rs[i].caseID < rs[j].caseID
		}
		return rs[i].flowID < rs[j].flowID
	})
}

func normTime(t *testing.T, s string) string {
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err, s)
	return ts.UTC().Format(time.RFC3339Nano)
}

func exportRecords() []flow.Record {
	recs := normalPlant(7, t0, 20)
	// A client without client id and a topic that needs escaping.
	s := newSim(99)
	s.up("", flow.Publish, t0.Add(time.Second), `odd/<&"topic">`, []byte("case <&> \"1\""))
	r := s.recs[0]
	r.SrcClientID = ""
	return append(recs, r)
}

func TestExportXESReadBackIndependently(t *testing.T) {
	recs := exportRecords()
	l := FromRecords(recs)
	var b bytes.Buffer
	require.NoError(t, l.WriteXES(&b))

	var x xesLog
	require.NoError(t, xml.Unmarshal(b.Bytes(), &x))
	require.Equal(t, "1849-2016", x.Version)
	var got []row
	for _, tr := range x.Traces {
		caseID := attr(tr.Strings, "concept:name")
		var prev time.Time
		for _, e := range tr.Events {
			ts := normTime(t, attr(e.Dates, "time:timestamp"))
			tt, _ := time.Parse(time.RFC3339Nano, ts)
			require.False(t, tt.Before(prev), "events of a trace in time order")
			prev = tt
			got = append(got, row{caseID, attr(e.Strings, "concept:name"), ts, attr(e.Strings, "org:resource"),
				attr(e.Strings, "topic"), attr(e.Ints, "flowId")})
		}
	}
	sortRows(got)
	want := expectedRows(recs)
	require.Len(t, got, len(want))
	require.Equal(t, want, got)
	require.Contains(t, got, row{"case <&> \"1\"", "10.0.0.11:" + fmt.Sprint(recs[len(recs)-1].SrcPort) + ` → odd/<&"topic">`,
		t0.Add(time.Second).Format(time.RFC3339Nano), "10.0.0.11:" + fmt.Sprint(recs[len(recs)-1].SrcPort), `odd/<&"topic">`, fmt.Sprint(recs[len(recs)-1].FlowID)})
}

func TestExportCSVReadBackIndependently(t *testing.T) {
	recs := exportRecords()
	l := FromRecords(recs)
	var b bytes.Buffer
	require.NoError(t, l.WriteCSV(&b))
	rows, err := csv.NewReader(&b).ReadAll()
	require.NoError(t, err)
	require.Equal(t, []string{"case:concept:name", "concept:name", "time:timestamp", "org:resource", "topic", "flowId"}, rows[0])
	var got []row
	for _, r := range rows[1:] {
		got = append(got, row{r[0], r[1], normTime(t, r[2]), r[3], r[4], r[5]})
	}
	sortRows(got)
	require.Equal(t, expectedRows(recs), got)
}

func TestReadJSONLinesMatchesRecords(t *testing.T) {
	recs := exportRecords()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i := range recs {
		require.NoError(t, enc.Encode(recs[i].ToDocument()))
		if i == 3 {
			b.WriteString("\n") // empty lines are skipped
		}
	}
	l, err := ReadJSONLines(&b)
	require.NoError(t, err)
	want := FromRecords(recs)
	require.Equal(t, len(want.Events), len(l.Events))
	for i := range want.Events {
		w, g := want.Events[i], l.Events[i]
		require.True(t, w.Time.Equal(g.Time))
		w.Time, g.Time = time.Time{}, time.Time{}
		require.Equal(t, w, g)
	}

	t.Run("malformed line", func(t *testing.T) {
		_, err := ReadJSONLines(strings.NewReader("{}\n{\"mqttTopic\": 5}\n"))
		var le *flow.LineError
		require.ErrorAs(t, err, &le)
		require.Equal(t, 2, le.Line)
		_, err = ReadJSONLines(strings.NewReader(`{"sourceIPv4Address":"nope"}`))
		require.ErrorAs(t, err, &le)
	})
}

func TestLearnModel(t *testing.T) {
	l := trainingLog(t)
	m, err := Learn(l, LearnOptions{})
	require.NoError(t, err)
	require.Len(t, m.Activities, 30)
	require.Len(t, m.DirectlyFollows, 25)
	require.Equal(t, Bounds{6, 6}, m.Skeleton.CaseLength)
	require.Equal(t, []string{"10.0.0.1:1883"}, m.Brokers)
	for _, o := range m.Skeleton.Occurrences {
		require.Equal(t, 1, o.Min, o.Activity)
		require.Equal(t, 1, o.Max, o.Activity)
	}
	// Within a chain everything is equivalent, before or after; across
	// chains never together.
	c := chainActivities(plantPairs[2])
	require.Contains(t, m.Skeleton.AlwaysBefore, Pair{c[4], c[2]})
	require.Contains(t, m.Skeleton.AlwaysAfter, Pair{c[0], c[5]})
	require.NotContains(t, m.Skeleton.AlwaysAfter, Pair{c[5], c[0]})
	require.Contains(t, m.Skeleton.Equivalence, Pair{c[0], c[3]})
	require.Len(t, m.Skeleton.NeverTogether, 5*4/2*36)
	require.Len(t, m.Skeleton.AlwaysBefore, 5*15)
	require.Len(t, m.Skeleton.Equivalence, 5*30)
	require.Len(t, m.Temporal, 5*15)
	require.Equal(t, []string{
		"plant/actuators/doorOpener/state", "plant/actuators/doorOpener/toggleState",
		"plant/actuators/fireAlarm/state", "plant/actuators/fireAlarm/toggleState",
		"plant/actuators/led/state", "plant/actuators/led/toggleState",
		"plant/actuators/shutter/state", "plant/actuators/shutter/toggleState",
		"plant/actuators/thermostat/state", "plant/actuators/thermostat/toggleState",
		"plant/sensors/door", "plant/sensors/motion", "plant/sensors/smoke", "plant/sensors/temperature", "plant/sensors/window",
	}, m.CorrelatedTopics)
	var ctl ClientProfile
	for _, p := range m.Clients {
		if p.Client == controller {
			ctl = p
		}
	}
	require.Equal(t, 1, ctl.Connect)
	require.Equal(t, 1, ctl.Subscribe)
	require.Len(t, ctl.Filters, 10)
	require.False(t, ctl.Wildcard)
	require.Greater(t, ctl.Publish, 20) // ~4 toggles a second
	require.Greater(t, m.Total.Publish, ctl.Publish)

	// JSON round trip, and the same log gives the same bytes.
	var a, b bytes.Buffer
	require.NoError(t, m.WriteJSON(&a))
	m2, err := Learn(l, LearnOptions{})
	require.NoError(t, err)
	require.NoError(t, m2.WriteJSON(&b))
	require.Equal(t, a.String(), b.String())
	back, err := ReadModel(&a)
	require.NoError(t, err)
	require.Equal(t, m, back)
	t.Logf("model: %d bytes of JSON for %d activities", b.Len(), len(m.Activities))

	_, err = ReadModel(strings.NewReader(`{"version": 99, "rateWindowNs": 1}`))
	require.ErrorIs(t, err, ErrModelVersion)
	_, err = Learn(&EventLog{}, LearnOptions{})
	require.ErrorIs(t, err, ErrEmptyLog)
}

func TestEvaluateOnHeldOutPart(t *testing.T) {
	l := trainingLog(t)
	train, test := l.SplitByTime(0.7)
	require.NotEmpty(t, test.Events)
	tf, _ := train.Span()
	_, tl := train.Span()
	sf, _ := test.Span()
	require.True(t, tf.Before(sf) && !tl.IsZero())
	m, err := Learn(train, LearnOptions{})
	require.NoError(t, err)
	q := Evaluate(m, test)
	t.Logf("normal held-out: %d cases, %+v", q.Cases, q)
	require.Equal(t, len(test.Traces()), q.Cases)
	require.Equal(t, 1.0, q.DFG.TraceFitness)
	require.Equal(t, 1.0, q.DFG.ArcFitness)
	require.Equal(t, 1.0, q.DFG.Precision)
	require.Equal(t, 1.0, q.Skeleton.TraceFitness)
	require.Equal(t, 1.0, q.Skeleton.ConstraintFitness)
	require.Equal(t, 1.0, q.Skeleton.Precision)

	// A model that allows more than the test log does loses precision: a
	// test log of the temperature chain only uses 1 of 5 start arcs.
	only := &EventLog{}
	for _, e := range test.Events {
		if e.InProcess() && strings.Contains(e.Topic, "temperature") || strings.Contains(e.Topic, "thermostat") {
			only.Events = append(only.Events, e)
		}
	}
	qo := Evaluate(m, only)
	t.Logf("temperature chain only: %+v", qo)
	require.Equal(t, 1.0, qo.DFG.TraceFitness)
	require.Less(t, qo.DFG.Precision, 1.0)
	require.Greater(t, qo.DFG.Precision, 0.7) // only the start state is imprecise

	// An attacked test log loses fitness.
	s := newSim(5)
	end := s.rounds(s.startPlant(t0.Add(time.Hour)), 60)
	attacks()[0].run(s, end.Add(-30*time.Second))
	qa := Evaluate(m, FromRecords(s.sorted()))
	t.Logf("with spoofed flood: %+v", qa)
	require.Less(t, qa.DFG.TraceFitness, 1.0)
	require.Less(t, qa.Skeleton.TraceFitness, 1.0)
	require.Positive(t, qa.UnknownActivities)
}

// detect runs a detector over records in time order, advancing its clock
// once a second of flow time, and flushes it at the end.
func detect(d *Detector, recs []flow.Record) []Alert {
	var out []Alert
	var next time.Time
	for i := range recs {
		r := &recs[i]
		if !r.Start.Before(next) {
			out = append(out, d.Advance(r.Start)...)
			next = r.Start.Add(time.Second)
		}
		out = append(out, d.Observe(r)...)
	}
	return append(out, d.Flush()...)
}

func trainedModel(t testing.TB) *Model {
	m, err := Learn(trainingLog(t), LearnOptions{})
	require.NoError(t, err)
	return m
}

func TestDetectorNoAlertsOnFreshNormalTraffic(t *testing.T) {
	m := trainedModel(t)
	for _, seed := range []uint64{2, 3, 4} {
		recs := normalPlant(seed, t0.Add(24*time.Hour), 600)
		d := NewDetector(m, DetectorOptions{})
		alerts := detect(d, recs)
		require.Empty(t, alerts, "seed %d: %v", seed, alerts)
		st := d.Stats()
		require.Zero(t, st.OpenCases)
		require.Zero(t, st.Evicted)
		t.Logf("seed %d: %d flows, %d cases, 0 alerts", seed, st.Flows, st.Closed)
	}
}

func TestDetectorAttacks(t *testing.T) {
	m := trainedModel(t)
	for _, a := range attacks() {
		t.Run(a.name, func(t *testing.T) {
			s := newSim(11)
			start := t0.Add(48 * time.Hour)
			s.rounds(s.startPlant(start), 120)
			at := start.Add(60 * time.Second)
			a.run(s, at)
			d := NewDetector(m, DetectorOptions{})
			alerts := detect(d, s.sorted())
			byCheck := map[Check]int{}
			for _, al := range alerts {
				byCheck[al.Check]++
				require.False(t, al.Time.Before(at), "false alarm before the attack: %+v", al)
				require.NotEmpty(t, al.Flows)
				require.NotEmpty(t, al.Message)
				require.NotContains(t, al.Message, "\n")
			}
			for _, c := range a.want {
				require.Positive(t, byCheck[c], "check %s did not alert; got %v", c, byCheck)
			}
			t.Logf("%d alerts %v; first: %s", len(alerts), byCheck, alerts[0].Message)
		})
	}
}

func TestDetectorAlertDetails(t *testing.T) {
	m := trainedModel(t)
	s := newSim(12)
	at := t0.Add(72 * time.Hour)
	attacks()[3].run(s, at) // connect flood
	attacks()[2].run(s, at.Add(5*time.Second))
	d := NewDetector(m, DetectorOptions{})
	alerts := detect(d, s.sorted())
	var rate, sys, wild *Alert
	for i := range alerts {
		a := &alerts[i]
		switch {
		case a.Check == CheckRate && a.Client == "windowSensor":
			rate = a
		case a.Check == CheckSubscription && a.Topic == "$SYS/#":
			sys = a
		case a.Check == CheckSubscription && a.Topic == "plant/#":
			wild = a
		}
	}
	require.NotNil(t, rate)
	require.Equal(t, SeverityHigh, rate.Severity)
	require.Len(t, rate.Flows, 8)
	require.NotNil(t, sys)
	require.Equal(t, SeverityHigh, sys.Severity)
	require.Equal(t, "doorSensor", sys.Client)
	require.NotNil(t, wild)
	require.Equal(t, SeverityMedium, wild.Severity)

	js, err := json.Marshal(sys)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(js, &back))
	for _, k := range []string{"check", "severity", "time", "client", "topic", "flows", "message"} {
		require.Contains(t, back, k)
	}
	require.Equal(t, "subscription", back["check"])

	// The reused correlation id names the case.
	s = newSim(13)
	attacks()[1].run(s, at)
	alerts = detect(NewDetector(m, DetectorOptions{}), s.sorted())
	var reuse *Alert
	for i := range alerts {
		if alerts[i].Check == CheckSkeleton && strings.Contains(alerts[i].Message, "reused") {
			reuse = &alerts[i]
			break
		}
	}
	require.NotNil(t, reuse, "%v", alerts)
	require.Equal(t, "deadbeef-0000-4000-8000-00000000cafe", reuse.Case)
}

func TestDetectorMemoryIsBounded(t *testing.T) {
	m := trainedModel(t)
	d := NewDetector(m, DetectorOptions{MaxOpenCases: 10, MaxTracked: 50})
	s := newSim(14)
	at := t0.Add(96 * time.Hour)
	// The controller is there (a capture started mid-run: its
	// subscriptions are unknown), so the broken-off cases are alarmed.
	s.up(controller, flow.PingReq, at.Add(-time.Millisecond), "", nil)
	for i := range 1000 {
		p := plantPairs[i%5]
		// Only the first flow of each chain: every case stays open.
		s.up(p.sensor, flow.Publish, at.Add(time.Duration(i)*time.Millisecond), sensorTopic(p), s.corr(p))
	}
	for i := range 500 {
		s.connect(fmt.Sprintf("stranger-%d", i), at.Add(time.Duration(i)*time.Millisecond))
	}
	recs := s.sorted()
	for i := range recs {
		d.Observe(&recs[i])
		require.LessOrEqual(t, len(d.cases), 10)
		require.LessOrEqual(t, len(d.rates), 50)
		require.LessOrEqual(t, len(d.suppressed), 50)
	}
	st := d.Stats()
	require.Equal(t, 10, st.OpenCases)
	require.EqualValues(t, 990, st.Evicted)
	require.EqualValues(t, 500, st.Alerts[CheckUnknownClient])
	// Advancing past the timeout closes the rest.
	alerts := d.Advance(at.Add(time.Hour))
	require.NotEmpty(t, alerts) // each closes broken off: always-after
	require.Zero(t, d.Stats().OpenCases)
	require.Empty(t, d.rates)
	require.Empty(t, d.suppressed)
}

func TestSysAndWildcardFilters(t *testing.T) {
	for _, tc := range []struct {
		f         string
		sys, wild bool
	}{
		{"plant/sensors/temperature", false, false},
		{"plant/+/temperature", false, true},
		{"#", false, true},
		{"$SYS/#", true, true},
		{"$SYS/broker/clients/connected", true, false},
		{"$share/g/$SYS/x", true, false},
		{"$share/g/plant/#", false, true},
	} {
		require.Equal(t, tc.sys, isSys(tc.f), tc.f)
		require.Equal(t, tc.wild, isWildcard(tc.f), tc.f)
	}
}

func TestReadModelRejectsGarbage(t *testing.T) {
	_, err := ReadModel(strings.NewReader("not json"))
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrModelVersion))
	_, err = ReadModel(strings.NewReader(`{"version": 1}`))
	require.Error(t, err)
}

func BenchmarkDetectorObserve(b *testing.B) {
	m := trainedModel(b)
	recs := normalPlant(21, t0.Add(24*time.Hour), 600)
	d := NewDetector(m, DetectorOptions{})
	b.ReportAllocs()
	b.ResetTimer()
	var next time.Time
	for i := 0; i < b.N; i++ {
		r := &recs[i%len(recs)]
		if i%len(recs) == 0 {
			// Start over: a fresh detector state for the same flows.
			b.StopTimer()
			d = NewDetector(m, DetectorOptions{})
			next = time.Time{}
			b.StartTimer()
		}
		if !r.Start.Before(next) {
			d.Advance(r.Start)
			next = r.Start.Add(time.Second)
		}
		if a := d.Observe(r); a != nil {
			b.Fatalf("alert on normal traffic: %v", a)
		}
	}
}

func BenchmarkLearn(b *testing.B) {
	l := trainingLog(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Learn(l, LearnOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDetectorSurvivesOddInput(t *testing.T) {
	d := NewDetector(&Model{}, DetectorOptions{}) // empty model, no rate window
	for _, r := range []flow.Record{
		{},
		{ControlType: flow.Publish},
		{ControlType: flow.Publish, CorrelationData: []byte{0}},
		{ControlType: flow.Subscribe, TopicFilters: []string{"", "#", "$"}},
		{ControlType: 99, SrcClientID: flow.BrokerClientID},
	} {
		for _, a := range d.Observe(&r) {
			require.NotEmpty(t, a.Message)
		}
	}
	d.Advance(time.Unix(1<<40, 0))
	d.Flush()
	require.Zero(t, d.Stats().OpenCases)
}
