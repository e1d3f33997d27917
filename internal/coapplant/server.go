package coapplant

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mission-ids/mission/coapparse"
)

// ContentJSON is the Content-Format of every representation the plant
// sends (application/json, RFC 7252 §12.3).
const ContentJSON = 50

// observeMask keeps Observe sequence numbers at 24 bits (RFC 7641 §4.4).
const observeMask = 1<<24 - 1

// Server is the plant's CoAP server: one resource per sensor reading and
// per actuator.
//
//   - /sensors/<name>/reading: POST stores a reading (2.04 Changed); GET
//     returns the last one (2.05 Content); GET with Observe 0 registers an
//     observation (RFC 7641), Observe 1 cancels it. Every stored reading is
//     sent to each observer as a notification with the next Observe
//     sequence number: every ObserveCONEvery-th one Confirmable (an
//     observer that answers it with RST, or not at all, is removed), the
//     others Non-confirmable.
//   - /actuators/<name>: GET returns its state (2.05), PUT sets it (2.04).
//   - Anything else: 4.04 Not Found; another method on a known resource:
//     4.05 Method Not Allowed. An empty CON (a ping) gets RST.
//
// Responses to CON requests are piggybacked on the ACK; NON requests get a
// NON response.
type Server struct {
	ep        *endpoint
	conEvery  int
	record    func(Exchange)
	ctx       context.Context
	mu        sync.Mutex
	readings  map[string][]byte // sensor name → last reading
	seq       map[string]uint32 // sensor name → Observe sequence of its last reading
	observers map[string]map[obsKey]*observer
	actuators map[string][]byte // actuator name → state
}

type obsKey struct {
	peer  netip.AddrPort
	token string
}

type observer struct {
	peer  netip.AddrPort
	token []byte
	sent  int // notifications sent
}

// ServerConfig configures a Server.
type ServerConfig struct {
	Address         netip.AddrPort // port 0: a free port
	Sensors         []string
	Actuators       []string
	ObserveCONEvery int // default 4
	Timing          Timing
	Seed            uint64
	// Loss is the share of incoming messages the server discards unseen
	// (simulated loss: the senders retransmit); default 0.
	Loss float64
	// Record, if set, gets every notification the server sent.
	Record func(Exchange)
}

// StartServer listens on cfg.Address and serves until Close or ctx ends
// (notifications under way stop with ctx).
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.ObserveCONEvery <= 0 {
		cfg.ObserveCONEvery = 4
	}
	s := &Server{
		conEvery: cfg.ObserveCONEvery, record: cfg.Record, ctx: ctx,
		readings: map[string][]byte{}, seq: map[string]uint32{},
		observers: map[string]map[obsKey]*observer{}, actuators: map[string][]byte{},
	}
	for _, n := range cfg.Sensors {
		s.readings[n] = []byte(`{"value":null}`)
		s.observers[n] = map[obsKey]*observer{}
	}
	for _, n := range cfg.Actuators {
		s.actuators[n] = []byte(`{"on":false}`)
	}
	var drop func() bool
	if cfg.Loss > 0 {
		loss := rand.New(rand.NewPCG(cfg.Seed, 0x1055)) // used by the read loop only
		drop = func() bool { return loss.Float64() < cfg.Loss }
	}
	ep, err := listen(cfg.Address, cfg.Timing, rand.New(rand.NewPCG(cfg.Seed, 0x5e)), s.handle, drop)
	if err != nil {
		return nil, err
	}
	s.ep = ep
	ep.start()
	return s, nil
}

// Address is where the server listens.
func (s *Server) Address() netip.AddrPort { return s.ep.addr }

// Close stops the server.
func (s *Server) Close() error { return s.ep.close() }

// Observers returns how many observations of sensor name are registered.
func (s *Server) Observers(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.observers[name])
}

// Actuator returns the state of actuator name.
func (s *Server) Actuator(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.actuators[name]
	return string(v), ok
}

func (s *Server) handle(from netip.AddrPort, req *coapparse.Message) ([]byte, func()) {
	if req.Code.IsEmpty() {
		if req.Type == coapparse.Confirmable {
			return emptyReply(coapparse.Reset, req.MessageID), nil // ping
		}
		return nil, nil
	}
	if !req.Code.IsRequest() {
		if req.Type == coapparse.Confirmable {
			return emptyReply(coapparse.Reset, req.MessageID), nil // nothing of ours to answer
		}
		return nil, nil
	}
	var resp coapparse.Message
	resp.Token = append([]byte(nil), req.Token...)
	after := s.serve(from, req, &resp)
	if req.Type == coapparse.Confirmable {
		resp.Type, resp.MessageID = coapparse.Acknowledgement, req.MessageID
	} else {
		resp.Type, resp.MessageID = coapparse.NonConfirmable, s.ep.mid()
	}
	b, err := coapparse.AppendMessage(nil, &resp)
	if err != nil {
		return nil, nil // cannot happen: the server builds only valid messages
	}
	return b, after
}

// serve fills resp for req and returns what to do once it is sent.
func (s *Server) serve(from netip.AddrPort, req *coapparse.Message, resp *coapparse.Message) func() {
	seg := strings.Split(strings.TrimPrefix(req.URIPath(), "/"), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(seg) == 3 && seg[0] == "sensors" && seg[2] == "reading" && s.observers[seg[1]] != nil:
		name := seg[1]
		switch req.Code {
		case coapparse.POST:
			s.readings[name] = append([]byte(nil), req.Payload...)
			s.seq[name] = (s.seq[name] + 1) & observeMask
			resp.Code = coapparse.Changed
			return s.notifyLocked(name)
		case coapparse.GET:
			resp.Code = coapparse.Content
			obs, hasObs := req.Observe()
			key := obsKey{from, string(req.Token)}
			switch {
			case hasObs && obs == 0:
				s.observers[name][key] = &observer{peer: from, token: append([]byte(nil), req.Token...)}
				_ = resp.AddUint(coapparse.Observe, s.seq[name])
			case hasObs && obs == 1:
				delete(s.observers[name], key)
			}
			_ = resp.AddUint(coapparse.ContentFormat, ContentJSON)
			resp.Payload = s.readings[name]
		default:
			resp.Code = coapparse.MethodNotAllowed
		}
	case len(seg) == 2 && seg[0] == "actuators" && s.actuators[seg[1]] != nil:
		name := seg[1]
		switch req.Code {
		case coapparse.GET:
			resp.Code = coapparse.Content
			_ = resp.AddUint(coapparse.ContentFormat, ContentJSON)
			resp.Payload = s.actuators[name]
		case coapparse.PUT:
			s.actuators[name] = append([]byte(nil), req.Payload...)
			resp.Code = coapparse.Changed
		default:
			resp.Code = coapparse.MethodNotAllowed
		}
	default:
		resp.Code = coapparse.NotFound
	}
	return nil
}

// notifyLocked returns a function sending sensor name's new reading to
// each of its observers. s.mu is held.
func (s *Server) notifyLocked(name string) func() {
	if len(s.observers[name]) == 0 {
		return nil
	}
	type note struct {
		o   *observer
		con bool
	}
	var notes []note
	for _, o := range s.observers[name] {
		notes = append(notes, note{o, o.sent%s.conEvery == s.conEvery-1})
		o.sent++
	}
	payload, seq := s.readings[name], s.seq[name]
	path := "/sensors/" + name + "/reading"
	return func() {
		for _, n := range notes {
			var m coapparse.Message
			m.Token = n.o.token
			m.Code = coapparse.Content
			_ = m.AddUint(coapparse.Observe, seq)
			_ = m.AddUint(coapparse.ContentFormat, ContentJSON)
			m.Payload = payload
			x := Exchange{From: ServerName, FromAddr: s.ep.addr, To: n.o.peer, Kind: KindNotification,
				Method: "GET", Path: path, Observe: seq, HasObserve: true, Response: coapparse.Content.String(), Start: time.Now()}
			if !n.con {
				m.Type = coapparse.NonConfirmable
				if err := s.ep.send(n.o.peer, &m, false); err != nil {
					x.Err = err
				}
				x.Type = "NON"
				s.recordExchange(x)
				continue
			}
			x.Type = "CON"
			_, retr, err := s.ep.confirm(s.ctx, n.o.peer, &m)
			x.Retransmissions = retr
			if err != nil {
				x.Err = fmt.Errorf("notification %s to %s: %w", path, n.o.peer, err)
				s.mu.Lock()
				delete(s.observers[name], obsKey{n.o.peer, string(n.o.token)})
				s.mu.Unlock()
			}
			s.recordExchange(x)
		}
	}
}

func (s *Server) recordExchange(x Exchange) {
	if s.record != nil {
		s.record(x)
	}
}
