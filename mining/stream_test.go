package mining

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

// runStream runs recs (in the order given) through a Stream and returns
// its alerts and closed incidents.
func runStream(m *Model, recs []flow.Record) ([]Alert, []Incident) {
	var alerts []Alert
	var incs []Incident
	st := NewStream(m, StreamOptions{}, Handler{
		Alert: func(a *Alert) { alerts = append(alerts, *a) },
		Incident: func(inc *Incident, ch IncidentChange) {
			if ch == IncidentClosed {
				incs = append(incs, *inc)
			}
		},
	})
	for i := range recs {
		st.Observe(&recs[i])
	}
	st.Flush()
	return alerts, incs
}

// arrivalOrder reorders recs as a collector hands them over: by flow end,
// each end jittered by up to 200 ms (less than the 500 ms Reorder).
func jitteredArrival(recs []flow.Record, seed uint64) []flow.Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := slices.Clone(recs)
	ends := map[uint64]time.Time{}
	for _, r := range out {
		ends[r.FlowID] = r.End.Add(time.Duration(rng.Int64N(int64(200 * time.Millisecond))))
	}
	slices.SortStableFunc(out, func(a, b flow.Record) int { return ends[a.FlowID].Compare(ends[b.FlowID]) })
	return out
}

// One clock: the same flows raise the same alerts and incidents whether
// they come sorted (mission detect) or as a collector hands them over.
func TestStreamSameAlertsInAnyArrivalOrder(t *testing.T) {
	m := trainedModel(t)
	for i, at := range attacks() {
		t.Run(at.name, func(t *testing.T) {
			s := newSim(uint64(40 + i))
			start := s.startPlant(t0.Add(200 * time.Hour))
			s.rounds(start, 20)
			at.run(s, start.Add(10*time.Second))
			sorted := s.sorted()
			wantA, wantI := runStream(m, sorted)
			require.NotEmpty(t, wantA)
			gotA, gotI := runStream(m, jitteredArrival(sorted, uint64(i)))
			require.Equal(t, wantA, gotA)
			require.Equal(t, wantI, gotI)
		})
	}
}

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"plant/sensors/door", "plant/sensors/door", true},
		{"plant/sensors/door", "plant/sensors/doors", false},
		{"plant/+/door", "plant/sensors/door", true},
		{"plant/+", "plant/sensors/door", false},
		{"plant/#", "plant/sensors/door", true},
		{"plant/#", "plant", true},
		{"#", "plant/sensors/door", true},
		{"+/+/+", "plant/sensors/door", true},
		{"+", "plant", true},
		{"#", "$SYS/broker/uptime", false},
		{"+/broker/uptime", "$SYS/broker/uptime", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"plant/sensors/door/#", "plant/sensors", false},
		{"", "plant", false},
	} {
		require.Equal(t, tc.want, matchTopic(tc.filter, tc.topic), "%q ~ %q", tc.filter, tc.topic)
	}
	require.Equal(t, "plant/#", shareless("$share/g/plant/#"))
}

// startOrder starts the simulated plant in another order than training:
// sensors and controller first, reading at once; the actuators (and the
// controller's subscription) come 300 ms later. Readings before that go
// to nobody, correctly: no alarm.
func startOrder(s *sim, t time.Time) time.Time {
	for _, p := range plantPairs {
		s.connect(p.sensor, t)
	}
	s.connect(controller, t.Add(2*time.Millisecond))
	// Readings before anyone subscribed: delivered to nobody.
	for i, p := range plantPairs {
		s.up(p.sensor, flow.Publish, t.Add(time.Duration(10+i)*time.Millisecond), sensorTopic(p), s.corr(p))
	}
	var filters []string
	for _, p := range plantPairs {
		filters = append(filters, sensorTopic(p), stateTopic(p.actuator))
	}
	s.subscribe(controller, t.Add(100*time.Millisecond), filters...)
	// The controller forwards readings before the actuators subscribed.
	for i, p := range plantPairs {
		at := t.Add(time.Duration(150+20*i) * time.Millisecond)
		corr := s.corr(p)
		s.up(p.sensor, flow.Publish, at, sensorTopic(p), corr)
		s.down(controller, at.Add(2*time.Millisecond), sensorTopic(p), corr)
		s.up(controller, flow.Publish, at.Add(4*time.Millisecond), toggleTopic(p.actuator), corr)
	}
	for i, p := range plantPairs {
		at := t.Add(time.Duration(300+i) * time.Millisecond)
		s.connect(p.actuator, at)
		s.subscribe(p.actuator, at.Add(3*time.Millisecond), toggleTopic(p.actuator))
	}
	return t.Add(time.Second)
}

func TestStartUpInAnotherOrderIsNoAlarm(t *testing.T) {
	m := trainedModel(t)
	s := newSim(51)
	end := s.rounds(startOrder(s, t0.Add(300*time.Hour)), 60)
	// Shutdown: sensors, controller, actuators disconnect.
	for i, p := range plantPairs {
		s.up(p.sensor, flow.Disconnect, end.Add(time.Duration(i)*time.Millisecond), "", nil)
	}
	s.up(controller, flow.Disconnect, end.Add(10*time.Millisecond), "", nil)
	for i, p := range plantPairs {
		s.up(p.actuator, flow.Disconnect, end.Add(time.Duration(20+i)*time.Millisecond), "", nil)
	}
	alerts, incs := runStream(m, s.sorted())
	require.Empty(t, alerts)
	require.Empty(t, incs)

	// The same capture started mid-run — no session start (CONNECT,
	// SUBSCRIBE) seen, the subscribers seen idle, so their subscriptions
	// are unknown — alarms the broken cases as before.
	// The subscribers show up (PINGREQ) before the first reading.
	first := s.sorted()[0].Start.Add(-time.Millisecond)
	s.up(controller, flow.PingReq, first, "", nil)
	for _, p := range plantPairs {
		s.up(p.actuator, flow.PingReq, first, "", nil)
	}
	var midRun []flow.Record
	for _, r := range s.sorted() {
		if r.ControlType != flow.Subscribe && r.ControlType != flow.Connect {
			midRun = append(midRun, r)
		}
	}
	alerts, _ = runStream(m, midRun)
	require.NotEmpty(t, alerts)
	checks := map[Check]bool{}
	for _, a := range alerts {
		checks[a.Check] = true
	}
	require.Equal(t, map[Check]bool{CheckDirectlyFollows: true, CheckSkeleton: true}, checks)
}

func TestSubscriptionState(t *testing.T) {
	m := trainedModel(t)
	for _, tc := range []struct {
		name string
		run  func(s *sim, t time.Time)
		want map[Check]int
	}{
		{"delivery without a matching subscription", func(s *sim, t time.Time) {
			// The LED gets the door opener's toggle: it subscribed only to its own.
			s.down("led", t, toggleTopic("doorOpener"), nil)
		}, map[Check]int{CheckUnsubscribedDelivery: 1}},
		{"delivery to a client whose SUBSCRIBE was not seen", func(s *sim, t time.Time) {
			s.down("temperatureSensor", t, toggleTopic("doorOpener"), nil)
		}, map[Check]int{}},
		{"delivery in flight at an unsubscribe", func(s *sim, t time.Time) {
			s.up("led", flow.Unsubscribe, t, "", nil).TopicFilters = []string{toggleTopic("led")}
			s.down("led", t.Add(100*time.Millisecond), toggleTopic("led"), nil)
			s.subscribe("led", t.Add(200*time.Millisecond), toggleTopic("led")) // back before the next rounds
		}, map[Check]int{}},
		{"delivery after an unsubscribe", func(s *sim, t time.Time) {
			s.up("led", flow.Unsubscribe, t, "", nil).TopicFilters = []string{toggleTopic("led")}
			s.down("led", t.Add(1500*time.Millisecond), toggleTopic("led"), nil)
		}, map[Check]int{CheckUnsubscribedDelivery: 1}},
		{"delivery after a disconnect: unknown", func(s *sim, t time.Time) {
			s.up("led", flow.Disconnect, t, "", nil)
			s.down("led", t.Add(time.Millisecond), toggleTopic("doorOpener"), nil)
		}, map[Check]int{}},
		{"eavesdropping through an alerted wildcard", func(s *sim, t time.Time) {
			s.subscribe("doorSensor", t, "plant/#")
			for i, p := range plantPairs {
				at := t.Add(time.Duration(100+50*i) * time.Millisecond)
				corr := s.corr(p)
				s.chain(p, at, corr)
				// What the eavesdropper gets of the chain.
				s.down("doorSensor", at.Add(time.Millisecond), sensorTopic(p), corr)
				s.down("doorSensor", at.Add(5*time.Millisecond), toggleTopic(p.actuator), corr)
			}
		}, map[Check]int{CheckSubscription: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(61)
			start := s.startPlant(t0.Add(400 * time.Hour))
			next := s.rounds(start, 5)
			tc.run(s, next)
			s.rounds(next.Add(2*time.Second), 5)
			alerts, _ := runStream(m, s.sorted())
			got := map[Check]int{}
			for _, a := range alerts {
				if a.Check != CheckMissingCorrelation { // the test's deliveries carry no correlation id
					got[a.Check]++
				}
			}
			require.Equal(t, tc.want, got, "%v", alerts)
		})
	}
}

func TestIncidentsGroupFloods(t *testing.T) {
	m := trainedModel(t)
	s := newSim(71)
	start := s.startPlant(t0.Add(500 * time.Hour))
	next := s.rounds(start, 5)
	// A CONNECT flood from one host: 1,100 connections in 3 s, fresh ids.
	flooder := s.reconnect("flood-0")
	for i := range 1100 {
		id := fmt.Sprintf("flood-%d", i)
		s.addrs[id] = netip4Port(flooder.Addr().As4(), uint16(20000+i))
		s.connect(id, next.Add(time.Duration(i)*3*time.Second/1100))
	}
	s.rounds(next.Add(4*time.Second), 5)
	alerts, incs := runStream(m, s.sorted())
	require.Greater(t, len(alerts), 1000)
	require.LessOrEqual(t, len(incs), 5, "%v", incs)
	byCheck := map[Check]Incident{}
	for _, inc := range incs {
		byCheck[inc.Check] = inc
	}
	uc := byCheck[CheckUnknownClient]
	require.Equal(t, 1100, uc.Count)
	require.Equal(t, 1100, uc.ClientsTotal)
	require.Len(t, uc.Clients, 100)
	require.Len(t, uc.Flows, 20)
	require.Equal(t, []string{flooder.Addr().String()}, uc.Sources)
	require.Equal(t, SeverityMedium, uc.Severity)
	require.Contains(t, uc.Message, "from "+flooder.Addr().String())
	require.Contains(t, uc.Message, "1,100 client ids")
	require.True(t, uc.Closed)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{16}$`), uc.ID)
	require.Contains(t, byCheck[CheckRate].Message, "CONNECT flood")
	require.Equal(t, SeverityHigh, byCheck[CheckRate].Severity)

	// The id is stable: the same flows give the same incidents.
	_, again := runStream(m, s.sorted())
	require.Equal(t, incs, again)
}

func TestIncidentsIdleClose(t *testing.T) {
	g := NewIncidents(IncidentOptions{Idle: time.Minute})
	at := t0
	var closed []string
	a := func(dt time.Duration, client string) (*Incident, IncidentChange) {
		return g.Add(&Alert{Check: CheckSubscription, Severity: SeverityMedium, Time: at.Add(dt), Client: client, Topic: "#"},
			func(inc *Incident) { closed = append(closed, inc.ID) })
	}
	i1, ch := a(0, "x")
	require.Equal(t, IncidentOpened, ch)
	i2, ch := a(59*time.Second, "x")
	require.Equal(t, IncidentUpdated, ch)
	require.Same(t, i1, i2)
	require.Equal(t, 2, i1.Count)
	_, ch = a(3*time.Minute, "x") // idle for over a minute: a new one
	require.Equal(t, IncidentOpened, ch)
	require.Equal(t, []string{i1.ID}, closed)
	require.True(t, i1.Closed)
	_, ch = a(3*time.Minute, "y") // another root
	require.Equal(t, IncidentOpened, ch)
	require.Equal(t, 2, g.Stats().Open)
}

// eveSchema is the type of each field of Suricata's EVE format that the
// writer emits (Suricata's documented EVE schema: common section, alert,
// anomaly, mqtt): "string", "integer", "boolean", "object", "array".
// Fields marked required must be present in every event of that type.
var eveSchema = map[string]string{
	"timestamp": "string", "flow_id": "integer", "event_type": "string",
	"src_ip": "string", "src_port": "integer", "dest_ip": "string", "dest_port": "integer",
	"proto": "string", "app_proto": "string",
	"alert": "object", "alert.action": "string", "alert.gid": "integer", "alert.signature_id": "integer",
	"alert.rev": "integer", "alert.signature": "string", "alert.category": "string", "alert.severity": "integer",
	"anomaly": "object", "anomaly.type": "string", "anomaly.event": "string", "anomaly.layer": "string",
	"mqtt":         "object",
	"mqtt.connect": "object", "mqtt.connect.qos": "integer", "mqtt.connect.retain": "boolean",
	"mqtt.connect.dup": "boolean", "mqtt.connect.client_id": "string",
	"mqtt.publish": "object", "mqtt.publish.qos": "integer", "mqtt.publish.retain": "boolean",
	"mqtt.publish.dup": "boolean", "mqtt.publish.topic": "string", "mqtt.publish.message_id": "integer",
	"mqtt.publish.properties": "object", "mqtt.publish.properties.correlation_data": "string",
	"mqtt.subscribe": "object", "mqtt.subscribe.qos": "integer", "mqtt.subscribe.retain": "boolean",
	"mqtt.subscribe.dup": "boolean", "mqtt.subscribe.message_id": "integer", "mqtt.subscribe.topics": "array", "mqtt.subscribe.topics[]": "object",
	"mqtt.subscribe.topics[].topic": "string", "mqtt.subscribe.topics[].qos": "integer",
	"mqtt.unsubscribe": "object", "mqtt.unsubscribe.qos": "integer", "mqtt.unsubscribe.retain": "boolean",
	"mqtt.unsubscribe.dup": "boolean", "mqtt.unsubscribe.message_id": "integer", "mqtt.unsubscribe.topics": "array",
	"mqtt.unsubscribe.topics[]": "string",
	// CoAP alerts (Suricata has no CoAP parser: mission's fields).
	"coap": "object", "coap.type": "string", "coap.code": "string", "coap.method": "string", "coap.path": "string",
	"coap.query": "string", "coap.messageId": "integer", "coap.token": "string", "coap.responseCode": "string",
	// mission's own object (not Suricata's: consumers pass it through).
	"mission": "object", "mission.check": "string", "mission.client": "string", "mission.topic": "string",
	"mission.case": "string", "mission.flows": "array", "mission.flows[]": "integer", "mission.message": "string",
	"mission.severity": "string",
}

var eveRequired = map[string][]string{
	"alert": {"timestamp", "flow_id", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "proto",
		"alert.action", "alert.gid", "alert.signature_id", "alert.rev", "alert.signature", "alert.category", "alert.severity"},
	"anomaly": {"timestamp", "flow_id", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "proto",
		"anomaly.type", "anomaly.event"},
}

// checkEVE validates v (a decoded event) against eveSchema at path.
func checkEVE(t *testing.T, path string, v any, seen map[string]bool) {
	t.Helper()
	typ := map[bool]string{}
	_ = typ
	var got string
	switch x := v.(type) {
	case string:
		got = "string"
	case bool:
		got = "boolean"
	case json.Number:
		_, err := x.Int64()
		require.NoError(t, err, "%s: %s is not an integer", path, x)
		got = "integer"
	case map[string]any:
		got = "object"
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			checkEVE(t, p, e, seen)
		}
	case []any:
		got = "array"
		for _, e := range x {
			checkEVE(t, path+"[]", e, seen)
		}
	default:
		t.Fatalf("%s: unexpected %T", path, v)
	}
	if path == "" {
		return
	}
	want, ok := eveSchema[path]
	require.True(t, ok, "field %s is not in the EVE schema", path)
	require.Equal(t, want, got, "type of %s", path)
	seen[path] = true
}

func TestEVEOutputMatchesSuricataSchema(t *testing.T) {
	m := trainedModel(t)
	var buf bytes.Buffer
	eve := NewEVEWriter(&buf)
	var alerts []Alert
	for _, at := range attacks() {
		s := newSim(81)
		start := s.startPlant(t0.Add(600 * time.Hour))
		at.run(s, s.rounds(start, 3))
		a, _ := runStream(m, s.sorted())
		alerts = append(alerts, a...)
	}
	checks := map[Check]bool{}
	for i := range alerts {
		require.NoError(t, eve.Alert(&alerts[i]))
		checks[alerts[i].Check] = true
	}
	rec := flow.Record{FlowID: 77, Start: t0, ControlType: flow.Publish, QoS: 1, PacketID: 3, Topic: "plant/x",
		SrcClientID: "s", SrcAddr: mustAddr("10.0.0.9"), SrcPort: 4000, DstAddr: mustAddr("10.0.0.1"), DstPort: 1883}
	require.NoError(t, eve.Anomaly(&rec, "mqtt.invalid_qos"))
	require.NoError(t, eve.Flush())
	require.Len(t, checks, 7, "every check but unsubscribed-delivery and temporal is exercised: %v", checks)

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, len(alerts)+1)
	tsRe := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d{4}$`)
	sids := map[int]Check{}
	for i, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		var ev map[string]any
		require.NoError(t, dec.Decode(&ev), l)
		seen := map[string]bool{}
		checkEVE(t, "", ev, seen)
		et := ev["event_type"].(string)
		for _, f := range eveRequired[et] {
			require.True(t, seen[f], "%s event without %s: %s", et, f, l)
		}
		require.Regexp(t, tsRe, ev["timestamp"])
		require.Equal(t, "TCP", ev["proto"])
		if et == "alert" {
			al := ev["alert"].(map[string]any)
			require.Equal(t, "allowed", al["action"])
			sev, _ := al["severity"].(json.Number).Int64()
			require.True(t, sev >= 1 && sev <= 3, l)
			sid, _ := al["signature_id"].(json.Number).Int64()
			c := alerts[i].Check
			if prev, ok := sids[int(sid)]; ok {
				require.Equal(t, prev, c, "signature id %d for two checks", sid)
			}
			sids[int(sid)] = c
			require.Equal(t, EVESignatures[c].ID, int(sid))
		}
	}
	// Signature ids are unique per check.
	ids := map[int]bool{}
	for _, s := range EVESignatures {
		require.False(t, ids[s.ID])
		ids[s.ID] = true
		require.GreaterOrEqual(t, s.ID, 9990001)
	}
}

func netip4Port(a [4]byte, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(a), port)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
