package plant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Config configures a plant. Start from DefaultConfig.
type Config struct {
	// Broker is the broker's TCP address, "host:port".
	Broker string
	// Dial opens the connections; default a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	Sensors      []Sensor
	Actuators    []Actuator
	ControllerID string

	// QoS of every PUBLISH and SUBSCRIBE (the study: 2).
	QoS byte
	// Rounds of readings: in each, every sensor publishes once, spread
	// evenly over Interval. 0: no bound (stop with Duration or the context).
	Rounds   int
	Interval time.Duration
	// Duration bounds the time rounds are started in (0: no bound).
	Duration time.Duration

	// KeepAlive in seconds sent in CONNECT; 0 (the default) asks for no
	// keep alive. A broker may impose one in CONNACK (mosquitto sends its
	// max_keepalive, 65535 s): a client then sends PINGREQ only after that
	// long without sending anything (ClientRecord.Pings).
	KeepAlive uint16
	// WatchStates makes the controller also subscribe to every actuator's
	// state topic, closing each chain with a delivery to the controller.
	WatchStates bool

	// PacketTimeout bounds each MQTT exchange (default 10 s).
	PacketTimeout time.Duration
	// ChainTimeout bounds how long Stop waits for chains under way to
	// complete (default 10 s).
	ChainTimeout time.Duration
	// Settle is how long Stop waits after the last chain completed before
	// disconnecting, so the last acknowledgements are on the wire
	// (default 200 ms).
	Settle time.Duration

	// Seed makes the sensor values reproducible (correlation ids are always
	// fresh random UUIDs).
	Seed uint64

	// StartOrder is the order in which Start connects the device groups
	// (default actuators, controller, sensors: every subscription is in
	// place before the first reading). Roles not listed are connected
	// last, in the default order.
	StartOrder []Role
	// StartGap, if positive, makes the start-up part of the run: Start
	// connects the first group of StartOrder and returns; the others
	// connect in the background, each StartGap after the previous, while
	// Run's rounds already go (a sensor reads once it is connected). A
	// reading made before every device was up may legitimately go to
	// nobody (the controller or its actuator not subscribed yet): its
	// chain is marked StartUp and not required to complete.
	StartGap time.Duration
}

// DefaultConfig is the study's plant on broker: five sensors at QoS 2, the
// controller "controller", one round per second until stopped.
func DefaultConfig(broker string) Config {
	s, a := DefaultDevices("plant")
	return Config{
		Broker:       broker,
		Sensors:      s,
		Actuators:    a,
		ControllerID: "controller",
		QoS:          2,
		Interval:     time.Second,
	}
}

// Chain is one reading's way through the plant; every PUBLISH of it carries
// CorrelationData. Times are zero for steps that did not happen.
type Chain struct {
	CorrelationData []byte
	Round           int // -1 if not started by a plant sensor
	Sensor          Sensor
	Actuator        Actuator
	Controller      string // client id of the controller
	Reading         []byte // the sensor's JSON

	Published time.Time // the sensor's PUBLISH completed
	Forwarded time.Time // the controller received the reading
	Toggled   time.Time // the controller's toggle PUBLISH completed
	Triggered time.Time // the actuator received the toggle
	Answered  time.Time // the actuator's state PUBLISH completed
	Observed  time.Time // the controller received the state (WatchStates)

	// StartUp: the reading was made before every device was connected
	// (Config.StartGap); it may have gone to nobody.
	StartUp bool
}

// Complete reports whether every step of the chain happened (Observed only
// if watchStates).
func (c *Chain) Complete(watchStates bool) bool {
	done := !c.Published.IsZero() && !c.Forwarded.IsZero() && !c.Toggled.IsZero() &&
		!c.Triggered.IsZero() && !c.Answered.IsZero()
	return done && (!watchStates || !c.Observed.IsZero())
}

// Report is what the plant's clients did, as they saw it.
type Report struct {
	Broker      string
	QoS         byte
	WatchStates bool
	Rounds      int // rounds started
	Clients     []ClientRecord
	Published   []Message // every completed client → broker PUBLISH
	Delivered   []Message // every PUBLISH a client received
	Chains      []Chain   // in order of creation
}

// Client returns the record of client id, or nil.
func (r *Report) Client(id string) *ClientRecord {
	for i := range r.Clients {
		if r.Clients[i].ID == id {
			return &r.Clients[i]
		}
	}
	return nil
}

// Incomplete returns the chains that did not complete (start-up chains,
// which may legitimately stop, excepted).
func (r *Report) Incomplete() []Chain {
	var out []Chain
	for _, c := range r.Chains {
		if !c.StartUp && !c.Complete(r.WatchStates) {
			out = append(out, c)
		}
	}
	return out
}

// Plant is a running plant: every client connected and subscribed.
type Plant struct {
	cfg    Config
	ctx    context.Context // handlers' context; canceled by Stop
	cancel context.CancelFunc

	controller *Client
	sensors    []*Client
	actuators  map[string]*Client // by actuator name
	byToggle   map[string]Actuator
	byState    map[string]Actuator
	bySensor   map[string]Sensor // by topic

	mu        sync.Mutex
	clients   []*Client
	published []Message
	delivered []Message
	chains    []*Chain
	byCorr    map[string]*Chain
	rounds    int
	errs      []error
	changed   chan struct{}
	rng       *rand.Rand
	state     map[string]bool // actuator name → on
	stopped   bool
	sensorsBy map[int]*Client // connected sensors by index in cfg.Sensors
	allUp     bool            // every group connected
	started   chan struct{}   // closed when every group is connected (or failed)
}

// Run starts the plant, runs its rounds and stops it: the whole scenario.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	p, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	runErr := p.Run(ctx)
	rep, stopErr := p.Stop(context.WithoutCancel(ctx))
	return rep, errors.Join(runErr, stopErr)
}

func (cfg *Config) defaults() error {
	if cfg.Broker == "" {
		return errors.New("plant: no broker address")
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		cfg.Dial = d.DialContext
	}
	if cfg.ControllerID == "" {
		cfg.ControllerID = "controller"
	}
	if cfg.QoS > 2 {
		return fmt.Errorf("plant: QoS %d", cfg.QoS)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.PacketTimeout <= 0 {
		cfg.PacketTimeout = 10 * time.Second
	}
	if cfg.ChainTimeout <= 0 {
		cfg.ChainTimeout = 10 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 200 * time.Millisecond
	}
	return nil
}

// Start connects the actuators, then the controller, then the sensors
// (Config.StartOrder), and waits until every subscription is granted, so
// no reading is lost — unless Config.StartGap makes the start-up part of
// the run.
func Start(ctx context.Context, cfg Config) (*Plant, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	p := &Plant{
		cfg: cfg, actuators: map[string]*Client{}, byToggle: map[string]Actuator{}, byState: map[string]Actuator{},
		bySensor: map[string]Sensor{}, byCorr: map[string]*Chain{}, changed: make(chan struct{}, 1),
		rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), state: map[string]bool{},
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	names := map[string]Actuator{}
	for _, a := range cfg.Actuators {
		names[a.Name] = a
		p.byToggle[a.ToggleTopic] = a
		p.byState[a.StateTopic] = a
	}
	for _, s := range cfg.Sensors {
		if _, ok := names[s.Actuator]; !ok {
			return nil, fmt.Errorf("plant: sensor %s forwards to unknown actuator %q", s.ClientID, s.Actuator)
		}
		p.bySensor[s.Topic] = s
	}
	fail := func(err error) (*Plant, error) {
		p.cancel()
		for _, c := range p.clients {
			_ = c.Disconnect()
		}
		return nil, err
	}
	p.sensorsBy = map[int]*Client{}
	p.started = make(chan struct{})
	groups := startGroups(cfg.StartOrder)
	if cfg.StartGap <= 0 {
		defer close(p.started)
		for _, g := range groups {
			if err := p.connectGroup(ctx, g); err != nil {
				return fail(err)
			}
		}
		p.allUp = true
		return p, nil
	}
	if err := p.connectGroup(ctx, groups[0]); err != nil {
		close(p.started)
		return fail(err)
	}
	go func() {
		defer close(p.started)
		for _, g := range groups[1:] {
			if !sleepUntil(p.ctx, time.Now().Add(cfg.StartGap)) {
				return
			}
			if err := p.connectGroup(p.ctx, g); err != nil {
				p.fail(err)
				return
			}
		}
		p.mu.Lock()
		p.allUp = true
		p.mu.Unlock()
	}()
	return p, nil
}

// startGroups is the order of the device groups: order first, then the
// default order for the roles it does not list.
func startGroups(order []Role) []Role {
	var out []Role
	for _, r := range append(slices.Clone(order), RoleActuator, RoleController, RoleSensor) {
		if (r == RoleActuator || r == RoleController || r == RoleSensor) && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// connectGroup connects (and subscribes) the devices of one role.
func (p *Plant) connectGroup(ctx context.Context, role Role) error {
	cfg := &p.cfg
	switch role {
	case RoleActuator:
		for _, a := range cfg.Actuators {
			c, err := p.Connect(ctx, a.ClientID, RoleActuator, p.actuate)
			if err != nil {
				return err
			}
			if err := c.Subscribe(ctx, cfg.QoS, a.ToggleTopic); err != nil {
				return err
			}
			p.mu.Lock()
			p.actuators[a.Name] = c
			p.mu.Unlock()
		}
	case RoleController:
		c, err := p.Connect(ctx, cfg.ControllerID, RoleController, p.control)
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.controller = c
		p.mu.Unlock()
		var filters []string
		for _, s := range cfg.Sensors {
			if !slices.Contains(filters, s.Topic) {
				filters = append(filters, s.Topic)
			}
		}
		if len(filters) > 0 {
			if err := c.Subscribe(ctx, cfg.QoS, filters...); err != nil {
				return err
			}
		}
		if cfg.WatchStates && len(cfg.Actuators) > 0 {
			var states []string
			for _, a := range cfg.Actuators {
				states = append(states, a.StateTopic)
			}
			if err := c.Subscribe(ctx, cfg.QoS, states...); err != nil {
				return err
			}
		}
	case RoleSensor:
		for i, s := range cfg.Sensors {
			c, err := p.Connect(ctx, s.ClientID, RoleSensor, nil)
			if err != nil {
				return err
			}
			p.mu.Lock()
			p.sensors = append(p.sensors, c)
			p.sensorsBy[i] = c
			p.mu.Unlock()
		}
	}
	return nil
}

// sensor returns the connected client of sensor i (nil if not yet).
func (p *Plant) sensor(i int) *Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sensorsBy[i]
}

// Run runs rounds of readings until Rounds or Duration is reached or ctx is
// done (which is a normal end, not an error). It returns the first error of
// a sensor's PUBLISH or of a connection.
func (p *Plant) Run(ctx context.Context) error {
	start := time.Now()
	n := len(p.cfg.Sensors)
	if n == 0 {
		return nil
	}
	step := p.cfg.Interval / time.Duration(n)
	var wg sync.WaitGroup
	defer wg.Wait()
	next := start
	for round := 0; p.cfg.Rounds == 0 || round < p.cfg.Rounds; round++ {
		if p.cfg.Duration > 0 && time.Since(start) >= p.cfg.Duration {
			break
		}
		if err := p.err(); err != nil {
			return err
		}
		p.mu.Lock()
		p.rounds++
		p.mu.Unlock()
		for i := range p.cfg.Sensors {
			if !sleepUntil(ctx, next) {
				return p.err()
			}
			next = next.Add(step)
			s := p.sensor(i)
			if s == nil {
				continue // not connected yet (StartGap)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.read(s, p.cfg.Sensors[i], round); err != nil {
					p.fail(err)
				}
			}()
		}
	}
	wg.Wait()
	return p.err()
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// read makes one reading: a fresh correlation id, a chain, a PUBLISH.
func (p *Plant) read(c *Client, s Sensor, round int) error {
	corr := []byte(uuid.NewString())
	p.mu.Lock()
	v := s.Min + p.rng.Float64()*(s.Max-s.Min)
	if s.Max-s.Min == 1 && s.Min == 0 {
		v = math.Round(v) // binary sensors: 0 or 1
	}
	p.mu.Unlock()
	reading, _ := json.Marshal(struct {
		Sensor   string  `json:"sensor"`
		ClientID string  `json:"clientId"`
		Round    int     `json:"round"`
		Value    float64 `json:"value"`
		Unit     string  `json:"unit,omitempty"`
		Time     string  `json:"time"`
	}{s.Kind, s.ClientID, round, math.Round(v*100) / 100, s.Unit, time.Now().UTC().Format(time.RFC3339Nano)})
	a := p.actuatorOf(s)
	ch := &Chain{CorrelationData: corr, Round: round, Sensor: s, Actuator: a, Controller: p.cfg.ControllerID, Reading: reading}
	p.mu.Lock()
	ch.StartUp = !p.allUp
	p.chains = append(p.chains, ch)
	p.byCorr[string(corr)] = ch
	p.mu.Unlock()
	// The plant's context, not ctx: a reading begun is finished even if
	// the caller stops the rounds meanwhile.
	if err := c.Publish(p.ctx, s.Topic, p.cfg.QoS, reading, corr); err != nil {
		return err
	}
	p.step(corr, func(ch *Chain) { ch.Published = time.Now() })
	return nil
}

func (p *Plant) actuatorOf(s Sensor) Actuator {
	for _, a := range p.cfg.Actuators {
		if a.Name == s.Actuator {
			return a
		}
	}
	return Actuator{}
}

// control is the controller: a reading goes to its actuator's toggle
// topic with the same correlation data; a state (WatchStates) is noted.
func (p *Plant) control(ctx context.Context, c *Client, m Message) {
	if _, ok := p.byState[m.Topic]; ok {
		p.step(m.CorrelationData, func(ch *Chain) { ch.Observed = time.Now() })
		return
	}
	s, ok := p.bySensor[m.Topic]
	if !ok {
		return
	}
	a := p.actuatorOf(s)
	p.step(m.CorrelationData, func(ch *Chain) {
		ch.Forwarded = time.Now()
		if ch.Round < 0 {
			ch.Sensor, ch.Actuator, ch.Reading = s, a, m.Payload
		}
	})
	if err := c.Publish(ctx, a.ToggleTopic, p.cfg.QoS, m.Payload, m.CorrelationData); err != nil {
		if ctx.Err() == nil {
			p.fail(err)
		}
		return
	}
	p.step(m.CorrelationData, func(ch *Chain) { ch.Toggled = time.Now() })
}

// actuate is an actuator: a toggle flips its state, which it publishes
// with the toggle's correlation data.
func (p *Plant) actuate(ctx context.Context, c *Client, m Message) {
	a, ok := p.byToggle[m.Topic]
	if !ok {
		return
	}
	p.step(m.CorrelationData, func(ch *Chain) { ch.Triggered = time.Now() })
	p.mu.Lock()
	on := !p.state[a.Name]
	p.state[a.Name] = on
	p.mu.Unlock()
	st := "off"
	if on {
		st = "on"
	}
	payload, _ := json.Marshal(struct {
		Actuator string `json:"actuator"`
		ClientID string `json:"clientId"`
		State    string `json:"state"`
		Time     string `json:"time"`
	}{a.Name, a.ClientID, st, time.Now().UTC().Format(time.RFC3339Nano)})
	if err := c.Publish(ctx, a.StateTopic, p.cfg.QoS, payload, m.CorrelationData); err != nil {
		if ctx.Err() == nil {
			p.fail(err)
		}
		return
	}
	p.step(m.CorrelationData, func(ch *Chain) { ch.Answered = time.Now() })
}

// step updates the chain of corr, creating it if a reading came from
// elsewhere than a plant sensor (Round -1).
func (p *Plant) step(corr []byte, f func(*Chain)) {
	p.mu.Lock()
	ch := p.byCorr[string(corr)]
	if ch == nil {
		ch = &Chain{CorrelationData: corr, Round: -1, Controller: p.cfg.ControllerID}
		p.chains = append(p.chains, ch)
		p.byCorr[string(corr)] = ch
	}
	f(ch)
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *Plant) fail(err error) {
	p.mu.Lock()
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

func (p *Plant) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

func (p *Plant) clientError(c *Client, err error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return // paho reports the closed connection after a Disconnect
	}
	p.mu.Lock()
	if c.rec.Err == nil {
		c.rec.Err = err
	}
	p.errs = append(p.errs, fmt.Errorf("plant: %s: %w", c.rec.ID, err))
	p.mu.Unlock()
}

// Stop waits (up to ChainTimeout) for the chains under way to complete,
// waits Settle, then disconnects the sensors, the controller, the
// actuators and any other client, in that order, and returns the report.
// An incomplete chain or a client error is an error; the report is
// returned anyway.
func (p *Plant) Stop(ctx context.Context) (*Report, error) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return p.Report(), nil
	}
	p.stopped = true
	p.mu.Unlock()
	select { // the background start-up (StartGap) is over
	case <-p.started:
	case <-ctx.Done():
	}
	deadline := time.NewTimer(p.cfg.ChainTimeout)
	defer deadline.Stop()
wait:
	for !p.allComplete() && p.err() == nil {
		select {
		case <-p.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	sleepUntil(ctx, time.Now().Add(p.cfg.Settle))
	var errs []error
	p.mu.Lock()
	order := append(append([]*Client{}, p.sensors...), p.controller)
	for _, a := range p.cfg.Actuators {
		order = append(order, p.actuators[a.Name])
	}
	for _, c := range p.clients {
		if !slices.Contains(order, c) {
			order = append(order, c)
		}
	}
	p.mu.Unlock()
	for _, c := range order {
		if c != nil {
			if err := c.Disconnect(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	p.cancel()
	rep := p.Report()
	if inc := rep.Incomplete(); len(inc) > 0 {
		var ids []string
		for _, c := range inc {
			ids = append(ids, string(c.CorrelationData))
		}
		errs = append(errs, fmt.Errorf("plant: %d of %d chains incomplete: %s", len(inc), len(rep.Chains), strings.Join(ids, ", ")))
	}
	return rep, errors.Join(append([]error{p.err()}, errs...)...)
}

func (p *Plant) allComplete() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.chains {
		if !c.Complete(p.cfg.WatchStates) {
			return false
		}
	}
	return true
}

// Report returns a snapshot of what happened so far.
func (p *Plant) Report() *Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &Report{
		Broker: p.cfg.Broker, QoS: p.cfg.QoS, WatchStates: p.cfg.WatchStates, Rounds: p.rounds,
		Published: slices.Clone(p.published), Delivered: slices.Clone(p.delivered),
	}
	for _, c := range p.clients {
		rec := *c.rec
		rec.Pings = c.pinger.count()
		rec.Subscriptions = slices.Clone(rec.Subscriptions)
		r.Clients = append(r.Clients, rec)
	}
	for _, c := range p.chains {
		r.Chains = append(r.Chains, *c)
	}
	return r
}
