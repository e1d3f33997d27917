package mining

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/mission-ids/mission/flow"
)

// A synthetic plant shaped like the research plant (internal/plant): five
// sensors publish a reading with a fresh correlation id (QoS 2); the broker
// delivers it to the controller, which forwards it to the actuator's toggle
// topic with the same correlation id; the broker delivers the toggle; the
// actuator answers on its state topic echoing the id; the broker delivers
// the state to the controller. Six PUBLISH flows per chain.

type pair struct{ sensor, kind, actuator string }

var plantPairs = []pair{
	{"temperatureSensor", "temperature", "thermostat"},
	{"motionSensor", "motion", "led"},
	{"windowSensor", "window", "shutter"},
	{"doorSensor", "door", "doorOpener"},
	{"smokeSensor", "smoke", "fireAlarm"},
}

const controller = "controller"

func sensorTopic(p pair) string   { return "plant/sensors/" + p.kind }
func toggleTopic(a string) string { return "plant/actuators/" + a + "/toggleState" }
func stateTopic(a string) string  { return "plant/actuators/" + a + "/state" }

// designedEdges are the directly-follows edges the plant is built to make.
func designedEdges() []Edge {
	var es []Edge
	for _, p := range plantPairs {
		chain := chainActivities(p)
		for i := 1; i < len(chain); i++ {
			es = append(es, Edge{From: chain[i-1], To: chain[i]})
		}
	}
	sortEdges(es)
	return es
}

func chainActivities(p pair) []string {
	return []string{
		Activity(p.sensor, sensorTopic(p)),
		Activity(Broker, sensorTopic(p)),
		Activity(controller, toggleTopic(p.actuator)),
		Activity(Broker, toggleTopic(p.actuator)),
		Activity(p.actuator, stateTopic(p.actuator)),
		Activity(Broker, stateTopic(p.actuator)),
	}
}

type sim struct {
	rng     *rand.Rand
	broker  netip.AddrPort
	addrs   map[string]netip.AddrPort
	nextIP  int
	flowID  uint64
	recs    []flow.Record
	binCorr bool // the temperature chain uses binary correlation data
}

func newSim(seed uint64) *sim {
	return &sim{
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		broker: netip.MustParseAddrPort("10.0.0.1:1883"),
		addrs:  map[string]netip.AddrPort{},
		nextIP: 10, flowID: seed << 32, binCorr: true,
	}
}

// addr gives each client one endpoint (a new one per call of reconnect).
func (s *sim) addr(id string) netip.AddrPort {
	if a, ok := s.addrs[id]; ok {
		return a
	}
	return s.reconnect(id)
}

func (s *sim) reconnect(id string) netip.AddrPort {
	s.nextIP++
	a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(s.nextIP >> 8), byte(s.nextIP)}), uint16(40000+s.rng.IntN(20000)))
	s.addrs[id] = a
	return a
}

func (s *sim) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

// up is a flow from client id to the broker.
func (s *sim) up(id string, typ flow.ControlType, t time.Time, topic string, corr []byte) *flow.Record {
	a := s.addr(id)
	s.flowID++
	s.recs = append(s.recs, flow.Record{
		FlowID: s.flowID, SrcAddr: a.Addr(), SrcPort: a.Port(), DstAddr: s.broker.Addr(), DstPort: s.broker.Port(), Protocol: 6,
		Start: t, End: t.Add(2 * time.Millisecond), ControlType: typ, ProtocolVersion: 5, QoS: 2,
		Topic: topic, SrcClientID: id, DstClientID: flow.BrokerClientID,
		CorrelationData: corr, CorrelationSource: corrSource(corr),
	})
	return &s.recs[len(s.recs)-1]
}

// down is a delivery from the broker to client id.
func (s *sim) down(id string, t time.Time, topic string, corr []byte) {
	a := s.addr(id)
	s.flowID++
	s.recs = append(s.recs, flow.Record{
		FlowID: s.flowID, SrcAddr: s.broker.Addr(), SrcPort: s.broker.Port(), DstAddr: a.Addr(), DstPort: a.Port(), Protocol: 6,
		Start: t, End: t.Add(2 * time.Millisecond), ControlType: flow.Publish, ProtocolVersion: 5, QoS: 2,
		Topic: topic, SrcClientID: flow.BrokerClientID, DstClientID: id,
		CorrelationData: corr, CorrelationSource: corrSource(corr),
	})
}

func corrSource(c []byte) flow.CorrelationSource {
	if len(c) == 0 {
		return flow.CorrelationNone
	}
	return flow.CorrelationData
}

func (s *sim) connect(id string, t time.Time) { s.up(id, flow.Connect, t, "", nil) }

func (s *sim) subscribe(id string, t time.Time, filters ...string) {
	s.up(id, flow.Subscribe, t, "", nil).TopicFilters = filters
}

func (s *sim) corr(p pair) []byte {
	if s.binCorr && p.kind == "temperature" {
		b := make([]byte, 8)
		for i := range b {
			b[i] = byte(s.rng.UintN(256))
		}
		b[0] = 0xff // never valid UTF-8: stored as hex
		return b
	}
	return fmt.Appendf(nil, "%08x-%04x-4%03x-%04x-%012x", s.rng.Uint32(), s.rng.UintN(1<<16), s.rng.UintN(1<<12),
		0x8000|s.rng.UintN(1<<14), s.rng.Uint64()&(1<<48-1))
}

// chain makes one reading's six flows starting at t; it returns the end.
func (s *sim) chain(p pair, t time.Time, corr []byte) time.Time {
	s.up(p.sensor, flow.Publish, t, sensorTopic(p), corr)
	t = t.Add(s.dur(time.Millisecond, 3*time.Millisecond))
	s.down(controller, t, sensorTopic(p), corr)
	t = t.Add(s.dur(time.Millisecond, 4*time.Millisecond))
	s.up(controller, flow.Publish, t, toggleTopic(p.actuator), corr)
	t = t.Add(s.dur(time.Millisecond, 3*time.Millisecond))
	s.down(p.actuator, t, toggleTopic(p.actuator), corr)
	t = t.Add(s.dur(2*time.Millisecond, 8*time.Millisecond))
	s.up(p.actuator, flow.Publish, t, stateTopic(p.actuator), corr)
	t = t.Add(s.dur(time.Millisecond, 3*time.Millisecond))
	s.down(controller, t, stateTopic(p.actuator), corr)
	return t
}

// startPlant connects and subscribes every client at t.
func (s *sim) startPlant(t time.Time) time.Time {
	var filters []string
	for _, p := range plantPairs {
		filters = append(filters, sensorTopic(p), stateTopic(p.actuator))
	}
	s.connect(controller, t)
	s.subscribe(controller, t.Add(5*time.Millisecond), filters...)
	for i, p := range plantPairs {
		t0 := t.Add(time.Duration(10+i) * time.Millisecond)
		s.connect(p.actuator, t0)
		s.subscribe(p.actuator, t0.Add(3*time.Millisecond), toggleTopic(p.actuator))
		s.connect(p.sensor, t0.Add(20*time.Millisecond))
	}
	return t.Add(100 * time.Millisecond)
}

// rounds runs n rounds of one second from t: each sensor reads with
// probability 0.8; every client pings every 15 rounds.
func (s *sim) rounds(t time.Time, n int) time.Time {
	for r := range n {
		rt := t.Add(time.Duration(r) * time.Second)
		for _, p := range plantPairs {
			if s.rng.Float64() < 0.8 {
				s.chain(p, rt.Add(s.dur(0, 500*time.Millisecond)), s.corr(p))
			}
			if r%15 == 14 {
				s.up(p.sensor, flow.PingReq, rt.Add(900*time.Millisecond), "", nil)
				s.up(p.actuator, flow.PingReq, rt.Add(900*time.Millisecond), "", nil)
			}
		}
	}
	return t.Add(time.Duration(n) * time.Second)
}

// sorted returns the records in time order.
func (s *sim) sorted() []flow.Record {
	out := slices.Clone(s.recs)
	slices.SortStableFunc(out, func(a, b flow.Record) int { return a.Start.Compare(b.Start) })
	return out
}

var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// normalPlant returns n rounds of normal plant traffic from start.
func normalPlant(seed uint64, start time.Time, n int) []flow.Record {
	s := newSim(seed)
	s.rounds(s.startPlant(start), n)
	return s.sorted()
}

// An attack adds flows to a running plant (rounds of normal traffic go on
// around it) at time t.
type attack struct {
	name string
	run  func(s *sim, t time.Time)
	want []Check // checks that must alert
}

func attacks() []attack {
	return []attack{
		{
			// The paper's first attack: a client spoofing motionSensor floods
			// the temperature topic; half the PUBLISHes reuse one correlation id.
			name: "spoofed publish flood",
			run: func(s *sim, t time.Time) {
				s.reconnect("motionSensor")
				s.connect("motionSensor", t)
				fixed := []byte("c0ffee00-0000-4000-8000-000000000001")
				temp := plantPairs[0]
				for i := range 300 {
					corr := fixed
					if i%2 == 1 {
						corr = s.corr(plantPairs[1])
					}
					at := t.Add(time.Duration(i) * 10 * time.Millisecond)
					s.up("motionSensor", flow.Publish, at, sensorTopic(temp), corr)
					// The plant reacts as to any reading.
					at = at.Add(2 * time.Millisecond)
					s.down(controller, at, sensorTopic(temp), corr)
					s.up(controller, flow.Publish, at.Add(2*time.Millisecond), toggleTopic(temp.actuator), corr)
					s.down(temp.actuator, at.Add(4*time.Millisecond), toggleTopic(temp.actuator), corr)
					s.up(temp.actuator, flow.Publish, at.Add(8*time.Millisecond), stateTopic(temp.actuator), corr)
					s.down(controller, at.Add(9*time.Millisecond), stateTopic(temp.actuator), corr)
				}
			},
			want: []Check{CheckUnknownActivity, CheckRate, CheckSkeleton},
		},
		{
			// The paper's second attack: PUBLISHes injected into an
			// actuator's toggle topic with a fixed correlation id, by a
			// client spoofing the controller.
			name: "toggle injection, fixed correlation id",
			run: func(s *sim, t time.Time) {
				s.reconnect(controller) // the attacker's own connection
				s.connect(controller, t)
				fixed := []byte("deadbeef-0000-4000-8000-00000000cafe")
				led := plantPairs[1].actuator
				for i := range 50 {
					at := t.Add(time.Duration(i) * 100 * time.Millisecond)
					s.up(controller, flow.Publish, at, toggleTopic(led), fixed)
					s.down(led, at.Add(2*time.Millisecond), toggleTopic(led), fixed)
					s.up(led, flow.Publish, at.Add(6*time.Millisecond), stateTopic(led), fixed)
					s.down(controller, at.Add(8*time.Millisecond), stateTopic(led), fixed)
				}
			},
			want: []Check{CheckDirectlyFollows, CheckSkeleton},
		},
		{
			// Reconnaissance: a client spoofing doorSensor subscribes to
			// everything and to the broker's $SYS tree.
			name: "wildcard and $SYS subscription",
			run: func(s *sim, t time.Time) {
				s.reconnect("doorSensor")
				s.connect("doorSensor", t)
				s.subscribe("doorSensor", t.Add(5*time.Millisecond), "plant/#")
				s.subscribe("doorSensor", t.Add(9*time.Millisecond), "$SYS/#")
			},
			want: []Check{CheckSubscription},
		},
		{
			// CONNECT flood: one client id reconnecting over and over.
			name: "connect flood",
			run: func(s *sim, t time.Time) {
				for i := range 200 {
					s.reconnect("windowSensor")
					s.connect("windowSensor", t.Add(time.Duration(i)*10*time.Millisecond))
				}
			},
			want: []Check{CheckRate},
		},
		{
			// An unknown client toggles an actuator directly.
			name: "unknown client toggles actuator",
			run: func(s *sim, t time.Time) {
				door := plantPairs[3].actuator
				s.connect("intruder", t)
				corr := []byte("11111111-2222-4333-8444-555555555555")
				s.up("intruder", flow.Publish, t.Add(20*time.Millisecond), toggleTopic(door), corr)
				s.down(door, t.Add(22*time.Millisecond), toggleTopic(door), corr)
				s.up(door, flow.Publish, t.Add(27*time.Millisecond), stateTopic(door), corr)
				s.down(controller, t.Add(29*time.Millisecond), stateTopic(door), corr)
			},
			want: []Check{CheckUnknownClient, CheckUnknownActivity},
		},
		{
			// A reading without correlation id on a topic that always has one.
			name: "publish without correlation id",
			run: func(s *sim, t time.Time) {
				smoke := plantPairs[4]
				s.up(smoke.sensor, flow.Publish, t, sensorTopic(smoke), nil)
				s.down(controller, t.Add(2*time.Millisecond), sensorTopic(smoke), nil)
			},
			want: []Check{CheckMissingCorrelation},
		},
		{
			// An actuator answering 5 s late (a delayed or replayed answer).
			name: "late actuator answer",
			run: func(s *sim, t time.Time) {
				p := plantPairs[2]
				corr := s.corr(p)
				s.up(p.sensor, flow.Publish, t, sensorTopic(p), corr)
				s.down(controller, t.Add(2*time.Millisecond), sensorTopic(p), corr)
				s.up(controller, flow.Publish, t.Add(4*time.Millisecond), toggleTopic(p.actuator), corr)
				s.down(p.actuator, t.Add(6*time.Millisecond), toggleTopic(p.actuator), corr)
				s.up(p.actuator, flow.Publish, t.Add(5*time.Second), stateTopic(p.actuator), corr)
				s.down(controller, t.Add(5*time.Second+2*time.Millisecond), stateTopic(p.actuator), corr)
			},
			want: []Check{CheckTemporal},
		},
	}
}
