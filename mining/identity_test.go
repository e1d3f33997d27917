package mining

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

// sampleModel is the model mined from testdata/sample.pcap (the research
// plant on a real mosquitto, 6 rounds):
//
//	mission all-in-one --read testdata/sample.pcap --data-dir S
//	mission mine --data-dir S --out M --test-fraction 0
//	cp M/model.json mining/testdata/sample-model.json
func sampleModel(t testing.TB) *Model {
	m, err := ReadModelFile("testdata/sample-model.json")
	require.NoError(t, err)
	return m
}

var (
	idBroker = netip.MustParseAddrPort("127.0.0.1:1883")
	idT0     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// midFlow is a flow of the connection from 127.0.0.1:port picked up
// midstream: no client id (flow.IdentityNone). up: client → broker.
type midFlow struct {
	port   uint16
	up     bool
	typ    flow.ControlType
	topic  string
	filter []string
	corr   string
	at     time.Duration
}

func (f midFlow) record(id uint64) flow.Record {
	c := netip.AddrPortFrom(idBroker.Addr(), f.port)
	r := flow.Record{FlowID: id, Protocol: 6, ControlType: f.typ, ProtocolVersion: 5, QoS: 1,
		Start: idT0.Add(f.at), End: idT0.Add(f.at + time.Millisecond), Topic: f.topic, TopicFilters: f.filter,
		IdentitySource: flow.IdentityNone}
	if f.corr != "" {
		r.CorrelationData, r.CorrelationSource = []byte(f.corr), flow.CorrelationData
	}
	if f.up {
		r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort = c.Addr(), c.Port(), idBroker.Addr(), idBroker.Port()
		r.DstClientID = flow.BrokerClientID
	} else {
		r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort = idBroker.Addr(), idBroker.Port(), c.Addr(), c.Port()
		r.SrcClientID = flow.BrokerClientID
	}
	return r
}

func pub(port uint16, topic string, at time.Duration) midFlow {
	return midFlow{port: port, up: true, typ: flow.Publish, topic: topic, at: at}
}

func deliver(port uint16, topic string, at time.Duration) midFlow {
	return midFlow{port: port, typ: flow.Publish, topic: topic, at: at}
}

func sub(port uint16, at time.Duration, filters ...string) midFlow {
	return midFlow{port: port, up: true, typ: flow.Subscribe, filter: filters, at: at}
}

func ping(port uint16, at time.Duration) midFlow {
	return midFlow{port: port, up: true, typ: flow.PingReq, at: at}
}

// inferState is what the detector holds for connection port.
func inferState(d *Detector, port uint16) (connState, string, bool) {
	ci := d.conns[connKey{client: netip.AddrPortFrom(idBroker.Addr(), port), broker: idBroker}]
	if ci == nil {
		return 0, "", false
	}
	return ci.state, ci.id, true
}

// withSharedTopic adds a second publisher of plant/sensors/door (the
// ambiguous case): doorSensor and spareSensor both published it; only
// spareSensor published plant/sensors/spare.
func withSharedTopic(m *Model) *Model {
	c := *m
	c.Activities = append(slices.Clone(m.Activities),
		ActivityInfo{Activity: Activity("spareSensor", "plant/sensors/door"), Client: "spareSensor", Topic: "plant/sensors/door", Count: 1, Cases: 1},
		ActivityInfo{Activity: Activity("spareSensor", "plant/sensors/spare"), Client: "spareSensor", Topic: "plant/sensors/spare", Count: 1, Cases: 1})
	c.Clients = append(slices.Clone(m.Clients), ClientProfile{Client: "spareSensor", Publish: 6, Connect: 1})
	return &c
}

func TestIdentityInference(t *testing.T) {
	sample := sampleModel(t)
	shared := withSharedTopic(sample)
	const p = 40001
	for _, tc := range []struct {
		name    string
		model   *Model
		flows   []midFlow
		state   connState // after the flows
		id      string
		notices int
	}{
		{"publish of a topic one client published", sample, []midFlow{pub(p, "plant/sensors/door", 0)}, connInferred, "doorSensor", 0},
		{"controller by its toggle", sample, []midFlow{pub(p, "plant/actuators/led/toggleState", 0)}, connInferred, "controller", 0},
		{"actuator by its state", sample, []midFlow{pub(p, "plant/actuators/shutter/state", 0)}, connInferred, "shutter", 0},
		{"delivery only one client subscribed to", sample, []midFlow{deliver(p, "plant/actuators/led/toggleState", 0)}, connInferred, "led", 0},
		{"delivery of a sensor reading: the controller", sample, []midFlow{deliver(p, "plant/sensors/smoke", 0)}, connInferred, "controller", 0},
		{"subscription only one client made", sample, []midFlow{sub(p, 0, "plant/actuators/thermostat/toggleState")}, connInferred, "thermostat", 0},
		{"pings say nothing", sample, []midFlow{ping(p, 0), ping(p, 10*time.Second)}, connPending, "", 0},
		{"pings for longer than the window: one notice", sample, []midFlow{ping(p, 0), ping(p, 31*time.Second), ping(p, 62*time.Second)}, connUnidentified, "", 1},
		{"delivery nobody subscribed to says nothing", sample, []midFlow{deliver(p, "plant/other", 0)}, connPending, "", 0},
		{"plain filter nobody made says nothing", sample, []midFlow{sub(p, 0, "plant/new")}, connPending, "", 0},
		{"topic nobody published: one notice", sample, []midFlow{pub(p, "plant/x", 0), pub(p, "plant/x", time.Second), pub(p, "plant/sensors/door", 2*time.Second)}, connUnidentified, "", 1},
		{"wildcard nobody made: one notice", sample, []midFlow{sub(p, 0, "plant/#")}, connUnidentified, "", 1},
		{"two publishers: ambiguous", shared, []midFlow{pub(p, "plant/sensors/door", 0), pub(p, "plant/sensors/door", time.Second)}, connPending, "", 0},
		{"two publishers, then a topic only one published", shared, []midFlow{pub(p, "plant/sensors/door", 0), pub(p, "plant/sensors/spare", time.Second)}, connInferred, "spareSensor", 0},
		{"two publishers, still ambiguous past the window", shared, []midFlow{pub(p, "plant/sensors/door", 0), pub(p, "plant/sensors/door", 31*time.Second)}, connUnidentified, "", 1},
		{"disjoint evidence: one notice", sample, []midFlow{deliver(p, "plant/sensors/door", 0), pub(p, "plant/sensors/door", time.Second)}, connUnidentified, "", 1},
		{"inferred, then contradicted: withdrawn, one notice", sample, []midFlow{
			pub(p, "plant/sensors/door", 0), pub(p, "plant/sensors/door", time.Second),
			pub(p, "plant/sensors/motion", 2*time.Second), pub(p, "plant/sensors/motion", 3*time.Second), pub(p, "plant/x", 4*time.Second),
		}, connUnidentified, "", 1},
		{"inferred, then what it may do", sample, []midFlow{
			sub(p, 0, "plant/actuators/led/toggleState"), deliver(p, "plant/actuators/led/toggleState", time.Second),
			pub(p, "plant/actuators/led/state", 2*time.Second), ping(p, 3*time.Second),
		}, connInferred, "led", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDetector(tc.model, DetectorOptions{})
			var alerts []Alert
			for i, f := range tc.flows {
				r := f.record(uint64(i + 1))
				before := r
				alerts = append(alerts, d.Observe(&r)...)
				require.Equal(t, before, r, "the record handed in is not changed")
			}
			var notices []Alert
			for _, a := range alerts {
				if a.Check == CheckUnidentifiedConnection {
					notices = append(notices, a)
					continue
				}
				require.NotEqual(t, "127.0.0.1:40001", a.Client, "no per-flow alert of an unnamed client: %v", a)
				if a.Client != Broker {
					require.Equal(t, "inferred", a.Flow.Identity, "%v", a)
				}
			}
			require.Len(t, notices, tc.notices, "%v", notices)
			for _, a := range notices {
				require.Equal(t, SeverityLow, a.Severity)
				require.Equal(t, "127.0.0.1:40001", a.Client)
				require.Equal(t, "connection 127.0.0.1:40001 → 127.0.0.1:1883", rootOf(&a))
			}
			st, id, ok := inferState(d, p)
			require.True(t, ok)
			require.Equal(t, tc.state, st)
			require.Equal(t, tc.id, id)
			s := d.Stats()
			require.Equal(t, uint64(tc.notices), s.Unidentified)
			require.Equal(t, 1, s.Connections)
		})
	}
}

// Normal plant traffic picked up midstream, on the sample model: every
// connection is named by its first telling flow, the chains are checked
// as the named clients' and raise nothing.
func TestIdentityNormalChainsMidstream(t *testing.T) {
	d := NewDetector(sampleModel(t), DetectorOptions{})
	ports := map[string]uint16{"controller": 41000, "doorSensor": 41001, "doorOpener": 41002, "motionSensor": 41003, "led": 41004}
	var flows []midFlow
	at := time.Duration(0)
	for round := range 4 {
		for _, ch := range []struct{ sensor, kind, act string }{{"doorSensor", "door", "doorOpener"}, {"motionSensor", "motion", "led"}} {
			corr := string(rune('a'+round)) + ch.kind
			toggle, state := "plant/actuators/"+ch.act+"/toggleState", "plant/actuators/"+ch.act+"/state"
			step := func(f midFlow) {
				f.corr, f.at = corr, at
				flows = append(flows, f)
				at += 3 * time.Millisecond
			}
			step(pub(ports[ch.sensor], "plant/sensors/"+ch.kind, 0))
			step(deliver(ports["controller"], "plant/sensors/"+ch.kind, 0))
			step(pub(ports["controller"], toggle, 0))
			step(deliver(ports[ch.act], toggle, 0))
			step(pub(ports[ch.act], state, 0))
			at += 500 * time.Millisecond
		}
	}
	var alerts []Alert
	var checked []flow.Record
	for i, f := range flows {
		r := f.record(uint64(i + 1))
		alerts = append(alerts, d.Observe(&r)...)
		checked = append(checked, r)
	}
	alerts = append(alerts, d.Flush()...)
	require.Empty(t, alerts)
	s := d.Stats()
	require.Equal(t, uint64(5), s.Inferred)
	require.Zero(t, s.Unidentified)
	require.Zero(t, s.UnidentifiedFlows, "every connection named by its first flow")
	require.Equal(t, uint64(len(flows)), s.InferredFlows)
	require.Equal(t, uint64(8), s.Closed)
	for name, port := range ports {
		st, id, _ := inferState(d, port)
		require.Equal(t, connInferred, st, name)
		require.Equal(t, name, id)
	}
	for _, r := range checked {
		require.Equal(t, flow.IdentityNone, r.IdentitySource, "the caller's records keep none")
	}
}

// An inferred client's alerts say so; the detector's copy of the flow
// names the client.
func TestIdentityInferredAlertsAreMarked(t *testing.T) {
	d := NewDetector(sampleModel(t), DetectorOptions{})
	var alerts []Alert
	for i := range 30 { // doorSensor's bound: ceil(6 × 2) + 5 per 10 s
		f := pub(42000, "plant/sensors/door", time.Duration(i)*100*time.Millisecond)
		f.corr = string(rune('A' + i))
		r := f.record(uint64(i + 1))
		alerts = append(alerts, d.Observe(&r)...)
	}
	require.Len(t, alerts, 1, "%v", alerts)
	a := alerts[0]
	require.Equal(t, CheckRate, a.Check)
	require.Equal(t, "doorSensor", a.Client)
	require.Equal(t, "inferred", a.Flow.Identity)
	require.Equal(t, "doorSensor", a.Flow.ClientID)
	require.Equal(t, EVESignature{9990010, "MISSION MQTT connection picked up midstream, client not identified", "Not Suspicious Traffic"},
		EVESignatures[CheckUnidentifiedConnection])
}

// A flow that carries a client id (CONNECT seen, restored, collector)
// forgets its connection's entry; a DISCONNECT does too.
func TestIdentityForgottenWhenNamed(t *testing.T) {
	d := NewDetector(sampleModel(t), DetectorOptions{})
	r := pub(43000, "plant/sensors/door", 0).record(1)
	d.Observe(&r)
	require.Equal(t, 1, d.Stats().Connections)
	r = pub(43000, "plant/sensors/door", time.Second).record(2)
	r.SrcClientID, r.IdentitySource = "doorSensor", flow.IdentityCollector
	require.Empty(t, d.Observe(&r))
	st, _, _ := inferState(d, 43000)
	require.Equal(t, connNamed, st, "held to notice its pickup once")
	r = pub(43000, "plant/sensors/door", 2*time.Second).record(5)
	r.SrcClientID, r.IdentitySource = "doorSensor", flow.IdentityConnect
	require.Empty(t, d.Observe(&r))
	require.Zero(t, d.Stats().Connections, "a CONNECT-named flow forgets it")

	r = ping(43001, 0).record(3)
	d.Observe(&r)
	r = midFlow{port: 43001, up: true, typ: flow.Disconnect, at: time.Second}.record(4)
	require.Empty(t, d.Observe(&r))
	require.Zero(t, d.Stats().Connections)
}

func TestIdentityTableIsBounded(t *testing.T) {
	d := NewDetector(sampleModel(t), DetectorOptions{MaxConnections: 3})
	for i := range 10 {
		r := pub(uint16(44000+i), "plant/sensors/door", time.Duration(i)*time.Millisecond).record(uint64(i + 1))
		d.Observe(&r)
	}
	s := d.Stats()
	require.Equal(t, 3, s.Connections)
	require.Equal(t, uint64(7), s.ConnsEvicted)
	require.Equal(t, 3, d.connLRU.Len())
	for i := range 7 {
		_, _, ok := inferState(d, uint16(44000+i))
		require.False(t, ok, "least recently seen evicted first")
	}
}

// An unidentified client's case event makes its case unchecked: the
// identified events of the same case raise nothing either.
func TestIdentityUnidentifiedCaseIsNotChecked(t *testing.T) {
	d := NewDetector(sampleModel(t), DetectorOptions{})
	var alerts []Alert
	const later = 5 * time.Second // past the cut window of the pickups
	door := pub(45000, "plant/sensors/door", later+time.Millisecond)
	door.corr = "c1"
	toController := deliver(45001, "plant/sensors/door", later+2*time.Millisecond)
	toController.corr = "c1"
	state := pub(45002, "plant/actuators/led/state", later+3*time.Millisecond) // led, out of place
	state.corr = "c1"
	flows := []midFlow{sub(45000, 0, "plant/#"), sub(45001, 0, "plant/sensors/door"), sub(45002, 0, "plant/actuators/led/toggleState"),
		door, toController, state}
	for i, f := range flows {
		r := f.record(uint64(i + 1))
		alerts = append(alerts, d.Observe(&r)...)
	}
	alerts = append(alerts, d.Flush()...)
	require.Len(t, alerts, 1, "%v", alerts)
	require.Equal(t, CheckUnidentifiedConnection, alerts[0].Check)
}

// Capture boundaries: a case open when a connection is picked up
// midstream (the probe restarted: flows restored from its state file, or
// named by the collector), or open when a live capture stops (Cut), may
// miss events and is not alarmed for them; without a boundary the same
// case is.
func TestIdentityCutCases(t *testing.T) {
	open := func(d *Detector) {
		r := ping(46002, -time.Millisecond).record(9) // the controller is connected: the reading goes to it
		r.SrcClientID, r.IdentitySource = "controller", flow.IdentityConnect
		require.Empty(t, d.Observe(&r))
		f := pub(46000, "plant/sensors/door", 0)
		f.corr = "c1"
		r = f.record(1)
		r.SrcClientID, r.IdentitySource = "doorSensor", flow.IdentityConnect
		require.Empty(t, d.Observe(&r))
		f = deliver(46002, "plant/sensors/door", time.Millisecond)
		f.corr = "c1"
		r = f.record(3)
		r.DstClientID, r.IdentitySource = "controller", flow.IdentityConnect
		require.Empty(t, d.Observe(&r))
	}
	for _, tc := range []struct {
		name     string
		boundary func(d *Detector)
		cut      bool
	}{
		{"no boundary: the case ends early", func(*Detector) {}, false},
		{"restored connection picked up", func(d *Detector) {
			r := ping(46001, 100*time.Millisecond).record(2)
			r.SrcClientID, r.IdentitySource = "controller", flow.IdentityRestored
			require.Empty(t, d.Observe(&r))
		}, true},
		{"collector-named connection picked up", func(d *Detector) {
			r := ping(46001, 100*time.Millisecond).record(2)
			r.SrcClientID, r.IdentitySource = "controller", flow.IdentityCollector
			require.Empty(t, d.Observe(&r))
		}, true},
		{"connection without id picked up", func(d *Detector) {
			r := ping(46001, 100*time.Millisecond).record(2)
			require.Empty(t, d.Observe(&r))
		}, true},
		{"live capture stopped", (*Detector).Cut, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDetector(sampleModel(t), DetectorOptions{})
			open(d)
			tc.boundary(d)
			alerts := d.Flush()
			if tc.cut {
				require.Empty(t, alerts)
				require.Equal(t, uint64(1), d.Stats().CutCases)
			} else {
				require.NotEmpty(t, alerts)
				require.Zero(t, d.Stats().CutCases)
			}
		})
	}
}
