package coapplant

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mission-ids/mission/coapparse"
)

// Timing holds the transmission parameters of RFC 7252 §4.8. Zero values
// take the RFC's defaults.
type Timing struct {
	ACKTimeout      time.Duration // default 2 s
	ACKRandomFactor float64       // default 1.5
	MaxRetransmit   int           // default 4
}

func (t *Timing) defaults() {
	if t.ACKTimeout <= 0 {
		t.ACKTimeout = 2 * time.Second
	}
	if t.ACKRandomFactor < 1 {
		t.ACKRandomFactor = 1.5
	}
	if t.MaxRetransmit <= 0 {
		t.MaxRetransmit = 4
	}
}

// ErrNoAck is returned when a Confirmable message got no ACK or RST after
// MaxRetransmit retransmissions.
var ErrNoAck = errors.New("coapplant: no acknowledgement")

// ErrReset is returned when the peer rejected a Confirmable message with RST.
var ErrReset = errors.New("coapplant: reset by peer")

// answer is a copy of the ACK (or RST) that answered a Confirmable message:
// for a request the piggybacked response.
type answer struct {
	typ        coapparse.Type
	code       coapparse.Code
	payload    []byte
	observe    uint32
	hasObserve bool
}

type midKey struct {
	peer netip.AddrPort
	mid  uint16
}

// handler handles an incoming CON or NON message (not a duplicate): it
// returns the bytes to send back to from (nil: nothing) and, optionally, a
// function to run once they are sent (in its own goroutine).
type handler func(from netip.AddrPort, m *coapparse.Message) (reply []byte, after func())

// endpoint is one CoAP endpoint on its own UDP socket: message ids,
// Confirmable messages retransmitted with exponential back-off until their
// ACK or RST (RFC 7252 §4.2), and duplicate detection of incoming CON and
// NON messages by (peer, message id) (§4.5: a duplicate CON gets the same
// reply again, the handler does not see it).
type endpoint struct {
	conn   *net.UDPConn
	addr   netip.AddrPort
	timing Timing
	handle handler
	// drop, if set, is asked (by the read loop only) for every incoming
	// CON or NON that is not a duplicate: true discards it unseen
	// (simulated loss).
	drop func() bool

	mu      sync.Mutex
	rng     *rand.Rand
	nextMID uint16
	waiting map[midKey]chan answer
	seen    map[midKey][]byte // reply sent for an incoming message (nil: none)
	order   []midKey          // seen in arrival order, bounded by maxSeen

	wg   sync.WaitGroup
	done chan struct{}
}

// maxSeen bounds the duplicate-detection memory of an endpoint; at the
// plant's rates it spans far more than EXCHANGE_LIFETIME.
const maxSeen = 4096

// listen opens an endpoint on addr (drop may be nil); start makes it
// receive.
func listen(addr netip.AddrPort, timing Timing, rng *rand.Rand, h handler, drop func() bool) (*endpoint, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("coapplant: listen on %s: %w", addr, err)
	}
	timing.defaults()
	e := &endpoint{
		conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), timing: timing, handle: h, drop: drop,
		rng: rng, nextMID: uint16(rng.Uint32()),
		waiting: map[midKey]chan answer{}, seen: map[midKey][]byte{}, done: make(chan struct{}),
	}
	return e, nil
}

// start runs the read loop, which calls the handler, until close.
func (e *endpoint) start() {
	e.wg.Add(1)
	go e.readLoop()
}

// close stops the endpoint and waits for its goroutines.
func (e *endpoint) close() error {
	err := e.conn.Close()
	<-e.done
	e.wg.Wait()
	return err
}

// token returns a fresh random token of n bytes.
func (e *endpoint) token(n int) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(e.rng.Uint32())
	}
	return b
}

func (e *endpoint) mid() uint16 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextMID++
	return e.nextMID
}

// send writes m (a NON, ACK or RST) to to, with a fresh message id unless
// keepMID.
func (e *endpoint) send(to netip.AddrPort, m *coapparse.Message, keepMID bool) error {
	if !keepMID {
		m.MessageID = e.mid()
	}
	b, err := coapparse.AppendMessage(nil, m)
	if err != nil {
		return fmt.Errorf("coapplant: encode: %w", err)
	}
	if _, err := e.conn.WriteToUDPAddrPort(b, to); err != nil {
		return fmt.Errorf("coapplant: send to %s: %w", to, err)
	}
	return nil
}

// confirm sends m as a Confirmable message with a fresh message id and
// retransmits it (ACK_TIMEOUT × a random factor, doubled each time, at
// most MaxRetransmit times) until the ACK or RST with that id comes from
// to. It returns the answer and the number of retransmissions.
func (e *endpoint) confirm(ctx context.Context, to netip.AddrPort, m *coapparse.Message) (answer, int, error) {
	m.Type = coapparse.Confirmable
	m.MessageID = e.mid()
	b, err := coapparse.AppendMessage(nil, m)
	if err != nil {
		return answer{}, 0, fmt.Errorf("coapplant: encode: %w", err)
	}
	key := midKey{to, m.MessageID}
	ch := make(chan answer, 1)
	e.mu.Lock()
	e.waiting[key] = ch
	timeout := time.Duration(float64(e.timing.ACKTimeout) * (1 + e.rng.Float64()*(e.timing.ACKRandomFactor-1)))
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.waiting, key)
		e.mu.Unlock()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for attempt := 0; ; attempt++ {
		if _, err := e.conn.WriteToUDPAddrPort(b, to); err != nil {
			return answer{}, attempt, fmt.Errorf("coapplant: send to %s: %w", to, err)
		}
		select {
		case a := <-ch:
			if a.typ == coapparse.Reset {
				return a, attempt, ErrReset
			}
			return a, attempt, nil
		case <-timer.C:
			if attempt == e.timing.MaxRetransmit {
				return answer{}, attempt, fmt.Errorf("%w from %s for message id %d", ErrNoAck, to, m.MessageID)
			}
			timeout *= 2
			timer.Reset(timeout)
		case <-ctx.Done():
			return answer{}, attempt, ctx.Err()
		case <-e.done:
			return answer{}, attempt, net.ErrClosed
		}
	}
}

func (e *endpoint) readLoop() {
	defer e.wg.Done()
	defer close(e.done)
	buf := make([]byte, 2048)
	var m coapparse.Message
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if err := coapparse.Decode(buf[:n], &m); err != nil && !errors.Is(err, coapparse.ErrViolation) {
			continue // not CoAP: silently ignored (RFC 7252 §4.2, §4.3)
		}
		switch m.Type {
		case coapparse.Acknowledgement, coapparse.Reset:
			e.mu.Lock()
			ch := e.waiting[midKey{from, m.MessageID}]
			e.mu.Unlock()
			if ch == nil {
				continue // late or duplicate
			}
			a := answer{typ: m.Type, code: m.Code, payload: append([]byte(nil), m.Payload...)}
			a.observe, a.hasObserve = m.Observe()
			select {
			case ch <- a:
			default:
			}
		default:
			e.incoming(from, &m)
		}
	}
}

// incoming handles a CON or NON: a duplicate gets the reply the first copy
// got; otherwise the handler decides.
func (e *endpoint) incoming(from netip.AddrPort, m *coapparse.Message) {
	key := midKey{from, m.MessageID}
	e.mu.Lock()
	reply, dup := e.seen[key]
	e.mu.Unlock()
	if dup {
		if reply != nil && m.Type == coapparse.Confirmable {
			_, _ = e.conn.WriteToUDPAddrPort(reply, from)
		}
		return
	}
	if e.drop != nil && e.drop() {
		return
	}
	reply, after := e.handle(from, m)
	e.mu.Lock()
	if len(e.order) == maxSeen {
		delete(e.seen, e.order[0])
		e.order = e.order[1:]
	}
	e.seen[key] = reply
	e.order = append(e.order, key)
	e.mu.Unlock()
	if reply != nil {
		_, _ = e.conn.WriteToUDPAddrPort(reply, from)
	}
	if after != nil {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			after()
		}()
	}
}

// emptyReply encodes an empty ACK or RST for message id mid.
func emptyReply(t coapparse.Type, mid uint16) []byte {
	return []byte{0x40 | byte(t)<<4, 0, byte(mid >> 8), byte(mid)}
}
