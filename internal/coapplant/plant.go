// Package coapplant is a small CoAP plant (RFC 7252, Observe RFC 7641) on
// loopback for tests and benchmarks: a server with sensor-reading and
// actuator resources, sensors that POST readings, an observer that watches
// every reading and reads the actuators, a controller that sets them, and
// an attack by an unknown client. Every device binds its own loopback
// address (127.0.1.N; Linux answers all of 127/8 on lo), so the devices
// are told apart by address, and the plant reports every exchange it made
// for tests to compare with what a probe saw.
//
// It speaks CoAP with package coapparse (decode and encode) over plain UDP
// sockets: message ids, tokens, Confirmable messages retransmitted until
// acknowledged, duplicate detection. Randomness (phases, orders, values,
// tokens, message ids) comes from Config.Seed.
package coapplant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mission-ids/mission/coapparse"
)

// Device names of the plant's fixed roles.
const (
	ServerName     = "coap-server"
	ObserverName   = "dashboard"
	ControllerName = "controller"
)

// Config configures a plant. Zero values take the defaults.
type Config struct {
	// Network is the /24 the devices bind in (default 127.0.1.0): the
	// server .1, the observer .2, the controller .3, sensor i .(10+i).
	Network netip.Addr
	// Port is the server's UDP port (0: a free port; Plant.Server says
	// which).
	Port uint16
	// Sensors and Actuators name the devices (default sensor-1…3 and
	// actuator-1…2).
	Sensors   []string
	Actuators []string
	// ReadingInterval: each sensor POSTs one reading per interval, at a
	// random phase (default 500 ms).
	ReadingInterval time.Duration
	// ObserveCONEvery: every n-th notification to an observer is
	// Confirmable, the others Non-confirmable (default 4).
	ObserveCONEvery int
	// GetInterval: the observer GETs one actuator per interval, each
	// actuator once per cycle in a random order (default 1 s).
	GetInterval time.Duration
	// PutInterval: the controller PUTs one actuator per interval, the
	// same way (default 1.5 s).
	PutInterval time.Duration
	// Duration bounds the time the devices make requests in (0: until
	// Stop).
	Duration time.Duration
	Seed     uint64
	Timing   Timing
	// Loss is the share of incoming messages the server discards
	// (simulated loss, so senders retransmit); default 0.
	Loss float64
}

func (c *Config) defaults() {
	if !c.Network.IsValid() {
		c.Network = netip.AddrFrom4([4]byte{127, 0, 1, 0})
	}
	if len(c.Sensors) == 0 {
		c.Sensors = []string{"sensor-1", "sensor-2", "sensor-3"}
	}
	if len(c.Actuators) == 0 {
		c.Actuators = []string{"actuator-1", "actuator-2"}
	}
	if c.ReadingInterval <= 0 {
		c.ReadingInterval = 500 * time.Millisecond
	}
	if c.ObserveCONEvery <= 0 {
		c.ObserveCONEvery = 4
	}
	if c.GetInterval <= 0 {
		c.GetInterval = time.Second
	}
	if c.PutInterval <= 0 {
		c.PutInterval = 1500 * time.Millisecond
	}
	c.Timing.defaults()
}

// host returns address n of the plant's /24.
func (c *Config) host(n byte) netip.Addr {
	b := c.Network.As4()
	b[3] = n
	return netip.AddrFrom4(b)
}

// Plant is a running plant.
type Plant struct {
	cfg     Config
	life    context.Context // in-flight exchanges; canceled at the end of Stop
	end     context.CancelFunc
	loops   context.Context // the devices' request loops; canceled by Stop
	stop    context.CancelFunc
	server  *Server
	devices []Device
	eps     []*endpoint // the devices' endpoints
	obs     *observerDevice
	wg      sync.WaitGroup

	mu        sync.Mutex
	exchanges []Exchange
	errs      []error
	stopped   bool
}

// observerDevice is the observer device's state: its endpoint and its
// observations.
type observerDevice struct {
	ep       *endpoint
	mu       sync.Mutex
	tokens   map[string]string // token → sensor name
	order    [][]byte          // the tokens in registration order
	received map[string]int    // sensor name → notifications received
}

// Start starts the server and every device: the observer registers its
// observations before Start returns; the request loops run until Duration
// has passed or Stop.
func Start(ctx context.Context, cfg Config) (*Plant, error) {
	cfg.defaults()
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	loops, stop := context.WithCancel(ctx)
	if cfg.Duration > 0 {
		stop()
		loops, stop = context.WithTimeout(ctx, cfg.Duration)
	}
	p := &Plant{cfg: cfg, life: life, end: end, loops: loops, stop: stop}
	srv, err := StartServer(life, ServerConfig{
		Address: netip.AddrPortFrom(cfg.host(1), cfg.Port), Sensors: cfg.Sensors, Actuators: cfg.Actuators,
		ObserveCONEvery: cfg.ObserveCONEvery, Timing: cfg.Timing, Seed: cfg.Seed, Loss: cfg.Loss, Record: p.record,
	})
	if err != nil {
		p.stop()
		p.end()
		return nil, err
	}
	p.server = srv
	p.devices = append(p.devices, Device{ServerName, RoleServer, srv.Address().Addr()})
	if err := p.startDevices(); err != nil {
		_, stopErr := p.Stop(context.Background())
		return nil, errors.Join(err, stopErr)
	}
	return p, nil
}

func (p *Plant) rng(stream uint64) *rand.Rand { return rand.New(rand.NewPCG(p.cfg.Seed, stream)) }

// open binds a device's endpoint on address n of the plant's /24.
func (p *Plant) open(name string, role Role, n byte, h handler) (*endpoint, error) {
	if h == nil {
		h = refuse
	}
	ep, err := listen(netip.AddrPortFrom(p.cfg.host(n), 0), p.cfg.Timing, p.rng(uint64(n)), h, nil)
	if err != nil {
		return nil, fmt.Errorf("coapplant: %s: %w", name, err)
	}
	ep.start()
	p.eps = append(p.eps, ep)
	p.devices = append(p.devices, Device{name, role, ep.addr.Addr()})
	return ep, nil
}

// refuse answers any CON with RST: a client device serves nothing.
func refuse(_ netip.AddrPort, m *coapparse.Message) ([]byte, func()) {
	if m.Type == coapparse.Confirmable {
		return emptyReply(coapparse.Reset, m.MessageID), nil
	}
	return nil, nil
}

func (p *Plant) startDevices() error {
	o := &observerDevice{tokens: map[string]string{}, received: map[string]int{}}
	ep, err := p.open(ObserverName, RoleObserver, 2, o.handle)
	if err != nil {
		return err
	}
	o.ep = ep
	p.obs = o
	// Observe every sensor before anything else runs.
	for _, s := range p.cfg.Sensors {
		tok := ep.token(4)
		o.mu.Lock()
		o.tokens[string(tok)] = s
		o.order = append(o.order, tok)
		o.mu.Unlock()
		x, err := p.send(ep, ObserverName, request{method: coapparse.GET, path: "/sensors/" + s + "/reading", observe: 0, token: tok})
		if err != nil {
			return err
		}
		if x.Response != coapparse.Content.String() {
			return fmt.Errorf("coapplant: observe %s: response %s", s, x.Response)
		}
	}
	ctl, err := p.open(ControllerName, RoleController, 3, nil)
	if err != nil {
		return err
	}
	var sensors []*endpoint
	for i, s := range p.cfg.Sensors {
		ep, err := p.open(s, RoleSensor, byte(10+i), nil)
		if err != nil {
			return err
		}
		sensors = append(sensors, ep)
	}
	for i, s := range p.cfg.Sensors {
		p.loop(p.cfg.ReadingInterval, p.rng(uint64(100+i)), func(rng *rand.Rand) {
			v, _ := json.Marshal(map[string]float64{"value": float64(int(rng.Float64()*1000)) / 10})
			_, _ = p.send(sensors[i], s, request{method: coapparse.POST, path: "/sensors/" + s + "/reading", payload: v, observe: -1})
		})
	}
	p.roundRobin(p.cfg.GetInterval, p.rng(200), func(a string, _ *rand.Rand) {
		_, _ = p.send(ep, ObserverName, request{method: coapparse.GET, path: "/actuators/" + a, observe: -1})
	})
	p.roundRobin(p.cfg.PutInterval, p.rng(300), func(a string, rng *rand.Rand) {
		v, _ := json.Marshal(map[string]bool{"on": rng.IntN(2) == 1})
		_, _ = p.send(ctl, ControllerName, request{method: coapparse.PUT, path: "/actuators/" + a, payload: v, observe: -1})
	})
	return nil
}

// loop runs do once per interval, starting at a random phase, until the
// plant's loops end.
func (p *Plant) loop(every time.Duration, rng *rand.Rand, do func(*rand.Rand)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		next := time.Now().Add(time.Duration(rng.Int64N(int64(every))))
		for {
			select {
			case <-p.loops.Done():
				return
			case <-time.After(time.Until(next)):
			}
			do(rng)
			next = next.Add(every)
		}
	}()
}

// roundRobin runs do on one actuator per interval, each once per cycle in
// a random order.
func (p *Plant) roundRobin(every time.Duration, rng *rand.Rand, do func(string, *rand.Rand)) {
	var order []string
	p.loop(every, rng, func(rng *rand.Rand) {
		if len(order) == 0 {
			order = append(order, p.cfg.Actuators...)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		a := order[0]
		order = order[1:]
		do(a, rng)
	})
}

// request is what a device asks the server.
type request struct {
	method  coapparse.Code
	path    string
	payload []byte // sent as application/json when not nil
	// observe is the Observe option: -1 none, 0 register, 1 cancel.
	observe int
	token   []byte // nil: a fresh one
}

// send sends r from ep as a CON request, waits for the response and
// records the exchange.
func (p *Plant) send(ep *endpoint, from string, r request) (Exchange, error) {
	var m coapparse.Message
	m.Code, m.Token, m.Payload = r.method, r.token, r.payload
	if m.Token == nil {
		m.Token = ep.token(4)
	}
	if r.observe >= 0 {
		_ = m.AddUint(coapparse.Observe, uint32(r.observe))
	}
	if err := m.AddURIPath(r.path); err != nil {
		return Exchange{}, fmt.Errorf("coapplant: path %s: %w", r.path, err)
	}
	if r.payload != nil {
		_ = m.AddUint(coapparse.ContentFormat, ContentJSON)
	}
	x := Exchange{From: from, FromAddr: ep.addr, To: p.server.Address(), Kind: KindRequest, Type: "CON",
		Method: r.method.Name(), Path: r.path, Observe: uint32(max(r.observe, 0)), HasObserve: r.observe >= 0, Start: time.Now()}
	a, retr, err := ep.confirm(p.life, p.server.Address(), &m)
	x.Retransmissions = retr
	switch {
	case err != nil:
		x.Err = fmt.Errorf("coapplant: %s %s %s: %w", from, x.Method, r.path, err)
	case r.observe == 0 && !a.hasObserve:
		x.Response = a.code.String()
		x.Err = fmt.Errorf("coapplant: %s observes %s: response %s without Observe", from, r.path, x.Response)
	default:
		x.Response = a.code.String()
	}
	p.record(x)
	return x, x.Err
}

func (p *Plant) record(x Exchange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exchanges = append(p.exchanges, x)
	if x.Err != nil && len(p.errs) < 20 {
		p.errs = append(p.errs, x.Err)
	}
}

// handle receives notifications: one on a token of ours is counted (a CON
// one acknowledged); anything else is refused.
func (o *observerDevice) handle(from netip.AddrPort, m *coapparse.Message) ([]byte, func()) {
	o.mu.Lock()
	s, ok := o.tokens[string(m.Token)]
	if ok && m.Code.IsResponse() {
		o.received[s]++
	}
	o.mu.Unlock()
	if !ok || !m.Code.IsResponse() {
		return refuse(from, m)
	}
	if m.Type == coapparse.Confirmable {
		return emptyReply(coapparse.Acknowledgement, m.MessageID), nil
	}
	return nil, nil
}

// Server returns the server's address.
func (p *Plant) Server() netip.AddrPort { return p.server.Address() }

// Devices returns the plant's devices (attackers included once they ran).
func (p *Plant) Devices() []Device {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Device(nil), p.devices...)
}

// Run waits until the plant's Duration has passed (or ctx ends; with no
// Duration, until ctx ends).
func (p *Plant) Run(ctx context.Context) error {
	select {
	case <-p.loops.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends the request loops, lets the last exchanges complete, cancels
// the observations (GET with Observe 1), closes every endpoint and
// returns the report. Errors of exchanges are in the report and joined in
// the error. If ctx ends first, the exchanges under way are abandoned.
func (p *Plant) Stop(ctx context.Context) (*Report, error) {
	release := context.AfterFunc(ctx, p.end)
	defer release()
	p.stop()
	p.wg.Wait()
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if already {
		return nil, errors.New("coapplant: stopped twice")
	}
	// Let the last notifications go out before the observations end.
	time.Sleep(100 * time.Millisecond)
	if o := p.obs; o != nil {
		o.mu.Lock()
		order := slices.Clone(o.order)
		o.mu.Unlock()
		for _, tok := range order {
			s := o.tokens[string(tok)] // written only before the loops started
			_, _ = p.send(o.ep, ObserverName, request{method: coapparse.GET, path: "/sensors/" + s + "/reading", observe: 1, token: tok})
		}
	}
	p.end()
	var errs []error
	for _, ep := range p.eps {
		errs = append(errs, ep.close())
	}
	if p.server != nil {
		errs = append(errs, p.server.Close())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rep := &Report{Server: p.server.Address(), Devices: append([]Device(nil), p.devices...),
		Exchanges: append([]Exchange(nil), p.exchanges...), Errors: append([]error(nil), p.errs...)}
	errs = append(errs, p.errs...)
	return rep, errors.Join(errs...)
}

// Received returns how many notifications the observer received per
// sensor.
func (p *Plant) Received() map[string]int {
	o := p.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.received))
	for s, n := range o.received {
		out[s] = n
	}
	return out
}
