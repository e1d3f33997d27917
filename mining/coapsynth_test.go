package mining

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
)

// A synthetic CoAP plant: every device is a CoAP server on port 5683, the
// controller and a dashboard are clients sending from a fresh ephemeral
// port per request (as CoAP clients do). Each round (one second) the
// controller reads the temperature and the motion sensor (GET) and sets
// the LED (PUT); the door sensor notifies the controller of its state
// (an Observe registration made once at start); every fifth round the
// dashboard reads the LED with a query and the lock's log block-wise
// (Block2, three blocks), and pings the lock (empty CON, RST).
//
// With cases, the controller's GET /motion and PUT /led/state of a round
// share a correlation id (as the probe's --coap-case-option copies it),
// and the door's registration has one that every notification repeats.

var (
	coapController = netip.MustParseAddr("10.1.0.2")
	coapDashboard  = netip.MustParseAddr("10.1.0.3")
	coapTemp       = netip.MustParseAddr("10.1.0.10")
	coapMotion     = netip.MustParseAddr("10.1.0.11")
	coapDoor       = netip.MustParseAddr("10.1.0.12")
	coapLED        = netip.MustParseAddr("10.1.0.20")
	coapLock       = netip.MustParseAddr("10.1.0.21")
)

type coapSim struct {
	rng    *rand.Rand
	flowID uint64
	mid    uint16
	recs   []flow.Record
	cases  bool
}

func newCoAPSim(seed uint64, cases bool) *coapSim {
	return &coapSim{rng: rand.New(rand.NewPCG(seed, seed^0x51)), flowID: seed << 32, mid: uint16(seed), cases: cases}
}

func (s *coapSim) port() uint16 { return uint16(32768 + s.rng.IntN(28000)) }

func (s *coapSim) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// exchange adds one CoAP flow from src to dst and returns it.
func (s *coapSim) exchange(src netip.AddrPort, dst netip.AddrPort, t time.Time, c flow.CoAP, corr []byte) *flow.Record {
	s.flowID++
	s.mid++
	c.MessageID = s.mid
	if c.Token == nil && c.Code != 0 {
		c.Token = binary.BigEndian.AppendUint32(nil, uint32(s.flowID))
	}
	r := flow.Record{FlowID: s.flowID, SrcAddr: src.Addr(), SrcPort: src.Port(), DstAddr: dst.Addr(), DstPort: dst.Port(),
		Protocol: 17, Start: t, End: t.Add(s.dur(500*time.Microsecond, 3*time.Millisecond)), Packets: 2, Octets: 40,
		EndReason: flow.EndOfFlow, ApplicationProtocol: flow.AppCoAP, CoAP: &c, CorrelationData: corr}
	if corr != nil {
		r.CorrelationSource = flow.CorrelationData
	}
	s.recs = append(s.recs, r)
	return &s.recs[len(s.recs)-1]
}

func server(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, 5683) }

// request sends method on path from client (a fresh port) to srv.
func (s *coapSim) request(client, srv netip.Addr, t time.Time, method coapparse.Code, path string, resp coapparse.Code, corr []byte) *flow.Record {
	return s.exchange(netip.AddrPortFrom(client, s.port()), server(srv), t,
		flow.CoAP{Type: uint8(coapparse.Confirmable), Code: uint8(method), Method: uint8(method), URIPath: path, ResponseCode: uint8(resp)}, corr)
}

func (s *coapSim) corr() []byte {
	if !s.cases {
		return nil
	}
	return binary.BigEndian.AppendUint64(nil, s.rng.Uint64())
}

var observePort = uint16(40001)

// observeCase is the case key of the door observation (with cases): the
// probe gives every notification its registration's.
var observeCase = []byte("observe-door")

func (s *coapSim) observeCase() []byte {
	if !s.cases {
		return nil
	}
	return observeCase
}

// start registers the controller's observation of the door.
func (s *coapSim) start(t time.Time) time.Time {
	s.exchange(netip.AddrPortFrom(coapController, observePort), server(coapDoor), t,
		flow.CoAP{Type: uint8(coapparse.Confirmable), Code: uint8(coapparse.GET), Method: uint8(coapparse.GET),
			URIPath: "/door", ResponseCode: uint8(coapparse.Content), Observe: 0, HasObserve: true, Token: []byte{0xd0}}, s.observeCase())
	return t.Add(100 * time.Millisecond)
}

// round is one second of the plant starting at t.
func (s *coapSim) round(i int, t time.Time) {
	s.request(coapController, coapTemp, t, coapparse.GET, "/temperature", coapparse.Content, nil)
	t = t.Add(s.dur(5*time.Millisecond, 20*time.Millisecond))
	c := s.corr()
	s.request(coapController, coapMotion, t, coapparse.GET, "/motion", coapparse.Content, c)
	t = t.Add(s.dur(5*time.Millisecond, 20*time.Millisecond))
	s.request(coapController, coapLED, t, coapparse.PUT, "/led/state", coapparse.Changed, c)
	t = t.Add(s.dur(5*time.Millisecond, 20*time.Millisecond))
	s.exchange(server(coapDoor), netip.AddrPortFrom(coapController, observePort), t,
		flow.CoAP{Type: uint8(coapparse.NonConfirmable), Code: uint8(coapparse.Content), Method: uint8(coapparse.GET),
			URIPath: "/door", ResponseCode: uint8(coapparse.Content), Observe: uint32(i + 2), HasObserve: true, Token: []byte{0xd0}}, s.observeCase())
	if i%5 == 0 {
		t = t.Add(s.dur(5*time.Millisecond, 20*time.Millisecond))
		r := s.request(coapDashboard, coapLED, t, coapparse.GET, "/led/state", coapparse.Content, nil)
		r.CoAP.URIQuery = "since=" + time.Duration(i).String()
		for b := uint32(0); b < 3; b++ {
			t = t.Add(s.dur(2*time.Millisecond, 5*time.Millisecond))
			r := s.request(coapDashboard, coapLock, t, coapparse.GET, "/log", coapparse.Content, nil)
			r.CoAP.Block, r.CoAP.BlockOption = b<<4|8|2, flow.Block2
		}
		t = t.Add(s.dur(5*time.Millisecond, 20*time.Millisecond))
		s.exchange(netip.AddrPortFrom(coapDashboard, s.port()), server(coapLock), t,
			flow.CoAP{Type: uint8(coapparse.Confirmable)}, nil)
	}
}

// run adds n rounds from t and returns the time after them.
func (s *coapSim) run(t time.Time, n int) time.Time {
	for i := range n {
		s.round(i, t.Add(time.Duration(i)*time.Second))
	}
	return t.Add(time.Duration(n) * time.Second)
}

func (s *coapSim) sorted() []flow.Record {
	out := slices.Clone(s.recs)
	slices.SortStableFunc(out, func(a, b flow.Record) int { return a.Start.Compare(b.Start) })
	return out
}

// normalCoAPPlant is n rounds of the plant with seed.
func normalCoAPPlant(seed uint64, cases bool, start time.Time, n int) []flow.Record {
	s := newCoAPSim(seed, cases)
	s.run(s.start(start), n)
	return s.sorted()
}
