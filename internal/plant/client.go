package plant

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Role is what a client is in the plant.
type Role string

// Roles.
const (
	RoleSensor     Role = "sensor"
	RoleController Role = "controller"
	RoleActuator   Role = "actuator"
	RoleExtra      Role = "extra" // added with Plant.Connect (e.g. later: an attacker)
)

// Message is one PUBLISH as a client sent it (Report.Published: client →
// broker) or received it (Report.Delivered: broker → client).
type Message struct {
	ClientID        string
	Topic           string
	QoS             byte
	Retain          bool
	Payload         []byte
	CorrelationData []byte
	Time            time.Time
}

// Subscription is one SUBSCRIBE packet a client sent (all its filters at
// one QoS) and the broker granted.
type Subscription struct {
	Filters []string
	QoS     byte
}

// ClientRecord is what one client did on its one connection.
type ClientRecord struct {
	ID            string
	Role          Role
	Local, Remote netip.AddrPort // the client's and the broker's TCP endpoints
	Connected     time.Time      // CONNACK received
	Subscriptions []Subscription // in order
	Published     int            // PUBLISH transactions it completed
	Delivered     int            // PUBLISH packets it received
	Pings         int            // PINGREQs it sent (none unless the run outlasts KeepAlive)
	Disconnected  bool           // it sent DISCONNECT (normal disconnection)
	Err           error          // connection error seen, if any
}

// Handler is called for every PUBLISH a client receives, one at a time in
// arrival order, outside the MQTT client's reader: it may publish.
type Handler func(ctx context.Context, c *Client, m Message)

// Client is one MQTT v5 connection of the plant.
type Client struct {
	p       *Plant
	rec     *ClientRecord
	pc      *paho.Client
	pinger  *pinger
	handler Handler

	mu     sync.Mutex // guards closed and inbox sends
	closed bool
	inbox  chan Message
	worker sync.WaitGroup
}

// ID returns the client id.
func (c *Client) ID() string { return c.rec.ID }

// LocalAddr returns the client's TCP endpoint.
func (c *Client) LocalAddr() netip.AddrPort { return c.rec.Local }

// Connect opens a new MQTT v5 connection (clean start) with client id id,
// recorded in the report with the given role. handler may be nil. The
// plant disconnects it on Stop. It is how later work adds clients (e.g.
// attackers) beside the plant's own.
func (p *Plant) Connect(ctx context.Context, id string, role Role, handler Handler) (*Client, error) {
	conn, err := p.cfg.Dial(ctx, "tcp", p.cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("plant: %s: dial %s: %w", id, p.cfg.Broker, err)
	}
	rec := &ClientRecord{ID: id, Role: role, Local: addrPort(conn.LocalAddr()), Remote: addrPort(conn.RemoteAddr())}
	c := &Client{p: p, rec: rec, handler: handler, inbox: make(chan Message, 4096), pinger: &pinger{}}
	c.pc = paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { c.received(pr.Packet); return true, nil },
		},
		OnClientError: func(err error) { p.clientError(c, err) },
		OnServerDisconnect: func(d *paho.Disconnect) {
			p.clientError(c, fmt.Errorf("broker sent DISCONNECT, reason code %#x", d.ReasonCode))
		},
		PacketTimeout: p.cfg.PacketTimeout,
		PingHandler:   c.pinger,
	})
	ca, err := c.pc.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: p.cfg.KeepAlive, CleanStart: true})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("plant: %s: connect: %w", id, err)
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("plant: %s: broker refused the connection: reason code %#x", id, ca.ReasonCode)
	}
	rec.Connected = time.Now()
	c.worker.Add(1)
	go c.work()
	p.mu.Lock()
	p.clients = append(p.clients, c)
	p.mu.Unlock()
	return c, nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// Subscribe sends one SUBSCRIBE with every filter at qos and waits for the
// SUBACK; a refused filter is an error.
func (c *Client) Subscribe(ctx context.Context, qos byte, filters ...string) error {
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	sa, err := c.pc.Subscribe(ctx, s)
	if err != nil {
		return fmt.Errorf("plant: %s: subscribe %v: %w", c.rec.ID, filters, err)
	}
	for i, r := range sa.Reasons {
		if r > 2 || r != qos {
			return fmt.Errorf("plant: %s: subscribe %q at QoS %d: broker answered %#x", c.rec.ID, filters[i], qos, r)
		}
	}
	c.p.mu.Lock()
	c.rec.Subscriptions = append(c.rec.Subscriptions, Subscription{Filters: append([]string(nil), filters...), QoS: qos})
	c.p.mu.Unlock()
	return nil
}

// Publish sends one PUBLISH with the given correlation data (none if
// empty) and, for QoS 1 and 2, waits until its transaction completes
// (PUBACK, or PUBREC/PUBREL/PUBCOMP). It is recorded in Report.Published
// only if it completed.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, payload, corr []byte) error {
	m := Message{ClientID: c.rec.ID, Topic: topic, QoS: qos, Payload: payload, CorrelationData: corr, Time: time.Now()}
	pub := &paho.Publish{Topic: topic, QoS: qos, Payload: payload}
	if len(corr) > 0 {
		pub.Properties = &paho.PublishProperties{CorrelationData: corr}
	}
	res, err := c.pc.Publish(ctx, pub)
	if err != nil {
		return fmt.Errorf("plant: %s: publish to %s: %w", c.rec.ID, topic, err)
	}
	if res != nil && res.ReasonCode >= 0x80 {
		return fmt.Errorf("plant: %s: publish to %s: broker answered %#x", c.rec.ID, topic, res.ReasonCode)
	}
	c.p.mu.Lock()
	c.rec.Published++
	c.p.published = append(c.p.published, m)
	c.p.mu.Unlock()
	return nil
}

// received runs on the MQTT client's router goroutine: record, hand over,
// return at once so the acknowledgement goes out without waiting for the
// handler.
func (c *Client) received(pb *paho.Publish) {
	m := Message{ClientID: c.rec.ID, Topic: pb.Topic, QoS: pb.QoS, Retain: pb.Retain, Payload: pb.Payload, Time: time.Now()}
	if pb.Properties != nil {
		m.CorrelationData = pb.Properties.CorrelationData
	}
	c.p.mu.Lock()
	c.rec.Delivered++
	c.p.delivered = append(c.p.delivered, m)
	c.p.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.inbox <- m
	}
}

func (c *Client) work() {
	defer c.worker.Done()
	for m := range c.inbox {
		if c.handler != nil {
			c.handler(c.p.ctx, c, m)
		}
	}
}

// Disconnect sends DISCONNECT (normal disconnection) and closes the
// connection, after the handler has finished what it was given. Calling it
// twice does nothing.
func (c *Client) Disconnect() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.inbox)
	c.mu.Unlock()
	c.worker.Wait()
	err := c.pc.Disconnect(&paho.Disconnect{ReasonCode: 0})
	c.p.mu.Lock()
	if err == nil {
		c.rec.Disconnected = true
	}
	c.p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("plant: %s: disconnect: %w", c.rec.ID, err)
	}
	return nil
}
