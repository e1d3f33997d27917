package plant

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/uuid"
)

// Attack workloads of the detection evaluation, run against a running plant, through the
// same broker, while its rounds go on.
//
// Spoofing a live client's id on a second connection is not possible on a
// real broker without knocking the real client off: the broker closes the
// older connection (session takeover, MQTT 5 §3.1.4), and the plant would
// stop at that client's next PUBLISH. An attack that "spoofs" a plant
// client's id therefore takes over that client's own connection (Hijack):
// a compromised device. The probe names a connection's flows by the client
// id of its CONNECT, so its flows carry the spoofed id exactly as a
// spoofer's would; only the spoofer's own CONNECT is missing. An id no
// plant client uses gets a connection of its own (RoleExtra).

// AttackReport is what an attack did, as its client saw it.
type AttackReport struct {
	Name   string
	Client string // the client id its flows carry
	// Hijacked: the attack used the plant client's own connection.
	Hijacked bool
	Topics   []string // topics published to or filters subscribed to
	// Correlation ids the attack put on its PUBLISHes: the fixed (reused)
	// one first, if any.
	Correlation [][]byte
	Start, End  time.Time
	Publishes   int // PUBLISH transactions completed
	Subscribes  int // SUBSCRIBE transactions (granted)
	Connects    int // CONNECT/CONNACK exchanges
}

// Hijack returns the connection of the plant client with id id (the
// attacker controls that device), or opens a new connection with that id
// (role RoleExtra) if no client of the plant has it.
func (p *Plant) Hijack(ctx context.Context, id string) (c *Client, hijacked bool, err error) {
	p.mu.Lock()
	for _, cl := range p.clients {
		if cl.rec.ID == id {
			p.mu.Unlock()
			return cl, true, nil
		}
	}
	p.mu.Unlock()
	c, err = p.Connect(ctx, id, RoleExtra, nil)
	return c, false, err
}

// pace returns the time of the i-th of n events spread evenly over d from
// start.
func pace(start time.Time, i, n int, d time.Duration) time.Time {
	if n <= 1 {
		return start
	}
	return start.Add(d * time.Duration(i) / time.Duration(n))
}

// noteInjected records, for a PUBLISH the attack made into the middle of a
// chain, the steps before it as done at t, so the chain the plant's
// clients continue counts as complete in the report (there was no reading
// to wait for).
func (p *Plant) noteInjected(corr []byte, t time.Time, toggled bool) {
	p.step(corr, func(ch *Chain) {
		if ch.Published.IsZero() {
			ch.Published = t
		}
		if toggled {
			if ch.Forwarded.IsZero() {
				ch.Forwarded = t
			}
			ch.Toggled = t
		}
	})
}

// FloodConfig is a PUBLISH flood (the paper's DoS).
type FloodConfig struct {
	Client string // e.g. "motionSensor": its connection is hijacked
	Topic  string // e.g. another sensor's topic
	Count  int
	Over   time.Duration // the PUBLISHes are spread evenly over this
	// Every ReuseEvery-th PUBLISH (from the first) carries Reused; the
	// others a fresh random correlation id. 0: all fresh.
	ReuseEvery int
	Reused     []byte
}

// Flood publishes Count readings to Topic as Client, at the plant's QoS.
// The controller reacts to each as to any reading on that topic.
func (p *Plant) Flood(ctx context.Context, cfg FloodConfig) (AttackReport, error) {
	r := AttackReport{Name: "publish flood", Client: cfg.Client, Topics: []string{cfg.Topic}}
	c, hij, err := p.Hijack(ctx, cfg.Client)
	if err != nil {
		return r, err
	}
	r.Hijacked = hij
	if cfg.ReuseEvery > 0 {
		r.Correlation = append(r.Correlation, cfg.Reused)
	}
	err = paced(ctx, &r, cfg.Count, cfg.Over, func(i int) error {
		corr := cfg.Reused
		if cfg.ReuseEvery <= 0 || i%cfg.ReuseEvery != 0 {
			corr = []byte(uuid.NewString())
			r.Correlation = append(r.Correlation, corr)
		}
		payload := fmt.Appendf(nil, `{"sensor":"flood","clientId":%q,"round":%d,"value":0}`, cfg.Client, i)
		return p.inject(c, &r, cfg.Topic, payload, corr, false)
	})
	return r, err
}

// InjectToggles publishes count toggles to actuator's toggle topic as
// client (e.g. "controller", hijacked), all with correlation id corr, spread
// over d. The actuator answers each.
func (p *Plant) InjectToggles(ctx context.Context, client, actuator string, count int, over time.Duration, corr []byte) (AttackReport, error) {
	r := AttackReport{Name: "toggle injection", Client: client, Correlation: [][]byte{corr}}
	a, err := p.actuator(actuator)
	if err != nil {
		return r, err
	}
	r.Topics = []string{a.ToggleTopic}
	c, hij, err := p.Hijack(ctx, client)
	if err != nil {
		return r, err
	}
	r.Hijacked = hij
	err = paced(ctx, &r, count, over, func(i int) error {
		payload := fmt.Appendf(nil, `{"sensor":"injected","clientId":%q,"round":%d,"value":1}`, client, i)
		return p.inject(c, &r, a.ToggleTopic, payload, corr, true)
	})
	return r, err
}

// paced sets r.Start, calls step(i) for i from 0 to count-1 spread evenly
// over d, and sets r.End. It stops early when ctx ends (no error) or at the
// first error of step.
func paced(ctx context.Context, r *AttackReport, count int, d time.Duration, step func(i int) error) error {
	r.Start = time.Now()
	defer func() { r.End = time.Now() }()
	for i := range count {
		if !sleepUntil(ctx, pace(r.Start, i, count, d)) {
			return nil
		}
		if err := step(i); err != nil {
			return err
		}
	}
	return nil
}

// inject publishes one attack message as c and notes it as injected
// (toggle: it asks an actuator to toggle).
func (p *Plant) inject(c *Client, r *AttackReport, topic string, payload, corr []byte, toggle bool) error {
	if err := c.Publish(p.ctx, topic, p.cfg.QoS, payload, corr); err != nil {
		return err
	}
	p.noteInjected(corr, time.Now(), toggle)
	r.Publishes++
	return nil
}

// Recon subscribes as client to each filter in turn (e.g. "plant/#",
// "$SYS/#"), listens for hold, then unsubscribes them all.
func (p *Plant) Recon(ctx context.Context, client string, hold time.Duration, filters ...string) (AttackReport, error) {
	r := AttackReport{Name: "reconnaissance subscription", Client: client, Topics: filters}
	c, hij, err := p.Hijack(ctx, client)
	if err != nil {
		return r, err
	}
	r.Hijacked = hij
	r.Start = time.Now()
	for _, f := range filters {
		if err := c.Subscribe(ctx, p.cfg.QoS, f); err != nil {
			r.End = time.Now()
			return r, err
		}
		r.Subscribes++
	}
	sleepUntil(ctx, time.Now().Add(hold))
	_, err = c.pc.Unsubscribe(ctx, &paho.Unsubscribe{Topics: filters})
	r.End = time.Now()
	if err != nil {
		return r, fmt.Errorf("plant: %s: unsubscribe %v: %w", client, filters, err)
	}
	return r, nil
}

// ConnectFlood opens count short connections with client id id (which
// must not be a connected plant client: the broker would close it), each a
// CONNECT, CONNACK and DISCONNECT, spread over d.
func (p *Plant) ConnectFlood(ctx context.Context, id string, count int, over time.Duration) (AttackReport, error) {
	r := AttackReport{Name: "connect flood", Client: id}
	p.mu.Lock()
	for _, cl := range p.clients {
		if cl.rec.ID == id {
			p.mu.Unlock()
			return r, fmt.Errorf("plant: connect flood as %q would take over a plant client's session", id)
		}
	}
	p.mu.Unlock()
	var errs []error
	err := paced(ctx, &r, count, over, func(int) error {
		if err := p.connectOnce(ctx, id); err != nil {
			errs = append(errs, err)
			if len(errs) > 5 {
				return errors.Join(errs...) // give up: the broker refuses
			}
			return nil
		}
		r.Connects++
		return nil
	})
	if err != nil {
		return r, err
	}
	return r, errors.Join(errs...)
}

func (p *Plant) connectOnce(ctx context.Context, id string) error {
	conn, err := p.cfg.Dial(ctx, "tcp", p.cfg.Broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	pc := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, PacketTimeout: p.cfg.PacketTimeout})
	ca, err := pc.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true})
	if err != nil {
		return fmt.Errorf("plant: %s: connect: %w", id, err)
	}
	if ca.ReasonCode != 0 {
		return fmt.Errorf("plant: %s: broker refused the connection: reason code %#x", id, ca.ReasonCode)
	}
	return pc.Disconnect(&paho.Disconnect{ReasonCode: 0})
}

// Intrude connects as a new client id (one the plant does not use) and
// publishes one toggle to actuator's toggle topic with correlation id corr.
// The actuator answers it.
func (p *Plant) Intrude(ctx context.Context, id, actuator string, corr []byte) (AttackReport, error) {
	r := AttackReport{Name: "unknown client toggles actuator", Client: id, Correlation: [][]byte{corr}}
	a, err := p.actuator(actuator)
	if err != nil {
		return r, err
	}
	r.Topics = []string{a.ToggleTopic}
	r.Start = time.Now()
	c, hij, err := p.Hijack(ctx, id)
	if err != nil {
		return r, err
	}
	if hij {
		return r, fmt.Errorf("plant: %q is a plant client, not an intruder", id)
	}
	r.Connects = 1
	payload := fmt.Appendf(nil, `{"sensor":"intruder","clientId":%q,"value":1}`, id)
	err = p.inject(c, &r, a.ToggleTopic, payload, corr, true)
	r.End = time.Now()
	return r, err
}

// actuator returns the configured actuator called name.
func (p *Plant) actuator(name string) (Actuator, error) {
	for _, x := range p.cfg.Actuators {
		if x.Name == name {
			return x, nil
		}
	}
	return Actuator{}, fmt.Errorf("plant: no actuator %q", name)
}
