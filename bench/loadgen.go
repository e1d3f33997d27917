package main

// A minimal MQTT v5 publisher over TCP: pre-encoded PUBLISH packets (fresh
// Correlation Data and packet identifier patched in per message), written in
// batches by a paced writer goroutine; a reader goroutine consumes the acks
// (PUBACK, PUBREC→PUBREL, PUBCOMP). Written by hand so that the load
// generator costs as little CPU as possible next to the broker and the probe.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// loadConfig is one step of load.
type loadConfig struct {
	Addr     string
	QoS      byte
	Rate     float64 // PUBLISH messages per second, all clients together
	Duration time.Duration
	Clients  int
	Payload  int
	Window   int    // unacknowledged QoS 1/2 messages per client
	Prefix   string // client id prefix
}

// loadCounters are read by the sampler while the load runs.
type loadCounters struct {
	sent  atomic.Uint64 // PUBLISH written
	acked atomic.Uint64 // transactions completed (QoS 0: = sent)
}

type client struct {
	conn     net.Conn
	w        *bufio.Writer
	wmu      sync.Mutex
	inflight atomic.Int64
	window   int64
	qos      byte
	tmpl     []byte // PUBLISH template
	pidOff   int    // offset of the packet identifier (QoS>0)
	corrOff  int    // offset of the 16 hex digits of the correlation counter
	pid      uint16
	seq      uint64
	id       int
	cnt      *loadCounters
	done     chan struct{}
	readErr  atomic.Pointer[error] // set by the reader goroutine
}

func (c *client) setReadErr(err error) { c.readErr.Store(&err) }

func (c *client) readError() error {
	if p := c.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

func appendVarint(b []byte, n int) []byte {
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func connectPacket(clientID string) []byte {
	var vh []byte
	vh = appendStr(vh, "MQTT")
	vh = append(vh, 5, 0x02)    // level 5, clean start
	vh = append(vh, 0, 60)      // keep alive
	vh = append(vh, 3, 0x21)    // properties: Receive Maximum
	vh = append(vh, 0xff, 0xff) // 65535
	vh = appendStr(vh, clientID)
	b := []byte{0x10}
	b = appendVarint(b, len(vh))
	return append(b, vh...)
}

// publishTemplate returns an encoded PUBLISH and the offsets to patch.
func publishTemplate(topic string, qos byte, corrPrefix string, payload int) (pkt []byte, pidOff, corrOff int) {
	corr := corrPrefix + "0000000000000000"
	var props []byte
	props = append(props, 0x09) // Correlation Data
	props = appendStr(props, corr)
	var body []byte
	body = appendStr(body, topic)
	if qos > 0 {
		pidOff = len(body)
		body = append(body, 0, 1)
	}
	body = appendVarint(body, len(props))
	corrOff = len(body) + 1 + 2 + len(corrPrefix)
	body = append(body, props...)
	for i := 0; i < payload; i++ {
		body = append(body, byte('a'+i%26))
	}
	hdr := appendVarint([]byte{0x30 | qos<<1}, len(body))
	pkt = append(hdr, body...)
	return pkt, pidOff + len(hdr), corrOff + len(hdr)
}

const hexDigits = "0123456789abcdef"

func dialClient(ctx context.Context, cfg loadConfig, id int, cnt *loadCounters) (*client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, w: bufio.NewWriterSize(conn, 64<<10), qos: cfg.QoS, id: id, cnt: cnt,
		done: make(chan struct{}), window: int64(cfg.Window)}
	cid := fmt.Sprintf("%s-%d", cfg.Prefix, id)
	if _, err := conn.Write(connectPacket(cid)); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReaderSize(conn, 64<<10)
	typ, body, err := readPacket(br)
	if err != nil || typ != 2 || len(body) < 2 || body[1] != 0 {
		conn.Close()
		return nil, fmt.Errorf("CONNACK: type %d body %x err %v", typ, body, err)
	}
	// Receive Maximum (0x21) of the broker bounds our window.
	if len(body) > 3 {
		props := body[2:]
		n, k := uvarint(props)
		props = props[k:]
		if n <= len(props) {
			props = props[:n]
		}
		if rm := findReceiveMax(props); rm > 0 && int64(rm) < c.window {
			c.window = int64(rm)
		}
	}
	conn.SetReadDeadline(time.Time{})
	c.tmpl, c.pidOff, c.corrOff = publishTemplate(fmt.Sprintf("bench/plant/line%d/sensor%d/value", id%4, id), cfg.QoS,
		fmt.Sprintf("%s-%d-", cfg.Prefix, id), cfg.Payload)
	go c.readLoop(br)
	return c, nil
}

// findReceiveMax walks CONNACK properties for Receive Maximum.
func findReceiveMax(p []byte) int {
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		switch id {
		case 0x21:
			if len(p) >= 2 {
				return int(binary.BigEndian.Uint16(p))
			}
			return 0
		case 0x13, 0x22: // two-byte integers
			p = p[min(2, len(p)):]
		case 0x11, 0x27: // four-byte
			p = p[min(4, len(p)):]
		case 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			p = p[min(1, len(p)):]
		case 0x12, 0x1A, 0x1C, 0x1F, 0x15, 0x16: // strings / binary
			if len(p) < 2 {
				return 0
			}
			p = p[min(2+int(binary.BigEndian.Uint16(p)), len(p)):]
		case 0x26: // user property: two strings
			for k := 0; k < 2; k++ {
				if len(p) < 2 {
					return 0
				}
				p = p[min(2+int(binary.BigEndian.Uint16(p)), len(p)):]
			}
		default:
			return 0
		}
	}
	return 0
}

func uvarint(b []byte) (int, int) {
	n, mul := 0, 1
	for i := 0; i < len(b) && i < 4; i++ {
		n += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			return n, i + 1
		}
		mul *= 128
	}
	return 0, len(b)
}

func readPacket(br *bufio.Reader) (byte, []byte, error) {
	h, err := br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		c, err := br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(c&0x7f) * mul
		if c&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return 0, nil, err
	}
	return h >> 4, body, nil
}

func (c *client) readLoop(br *bufio.Reader) {
	defer close(c.done)
	var rel []byte
	for {
		typ, body, err := readPacket(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.setReadErr(err)
			}
			return
		}
		switch typ {
		case 4, 7: // PUBACK, PUBCOMP
			c.inflight.Add(-1)
			c.cnt.acked.Add(1)
		case 5: // PUBREC → PUBREL
			if len(body) >= 2 {
				rel = append(rel, 0x62, 0x02, body[0], body[1])
			}
		case 14: // DISCONNECT from the broker
			c.setReadErr(fmt.Errorf("broker sent DISCONNECT %x", body))
			return
		}
		if len(rel) > 0 && br.Buffered() == 0 {
			c.wmu.Lock()
			c.w.Write(rel)
			err := c.w.Flush()
			c.wmu.Unlock()
			rel = rel[:0]
			if err != nil {
				return
			}
		}
	}
}

// publish writes n PUBLISH packets (one flush).
func (c *client) publish(n int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for i := 0; i < n; i++ {
		c.seq++
		s := c.seq
		for k := 15; k >= 0; k-- {
			c.tmpl[c.corrOff+k] = hexDigits[s&0xf]
			s >>= 4
		}
		if c.qos > 0 {
			c.pid++
			if c.pid == 0 {
				c.pid = 1
			}
			binary.BigEndian.PutUint16(c.tmpl[c.pidOff:], c.pid)
			c.inflight.Add(1)
		}
		if _, err := c.w.Write(c.tmpl); err != nil {
			return err
		}
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.cnt.sent.Add(uint64(n))
	if c.qos == 0 {
		c.cnt.acked.Add(uint64(n))
	}
	return nil
}

// runLoad connects the clients, publishes at cfg.Rate for cfg.Duration,
// waits (bounded) for the outstanding acks and disconnects. started is
// called once all clients are connected, just before the first PUBLISH.
func runLoad(ctx context.Context, cfg loadConfig, cnt *loadCounters, started func()) error {
	clients := make([]*client, 0, cfg.Clients)
	defer func() {
		for _, c := range clients {
			c.conn.Close()
		}
	}()
	for i := 0; i < cfg.Clients; i++ {
		c, err := dialClient(ctx, cfg, i, cnt)
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		clients = append(clients, c)
	}
	if started != nil {
		started()
	}
	per := cfg.Rate / float64(cfg.Clients)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stagger the clients' ticks over the first millisecond.
			time.Sleep(time.Duration(i) * time.Millisecond / time.Duration(len(clients)))
			sent := 0
			for {
				el := time.Since(start)
				if el >= cfg.Duration || ctx.Err() != nil {
					return
				}
				n := int(per*el.Seconds()) - sent
				if c.qos > 0 {
					if room := int(c.window - c.inflight.Load()); n > room {
						n = room
					}
				}
				if n > 0 {
					if err := c.publish(n); err != nil {
						errs[i] = err
						return
					}
					sent += n
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	// Wait for the acks of what was sent (bounded), then DISCONNECT.
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range clients {
		for c.qos > 0 && c.inflight.Load() > 0 && time.Now().Before(deadline) && c.readError() == nil {
			time.Sleep(2 * time.Millisecond)
		}
	}
	for _, c := range clients {
		c.wmu.Lock()
		c.w.Write([]byte{0xE0, 0x00})
		c.w.Flush()
		c.wmu.Unlock()
	}
	for _, c := range clients {
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
		}
	}
	var all []error
	for i, c := range clients {
		if errs[i] != nil {
			all = append(all, fmt.Errorf("client %d write: %w", i, errs[i]))
		}
		if err := c.readError(); err != nil {
			all = append(all, fmt.Errorf("client %d read: %w", i, err))
		}
	}
	return errors.Join(all...)
}
