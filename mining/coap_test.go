package mining

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
)

func coapRec(src, dst string, c flow.CoAP) flow.Record {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	return flow.Record{FlowID: 1, SrcAddr: s.Addr(), SrcPort: s.Port(), DstAddr: d.Addr(), DstPort: d.Port(), Protocol: 17,
		Start: t0, End: t0.Add(time.Millisecond), ApplicationProtocol: flow.AppCoAP, CoAP: &c}
}

func get(path string) flow.CoAP {
	return flow.CoAP{Type: uint8(coapparse.Confirmable), Code: uint8(coapparse.GET), Method: uint8(coapparse.GET), URIPath: path,
		ResponseCode: uint8(coapparse.Content)}
}

func readNames(t *testing.T, file string) *Names {
	t.Helper()
	n, err := ReadNamesFile(filepath.Join("testdata", "names", file))
	require.NoError(t, err)
	return n
}

func TestCoAPEvents(t *testing.T) {
	names := readNames(t, "plant.names")
	put := flow.CoAP{Type: uint8(coapparse.NonConfirmable), Code: uint8(coapparse.PUT), Method: uint8(coapparse.PUT), URIPath: "/led/state"}
	query := get("/a/b")
	query.URIQuery = "x=1&y=2"
	notification := flow.CoAP{Type: uint8(coapparse.NonConfirmable), Code: uint8(coapparse.Content), Method: uint8(coapparse.GET),
		URIPath: "/door", ResponseCode: uint8(coapparse.Content), Observe: 7, HasObserve: true}
	ping := flow.CoAP{Type: uint8(coapparse.Confirmable)}
	reset := flow.CoAP{Type: uint8(coapparse.Reset)}
	block := func(num uint32) flow.CoAP {
		c := get("/log")
		c.Block, c.BlockOption = num<<4|8|2, flow.Block2
		return c
	}
	unassigned := flow.CoAP{Type: uint8(coapparse.Confirmable), Code: 0x0a, Method: 0x0a, URIPath: "/x"}
	// A CoAP flow without its CoAP part (a document without coap fields)
	// is named like one and has no activity; the detector skips it.
	bare := coapRec("10.1.0.2:40123", "10.1.0.10:5683", get("/x"))
	bare.CoAP = nil
	e := NewNamer().Event(&bare)
	require.Equal(t, "10.1.0.2", e.Client)
	require.False(t, e.HasActivity())
	require.Empty(t, NewDetector(coapModel(t, false, nil), DetectorOptions{}).Observe(&bare))
	for _, tc := range []struct {
		name             string
		rec              flow.Record
		names            *Names
		kind             CoAPKind
		client, dst      string
		activity, method string
		inProcess        bool
	}{
		{"GET, client named by its address without port", coapRec("10.1.0.2:40123", "10.1.0.10:5683", get("/temperature")), nil,
			CoAPRequest, "10.1.0.2", "10.1.0.10", "10.1.0.2 → GET /temperature", "GET", false},
		{"another ephemeral port is the same client", coapRec("10.1.0.2:59999", "10.1.0.10:5683", get("/temperature")), nil,
			CoAPRequest, "10.1.0.2", "10.1.0.10", "10.1.0.2 → GET /temperature", "GET", false},
		{"names file", coapRec("10.1.0.2:40123", "10.1.0.10:5683", get("/temperature")), names,
			CoAPRequest, "controller", "temperatureSensor", "controller → GET /temperature", "GET", false},
		{"no path is /", coapRec("10.1.0.2:40123", "10.1.0.10:5683", get("")), nil,
			CoAPRequest, "10.1.0.2", "10.1.0.10", "10.1.0.2 → GET /", "GET", false},
		{"query string not in the activity", coapRec("10.1.0.2:40123", "10.1.0.10:5683", query), nil,
			CoAPRequest, "10.1.0.2", "10.1.0.10", "10.1.0.2 → GET /a/b", "GET", false},
		{"NON PUT", coapRec("10.1.0.2:40123", "10.1.0.20:5683", put), names,
			CoAPRequest, "controller", "led", "controller → PUT /led/state", "PUT", false},
		{"unassigned method by its code", coapRec("10.1.0.2:40123", "10.1.0.20:5683", unassigned), nil,
			CoAPRequest, "10.1.0.2", "10.1.0.20", "10.1.0.2 → 0.10 /x", "0.10", false},
		{"notification is the server's", coapRec("10.1.0.12:5683", "10.1.0.2:40001", notification), names,
			CoAPNotification, "doorSensor", "controller", "doorSensor → NOTIFY /door", "GET", false},
		{"ping: no activity", coapRec("10.1.0.3:40123", "10.1.0.21:5683", ping), names,
			CoAPEmpty, "dashboard", "lock", "", "", false},
		{"reset: no activity", coapRec("10.1.0.3:40123", "10.1.0.21:5683", reset), nil,
			CoAPEmpty, "10.1.0.3", "10.1.0.21", "", "", false},
		{"first block is the request", coapRec("10.1.0.3:40123", "10.1.0.21:5683", block(0)), nil,
			CoAPRequest, "10.1.0.3", "10.1.0.21", "10.1.0.3 → GET /log", "GET", false},
		{"later block: no activity", coapRec("10.1.0.3:40123", "10.1.0.21:5683", block(2)), nil,
			CoAPBlock, "10.1.0.3", "10.1.0.21", "", "GET", false},
		{"network entry", coapRec("10.9.3.3:40123", "10.9.7.8:5683", get("/a")), names,
			CoAPRequest, "guest", "lab", "guest → GET /a", "GET", false},
		{"address:port entry wins over the network", coapRec("10.9.3.3:40123", "10.9.7.7:5683", get("/a")), names,
			CoAPRequest, "guest", "labServer", "guest → GET /a", "GET", false},
		{"IPv6", coapRec("[fd00::8]:40123", "[fd00::7]:5683", get("/a")), names,
			CoAPRequest, "v6client", "v6server", "v6client → GET /a", "GET", false},
		{"IPv4-mapped address without names", coapRec("[::ffff:10.1.0.2]:40123", "10.1.0.10:5683", get("/a")), nil,
			CoAPRequest, "10.1.0.2", "10.1.0.10", "10.1.0.2 → GET /a", "GET", false},
		{"IPv4-mapped entry", coapRec("10.8.0.1:40123", "10.1.0.10:5683", get("/a")), names,
			CoAPRequest, "mapped", "temperatureSensor", "mapped → GET /a", "GET", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, corr := range [][]byte{nil, []byte("case-1")} {
				r := tc.rec
				r.CorrelationData = corr
				e := NewNamerWith(tc.names).Event(&r)
				require.Equal(t, tc.kind, e.CoAP)
				require.Equal(t, tc.client, e.Client)
				require.Equal(t, tc.dst, e.Dst)
				require.Equal(t, tc.method, e.Method)
				require.Equal(t, tc.activity != "", e.HasActivity())
				if tc.activity != "" {
					require.Equal(t, tc.activity, e.Activity())
				}
				require.Equal(t, corr != nil && tc.kind == CoAPRequest, e.InProcess(), "in process with correlation id %q", corr)
				if tc.kind == CoAPNotification {
					require.Empty(t, e.Case, "a notification carries its registration's case key: case-free")
				}
			}
		})
	}
}

func TestParseNames(t *testing.T) {
	for _, tc := range []struct {
		file string
		err  error
		line int
	}{
		{"plant.names", nil, 0},
		{"missing-name.names", ErrNamesSyntax, 2},
		{"bad-address.names", ErrNamesSyntax, 4},
		{"duplicate.names", ErrNameTaken, 2},
		{"duplicate-network.names", ErrNameTaken, 2},
		{"reserved.names", ErrNamesSyntax, 1},
		{"zone.names", ErrNamesSyntax, 1},
		{"bad-network.names", ErrNamesSyntax, 1},
		{"does-not-exist.names", nil, 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "names", tc.file)
			n, err := ReadNamesFile(path)
			if tc.file == "does-not-exist.names" {
				var ne *NamesError
				require.ErrorAs(t, err, &ne)
				require.Equal(t, path, ne.File)
				require.Contains(t, err.Error(), path)
				return
			}
			if tc.err == nil {
				require.NoError(t, err)
				require.Equal(t, 13, n.Len())
				return
			}
			require.ErrorIs(t, err, tc.err)
			var ne *NamesError
			require.ErrorAs(t, err, &ne)
			require.Equal(t, path, ne.File)
			require.Equal(t, tc.line, ne.Line)
			require.Contains(t, err.Error(), path+" line ")
		})
	}
}

func TestNamesLookupAndEntries(t *testing.T) {
	n := readNames(t, "plant.names")
	for _, tc := range []struct{ ap, want string }{
		{"10.9.7.7:5683", "labServer"},
		{"10.9.7.7:5684", "lab"}, // another port: the /24
		{"10.9.8.1:1", "guest"},  // the /16
		{"10.10.0.1:1", ""},
		{"[fd00::7]:5683", "v6server"},
		{"[fd00::7]:1", ""},
		{"[::ffff:10.1.0.2]:9", "controller"},
	} {
		got, ok := n.Lookup(netip.MustParseAddrPort(tc.ap))
		require.Equal(t, tc.want, got, tc.ap)
		require.Equal(t, tc.want != "", ok, tc.ap)
	}
	// Entries round-trip and are sorted.
	es := n.Entries()
	require.True(t, slices.IsSortedFunc(es, func(a, b NameEntry) int { return strings.Compare(a.Address, b.Address) }))
	back, err := NamesFromEntries(es)
	require.NoError(t, err)
	require.Equal(t, es, back.Entries())
	require.Contains(t, es, NameEntry{"10.8.0.1", "mapped"})
	require.Contains(t, es, NameEntry{"10.9.0.0/16", "guest"})
	_, err = NamesFromEntries([]NameEntry{{"10.0.0.1", "a"}, {"10.0.0.1", "b"}})
	require.ErrorIs(t, err, ErrNameTaken)
}

// The names file names MQTT clients without client id, and "broker"
// makes an endpoint the broker; a client id always wins.
func TestNamerNamesMQTT(t *testing.T) {
	n, err := ParseNames(strings.NewReader("10.0.0.9 gateway\n10.0.0.1:1883 broker\n"), "inline")
	require.NoError(t, err)
	namer := NewNamerWith(n)
	require.Equal(t, "gateway", namer.Name("", mustAddr("10.0.0.9"), 40001))
	require.Equal(t, "thermostat", namer.Name("thermostat", mustAddr("10.0.0.9"), 40001))
	require.Equal(t, Broker, namer.Name("", mustAddr("10.0.0.1"), 1883))
	require.Equal(t, "10.0.0.7:40001", namer.Name("", mustAddr("10.0.0.7"), 40001))
}

func coapModel(t testing.TB, cases bool, names *Names) *Model {
	t.Helper()
	m, err := Learn(NewEventLog(normalCoAPPlant(1, cases, t0, 600), names), LearnOptions{})
	require.NoError(t, err)
	return m
}

func TestLearnCoAPModel(t *testing.T) {
	m := coapModel(t, false, nil)
	require.Zero(t, m.Trained.Cases)
	require.Empty(t, m.Start)
	require.Empty(t, m.DirectlyFollows)
	require.Equal(t, Bounds{}, m.Skeleton.CaseLength)
	var acts []string
	for _, a := range m.Activities {
		acts = append(acts, a.Activity)
		require.Equal(t, "coap", a.Protocol, a.Activity)
		require.Positive(t, a.Rate, a.Activity)
		require.Positive(t, a.Uncorr, a.Activity)
	}
	require.Equal(t, []string{
		"10.1.0.12 → NOTIFY /door",
		"10.1.0.2 → GET /door", // the Observe registration
		"10.1.0.2 → GET /motion",
		"10.1.0.2 → GET /temperature",
		"10.1.0.2 → PUT /led/state",
		"10.1.0.3 → GET /led/state",
		"10.1.0.3 → GET /log", // the first block only
	}, acts)
	require.Equal(t, []Resource{
		{Server: "10.1.0.10", Path: "/temperature", Methods: []string{"GET"}},
		{Server: "10.1.0.11", Path: "/motion", Methods: []string{"GET"}},
		{Server: "10.1.0.12", Path: "/door", Methods: []string{"GET"}},
		{Server: "10.1.0.20", Path: "/led/state", Methods: []string{"GET", "PUT"}},
		{Server: "10.1.0.21", Path: "/log", Methods: []string{"GET"}},
	}, m.Resources)
	profiles := map[string]ClientProfile{}
	for _, p := range m.Clients {
		profiles[p.Client] = p
	}
	// 10 rounds per 10 s window: 30 controller requests (31 in the first,
	// with the Observe registration), 10 notifications; the dashboard
	// every fifth round: 2 × (GET /led/state, GET /log, 2 later blocks, a ping).
	// Rates are sliding counts (slidingCount): at least the busiest fixed
	// window's 31, at most one round's 3 requests more (the window before
	// weighted by the share still covered).
	require.GreaterOrEqual(t, profiles["10.1.0.2"].CoAPRequests, 31)
	require.LessOrEqual(t, profiles["10.1.0.2"].CoAPRequests, 31+3)
	within := func(got, fixed, round int, what string) {
		require.GreaterOrEqual(t, got, fixed, what)
		require.LessOrEqual(t, got, fixed+round, what)
	}
	within(profiles["10.1.0.12"].CoAPNotifications, 10, 1, "notifications")
	within(profiles["10.1.0.3"].CoAPRequests, 4, 2, "dashboard requests")
	within(profiles["10.1.0.3"].CoAPBlocks, 4, 2, "dashboard later blocks")
	within(profiles["10.1.0.3"].CoAPEmpty, 2, 1, "dashboard pings")
	require.Empty(t, m.Names)

	// Deterministic, and read back the same.
	var a, b bytes.Buffer
	require.NoError(t, m.WriteJSON(&a))
	require.NoError(t, coapModel(t, false, nil).WriteJSON(&b))
	require.Equal(t, a.String(), b.String())
	back, err := ReadModel(&a)
	require.NoError(t, err)
	require.Equal(t, m, back)

	// With a names table the model records it and names by it.
	named := coapModel(t, false, readNames(t, "plant.names"))
	require.Equal(t, readNames(t, "plant.names").Entries(), named.Names)
	require.Contains(t, named.Resources, Resource{Server: "led", Path: "/led/state", Methods: []string{"GET", "PUT"}})

	// A model with bad names entries is refused.
	named.Names = append(named.Names, named.Names[0])
	var buf bytes.Buffer
	require.NoError(t, named.WriteJSON(&buf))
	_, err = ReadModel(&buf)
	require.ErrorIs(t, err, ErrNameTaken)

	// A log of MQTT flows without correlation id still has nothing to learn.
	_, err = Learn(FromRecords([]flow.Record{{ControlType: flow.Connect}}), LearnOptions{})
	require.ErrorIs(t, err, ErrEmptyLog)
}

// checksOf returns the distinct checks of alerts, sorted.
func checksOf(alerts []Alert) []Check {
	var out []Check
	for _, a := range alerts {
		if !slices.Contains(out, a.Check) {
			out = append(out, a.Check)
		}
	}
	slices.Sort(out)
	return out
}

type coapAttack struct {
	name   string
	cases  bool // needs the model with cases
	run    func(s *coapSim, t time.Time)
	checks []Check
	// want: alerts (check, client, topic) that must be among the alerts.
	want [][3]string
}

var intruder = mustAddr("10.1.0.66")

func coapAttacks() []coapAttack {
	return []coapAttack{
		{name: "unknown client writes and deletes the LED", run: func(s *coapSim, t time.Time) {
			s.request(intruder, coapLED, t, coapparse.PUT, "/led/state", coapparse.Changed, nil)
			s.request(intruder, coapLED, t.Add(50*time.Millisecond), coapparse.DELETE, "/led/state", coapparse.Deleted, nil)
		}, checks: []Check{CheckUnknownActivity, CheckUnknownClient, CheckUnusualMethod}, want: [][3]string{
			{"unknown-client", "10.1.0.66", "PUT /led/state"},
			{"unknown-activity", "10.1.0.66", "PUT /led/state"},
			{"unknown-activity", "10.1.0.66", "DELETE /led/state"},
			{"unusual-method", "10.1.0.66", "DELETE /led/state"},
		}},
		{name: "hijacked controller writes a sensor", run: func(s *coapSim, t time.Time) {
			s.request(coapController, coapTemp, t, coapparse.PUT, "/temperature", coapparse.Changed, nil)
		}, checks: []Check{CheckUnknownActivity, CheckUnusualMethod}, want: [][3]string{
			{"unknown-activity", "10.1.0.2", "PUT /temperature"},
			{"unusual-method", "10.1.0.2", "PUT /temperature"},
		}},
		{name: "request flood", run: func(s *coapSim, t time.Time) {
			for i := range 300 {
				s.request(coapDashboard, coapLED, t.Add(time.Duration(i)*10*time.Millisecond), coapparse.GET, "/led/state", coapparse.Content, nil)
			}
		}, checks: []Check{CheckRate}, want: [][3]string{
			{"rate", "10.1.0.3", ""}, {"rate", "10.1.0.3", "GET /led/state"}, {"rate", "*", ""},
		}},
		{name: "ping flood", run: func(s *coapSim, t time.Time) {
			for i := range 200 {
				s.exchange(netip.AddrPortFrom(coapController, s.port()), server(coapLock), t.Add(time.Duration(i)*5*time.Millisecond),
					flow.CoAP{Type: uint8(coapparse.Confirmable)}, nil)
			}
		}, checks: []Check{CheckRate}, want: [][3]string{{"rate", "10.1.0.2", ""}, {"rate", "*", ""}}},
		{name: "resource scan", run: func(s *coapSim, t time.Time) {
			for i := range 20 {
				s.request(coapController, coapLED, t.Add(time.Duration(i)*100*time.Millisecond), coapparse.GET,
					"/admin/"+string(rune('a'+i)), coapparse.NotFound, nil)
			}
		}, checks: []Check{CheckErrorBurst, CheckUnknownActivity}, want: [][3]string{
			{"error-burst", "10.1.0.2", ""}, {"error-burst", "*", ""}, {"unknown-activity", "10.1.0.2", "GET /admin/a"},
		}},
		{name: "case injection: LED set without reading the motion sensor", cases: true, run: func(s *coapSim, t time.Time) {
			s.request(coapController, coapLED, t, coapparse.PUT, "/led/state", coapparse.Changed, []byte("deadbeef"))
		}, checks: []Check{CheckDirectlyFollows, CheckSkeleton}, want: [][3]string{
			{"directly-follows", "10.1.0.2", "PUT /led/state"},
		}},
		{name: "case-free request on a case topic", cases: true, run: func(s *coapSim, t time.Time) {
			s.request(coapController, coapMotion, t, coapparse.GET, "/motion", coapparse.Content, nil)
		}, checks: []Check{CheckMissingCorrelation}, want: [][3]string{{"missing-correlation", "10.1.0.2", "GET /motion"}}},
	}
}

func TestCoAPDetection(t *testing.T) {
	models := map[bool]*Model{false: coapModel(t, false, nil), true: coapModel(t, true, nil)}
	t.Run("case-based model", func(t *testing.T) {
		m := models[true]
		// A case per round, and the registration's own (its notifications
		// repeat its case key but are case-free).
		require.Equal(t, 601, m.Trained.Cases)
		require.Equal(t, []Count{{Activity: "10.1.0.2 → GET /door", Count: 1}, {Activity: "10.1.0.2 → GET /motion", Count: 600}}, m.Start)
		require.Equal(t, []Count{{Activity: "10.1.0.2 → GET /door", Count: 1}, {Activity: "10.1.0.2 → PUT /led/state", Count: 600}}, m.End)
		require.Equal(t, []string{"GET /door", "GET /motion", "PUT /led/state"}, m.CorrelatedTopics)
		for _, a := range m.Activities {
			if strings.Contains(a.Activity, NotifyMethod) {
				require.Zero(t, a.Cases, a.Activity)
			}
		}
	})
	for _, cases := range []bool{false, true} {
		for _, seed := range []uint64{2, 3} {
			// Fresh normal traffic (other ports, tokens, timing), longer
			// than training (the observation's notifications outlast the
			// trained ones), started at a round's middle: no alert, sorted
			// or in collector order.
			s := newCoAPSim(seed, cases)
			s.run(s.start(t0.Add(1000*time.Hour)), 700)
			recs := s.sorted()
			recs = recs[3:] // the capture starts after the first round's GET /motion: its case lacks its start
			a, incs := runStream(models[cases], recs)
			require.Empty(t, a, "cases %v seed %d", cases, seed)
			require.Empty(t, incs)
			a, _ = runStream(models[cases], jitteredArrival(recs, seed))
			require.Empty(t, a, "collector order, cases %v seed %d", cases, seed)
		}
	}
	for i, at := range coapAttacks() {
		t.Run(at.name, func(t *testing.T) {
			s := newCoAPSim(uint64(50+i), at.cases)
			start := s.run(s.start(t0.Add(2000*time.Hour)), 30)
			attackAt := start.Add(300 * time.Millisecond)
			s.run(start, 30)
			at.run(s, attackAt)
			for _, recs := range [][]flow.Record{s.sorted(), jitteredArrival(s.sorted(), uint64(i))} {
				alerts, incs := runStream(models[at.cases], recs)
				require.Equal(t, at.checks, checksOf(alerts), "%v", alerts)
				var got [][3]string
				for _, a := range alerts {
					require.False(t, a.Time.Before(attackAt), "alert before the attack: %+v", a)
					require.NotNil(t, a.Flow)
					require.NotNil(t, a.Flow.CoAP)
					got = append(got, [3]string{string(a.Check), a.Client, a.Topic})
				}
				for _, w := range at.want {
					require.Contains(t, got, w)
				}
				require.NotEmpty(t, incs)
				require.LessOrEqual(t, len(incs), len(at.checks)+1, "%v", incs)
				for _, inc := range incs {
					if inc.Check == CheckUnknownActivity {
						require.Contains(t, inc.Message, " sent ", "a CoAP incident says what was sent")
					}
				}
			}
		})
	}
}

func TestCoAPUnusualMethodDetails(t *testing.T) {
	m := coapModel(t, false, readNames(t, "plant.names"))
	d := NewDetector(m, DetectorOptions{})
	del := coapRec("10.1.0.2:41000", "10.1.0.20:5683", flow.CoAP{Type: uint8(coapparse.Confirmable), Code: uint8(coapparse.DELETE),
		Method: uint8(coapparse.DELETE), URIPath: "/led/state", ResponseCode: uint8(coapparse.Deleted)})
	put := coapRec("10.1.0.2:41001", "10.1.0.10:5683", flow.CoAP{Type: uint8(coapparse.Confirmable), Code: uint8(coapparse.PUT),
		Method: uint8(coapparse.PUT), URIPath: "/temperature"})
	put.FlowID = 2
	fetch := coapRec("10.1.0.2:41002", "10.1.0.10:5683", flow.CoAP{Type: uint8(coapparse.Confirmable), Code: uint8(coapparse.FETCH),
		Method: uint8(coapparse.FETCH), URIPath: "/temperature"})
	fetch.FlowID = 3
	other := coapRec("10.1.0.2:41003", "10.1.0.10:5683", flow.CoAP{Type: uint8(coapparse.Confirmable), Code: uint8(coapparse.PUT),
		Method: uint8(coapparse.PUT), URIPath: "/never-seen"})
	other.FlowID = 4
	byCheck := func(alerts []Alert) map[Check]Alert {
		out := map[Check]Alert{}
		for _, a := range alerts {
			out[a.Check] = a
		}
		return out
	}
	a := byCheck(d.Observe(&del))[CheckUnusualMethod]
	require.Equal(t, SeverityMedium, a.Severity, "DELETE where GET and PUT were seen")
	require.Equal(t, "controller", a.Client)
	require.Equal(t, "DELETE /led/state", a.Topic)
	require.Equal(t, `DELETE on /led/state of led by "controller"; only GET, PUT in training`, a.Message)
	require.Equal(t, "CoAP request", a.Flow.Type)
	require.Equal(t, &CoAPRef{Type: "CON", Code: "0.04", Method: "DELETE", Path: "/led/state", ResponseCode: "2.02"}, a.Flow.CoAP)
	a = byCheck(d.Observe(&put))[CheckUnusualMethod]
	require.Equal(t, SeverityHigh, a.Severity, "PUT where only GET was seen")
	a = byCheck(d.Observe(&fetch))[CheckUnusualMethod]
	require.Equal(t, SeverityMedium, a.Severity, "FETCH is safe")
	_, ok := byCheck(d.Observe(&other))[CheckUnusualMethod]
	require.False(t, ok, "a path never seen is an unknown activity, not an unusual method")
	// Repeats are suppressed per client and method/path.
	del.FlowID, del.Start = 5, del.Start.Add(time.Second)
	_, ok = byCheck(d.Observe(&del))[CheckUnusualMethod]
	require.False(t, ok)
	require.Equal(t, uint64(3), d.Stats().Alerts[CheckUnusualMethod])

	// The incident of unusual methods is the client's.
	g := NewIncidents(IncidentOptions{})
	inc, _ := g.Add(&a, nil)
	require.Equal(t, "client controller", inc.Root)
	require.Contains(t, inc.Message, "controller used 1 method on CoAP resources")
}

// A detector given another names table than the model's names by it
// (devices renumbered: the same names, new addresses).
func TestCoAPDetectorNamesOverride(t *testing.T) {
	m := coapModel(t, false, readNames(t, "plant.names"))
	renumbered, err := ParseNames(strings.NewReader("10.2.0.2 controller\n10.2.0.10 temperatureSensor\n"), "renumbered")
	require.NoError(t, err)
	r := coapRec("10.2.0.2:40000", "10.2.0.10:5683", get("/temperature"))
	require.Empty(t, NewDetector(m, DetectorOptions{Names: renumbered}).Observe(&r))
	alerts := NewDetector(m, DetectorOptions{}).Observe(&r)
	require.Equal(t, []Check{CheckUnknownActivity, CheckUnknownClient}, checksOf(alerts))
	require.Equal(t, "10.2.0.2", alerts[0].Client)
	// The model's own table names the trained addresses.
	r = coapRec("10.1.0.2:40000", "10.1.0.10:5683", get("/temperature"))
	require.Empty(t, NewDetector(m, DetectorOptions{}).Observe(&r))
}

func TestCoAPEVE(t *testing.T) {
	m := coapModel(t, false, nil)
	var alerts []Alert
	for _, at := range coapAttacks() {
		if at.cases {
			continue
		}
		s := newCoAPSim(9, false)
		start := s.run(s.start(t0.Add(3000*time.Hour)), 5)
		at.run(s, start)
		a, _ := runStream(m, s.sorted())
		alerts = append(alerts, a...)
	}
	var buf bytes.Buffer
	eve := NewEVEWriter(&buf)
	for i := range alerts {
		require.NoError(t, eve.Alert(&alerts[i]))
	}
	require.NoError(t, eve.Flush())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, len(alerts))
	sigs := map[int]bool{}
	for i, l := range lines {
		ev := decodeEVE(t, l)
		require.Equal(t, "UDP", ev["proto"])
		require.Equal(t, "coap", ev["app_proto"])
		require.NotContains(t, ev, "mqtt")
		al := ev["alert"].(map[string]any)
		require.True(t, strings.HasPrefix(al["signature"].(string), "MISSION CoAP "), al["signature"])
		sid := eveInt(t, al["signature_id"])
		require.Equal(t, EVESignatures[alerts[i].Check].ID, sid)
		sigs[sid] = true
		c := ev["coap"].(map[string]any)
		if m := alerts[i].Flow.CoAP.Method; m != "" {
			require.Equal(t, m, c["method"])
		} else {
			require.NotContains(t, c, "method", "a ping has no method")
		}
	}
	require.True(t, sigs[9990012], "unusual-method has its own signature")
	require.True(t, sigs[9990013], "error-burst has its own signature")
}

// decodeEVE decodes one EVE line and checks it against the schema.
func decodeEVE(t *testing.T, line string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	var ev map[string]any
	require.NoError(t, dec.Decode(&ev), line)
	seen := map[string]bool{}
	checkEVE(t, "", ev, seen)
	for _, f := range eveRequired[ev["event_type"].(string)] {
		require.True(t, seen[f], "event without %s: %s", f, line)
	}
	return ev
}

func eveInt(t *testing.T, v any) int {
	t.Helper()
	n, err := v.(json.Number).Int64()
	require.NoError(t, err)
	return int(n)
}

// The sequencer holds its own copy of a CoAP flow's part: a collector
// may reuse the record it hands over.
func TestSequencerCopiesCoAP(t *testing.T) {
	s := NewSequencer(time.Second, 0)
	r := coapRec("10.1.0.2:40000", "10.1.0.10:5683", get("/temperature"))
	r.CoAP.Token = []byte{1, 2}
	var got []flow.Record
	s.Push(&r, func(r *flow.Record) { got = append(got, *r) })
	r.CoAP.URIPath, r.CoAP.Token[0] = "/reused", 9
	s.Drain(func(r *flow.Record) { got = append(got, *r) })
	require.Len(t, got, 1)
	require.Equal(t, "/temperature", got[0].CoAP.URIPath)
	require.Equal(t, []byte{1, 2}, got[0].CoAP.Token)
}

// MQTT and CoAP in one log and one model: fresh normal traffic of both
// raises nothing; a CoAP attack among MQTT traffic raises only its alerts.
func TestMixedMQTTAndCoAP(t *testing.T) {
	train := append(normalPlant(1, t0, 600), normalCoAPPlant(1, true, t0, 600)...)
	m, err := Learn(FromRecords(train), LearnOptions{})
	require.NoError(t, err)
	require.Equal(t, len(FromRecords(normalPlant(1, t0, 600)).Traces())+601, m.Trained.Cases, "the MQTT cases, one CoAP case per round and the registration's")

	start := t0.Add(500 * time.Hour)
	fresh := append(normalPlant(2, start, 120), normalCoAPPlant(2, true, start, 120)...)
	slices.SortStableFunc(fresh, func(a, b flow.Record) int { return a.Start.Compare(b.Start) })
	a, _ := runStream(m, fresh)
	require.Empty(t, a)

	s := newCoAPSim(7, true)
	at := s.run(s.start(start), 20)
	s.request(intruder, coapLED, at, coapparse.DELETE, "/led/state", coapparse.Deleted, nil)
	mixed := append(normalPlant(3, start, 40), s.sorted()...)
	slices.SortStableFunc(mixed, func(a, b flow.Record) int { return a.Start.Compare(b.Start) })
	a, _ = runStream(m, mixed)
	require.Equal(t, []Check{CheckUnknownActivity, CheckUnknownClient, CheckUnusualMethod}, checksOf(a))
	for _, al := range a {
		require.Equal(t, "10.1.0.66", al.Client)
	}
}

// A Monitor (the live path of collect and all-in-one --model) with a
// model of normal CoAP traffic: nothing on more normal traffic, the
// attack's checks on an attack.
func TestMonitorCoAP(t *testing.T) {
	m := coapModel(t, false, nil)
	for _, tc := range []struct {
		name   string
		attack bool
		want   []Check
	}{
		{"normal", false, nil},
		{"unknown client writes and deletes the LED", true, []Check{CheckUnknownActivity, CheckUnknownClient, CheckUnusualMethod}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCoAPSim(33, false)
			at := s.run(s.start(t0.Add(4000*time.Hour)), 40)
			if tc.attack {
				coapAttacks()[0].run(s, at.Add(-20*time.Second))
			}
			recs := jitteredArrival(s.sorted(), 3)
			sink := &memSink{}
			ticks := make(chan time.Time)
			wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			mon := NewMonitor(m, sink, zerolog.Nop(), MonitorOptions{Ticks: ticks, Now: func() time.Time { return wall }, CutOnClose: true})
			for i := range recs {
				mon.Observe(&recs[i])
			}
			require.NoError(t, mon.Close(context.Background()))
			require.Equal(t, tc.want, checksOf(sink.snapshot()))
		})
	}
}

// BenchmarkDetectorObserveCoAP: normal CoAP plant traffic, named by a
// names table, through a detector (case-free model).
func BenchmarkDetectorObserveCoAP(b *testing.B) {
	names, err := ReadNamesFile(filepath.Join("testdata", "names", "plant.names"))
	require.NoError(b, err)
	m, err := Learn(NewEventLog(normalCoAPPlant(1, false, t0, 600), names), LearnOptions{})
	require.NoError(b, err)
	recs := normalCoAPPlant(21, false, t0.Add(24*time.Hour), 600)
	d := NewDetector(m, DetectorOptions{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(recs) == 0 {
			b.StopTimer()
			d = NewDetector(m, DetectorOptions{}) // the same flows again: a fresh state
			b.StartTimer()
		}
		if a := d.Observe(&recs[i%len(recs)]); a != nil {
			b.Fatalf("alert on normal traffic: %v", a)
		}
	}
}
