package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/mission-ids/mission/coapparse"
)

// The synthetic CoAP capture of `go run ./bench -coap-capture FILE`: a
// deterministic pcap (Ethernet, IPv4 and IPv6, UDP port 5683) of many
// interleaved exchanges between thousands of client endpoints and a few
// servers, every message encoded by coapparse.AppendMessage. One frame is
// one CoAP message, so tshark's `-Y coap` count equals the generator's.

// coapGenConfig shapes the capture. Zero values take the defaults.
type coapGenConfig struct {
	Messages int    // CoAP messages (frames) to write
	Seed     uint64 // same seed and parameters: the same bytes
	Clients  int    // client endpoints (address and port); default 4096
	Servers  int    // server addresses, half IPv4 and half IPv6; default 16
	InFlight int    // exchanges interleaved at once; default 512
	// Gap is the mean capture time between frames (uniform within ±90 %);
	// default 10.5 µs (1–20 µs). It sets how many exchanges linger: a
	// 45 s linger holds 45 s / Gap messages' exchanges.
	Gap time.Duration
}

// Exchange shapes of the capture.
const (
	shapePiggybacked   = iota // CON request, ACK with the response
	shapeRetransmitted        // CON request sent twice, ACK with the response
	shapeNON                  // NON request, NON response
	shapeSeparate             // CON request, empty ACK, CON response, empty ACK
	shapeObserve              // Observe registration, then NON and CON notifications
	shapeBlock2               // Block2 transfer: one request/response per block
	shapePing                 // empty CON, RST
	shapeUnanswered           // NON request without response
	numShapes
)

var shapeNames = [numShapes]string{"piggybacked", "retransmitted", "non", "separate", "observe", "block2", "ping", "unanswered"}

// shapeWeights: how often each shape starts (per mille).
var shapeWeights = [numShapes]int{430, 40, 170, 90, 90, 60, 60, 60}

// coapGenStats describes what was written.
type coapGenStats struct {
	Messages  int
	ByType    [4]int // CON, NON, ACK, RST
	IPv6      int    // frames over IPv6
	Exchanges [numShapes]int
	Bytes     int64 // file size
	Duration  time.Duration
}

// describe is a one-paragraph description of the capture for reports.
func (s coapGenStats) describe(cfg coapGenConfig) string {
	gap := ""
	if cfg.Gap > 0 {
		gap = " -coap-gap " + cfg.Gap.String()
	}
	b := fmt.Sprintf("synthetic (`go run ./bench -coap-capture FILE -messages %d -seed %d%s`): %d CoAP messages (CON %d, NON %d, ACK %d, RST %d), %d over IPv6, %d clients, %d servers, %d exchanges interleaved; %.1f MB, %s of capture time; exchanges:",
		cfg.Messages, cfg.Seed, gap, s.Messages, s.ByType[0], s.ByType[1], s.ByType[2], s.ByType[3], s.IPv6, cfg.Clients, cfg.Servers, cfg.InFlight,
		float64(s.Bytes)/1e6, s.Duration.Round(time.Millisecond))
	for i, n := range s.Exchanges {
		b += fmt.Sprintf(" %s %d", shapeNames[i], n)
		if i < numShapes-1 {
			b += ","
		}
	}
	return b + "."
}

func (c *coapGenConfig) defaults() {
	if c.Clients <= 0 {
		c.Clients = 4096
	}
	if c.Servers <= 0 {
		c.Servers = 16
	}
	if c.InFlight <= 0 {
		c.InFlight = 512
	}
}

type coapEndpoint struct {
	addr netip.Addr
	port uint16
	mac  [6]byte
	mid  uint16 // next message id
}

type coapFrame struct {
	from, to *coapEndpoint
	data     []byte
}

// coapScript is one exchange's messages, sent in order.
type coapScript struct {
	frames []coapFrame
	next   int
}

type coapGen struct {
	cfg     coapGenConfig
	rng     *rand.Rand
	clients []coapEndpoint
	servers []coapEndpoint
	tokens  uint64
	msg     coapparse.Message
	stats   coapGenStats
	scratch []byte
	free    []*coapScript
}

var coapPaths = []string{"sensors/temp", "sensors/hum", "sensors/co2", "actuators/valve", "actuators/pump", "config", "fw/image", "status", "rd", "lights"}

// writeCoAPCaptureFile writes the capture to path.
func writeCoAPCaptureFile(path string, cfg coapGenConfig) (coapGenStats, error) {
	f, err := os.Create(path)
	if err != nil {
		return coapGenStats{}, err
	}
	s, err := writeCoAPCapture(f, cfg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return s, err
}

// writeCoAPCapture writes a pcap of cfg.Messages CoAP messages to w.
func writeCoAPCapture(w io.Writer, cfg coapGenConfig) (coapGenStats, error) {
	cfg.defaults()
	if cfg.Messages <= 0 {
		return coapGenStats{}, fmt.Errorf("coap capture: %d messages", cfg.Messages)
	}
	g := &coapGen{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	for i := range cfg.Servers {
		e := coapEndpoint{port: 5683, mid: uint16(g.rng.Uint32())}
		if i%2 == 0 {
			e.addr = netip.AddrFrom4([4]byte{192, 168, 1, byte(1 + i)})
		} else {
			e.addr = netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 1, 14: byte(i >> 8), 15: byte(i)})
		}
		e.mac = [6]byte{0x02, 0, 0, 0, 1, byte(i)}
		g.servers = append(g.servers, e)
	}
	for i := range cfg.Clients {
		e := coapEndpoint{port: uint16(49152 + g.rng.IntN(16384)), mid: uint16(g.rng.Uint32())} // dynamic ports: no traceroute heuristics
		if i%5 == 4 {
			e.addr = netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 2, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		} else {
			e.addr = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		e.mac = [6]byte{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		g.clients = append(g.clients, e)
	}

	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b23c4d) // nanosecond pcap
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	bw.Write(hdr[:])
	written := int64(len(hdr))

	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	start := ts
	planned := 0
	var active []*coapScript
	frame := make([]byte, 0, 2048)
	for planned < cfg.Messages || len(active) > 0 {
		for len(active) < cfg.InFlight && planned < cfg.Messages {
			s := g.script(cfg.Messages - planned)
			planned += len(s.frames)
			active = append(active, s)
		}
		i := g.rng.IntN(len(active))
		s := active[i]
		f := s.frames[s.next]
		s.next++
		if s.next == len(s.frames) {
			active[i] = active[len(active)-1]
			active = active[:len(active)-1]
			g.recycle(s)
		}
		if cfg.Gap > 0 {
			ts += int64(cfg.Gap)/10 + g.rng.Int64N(int64(cfg.Gap)*18/10+1)
		} else {
			ts += int64(1000 + g.rng.IntN(19000)) // 1–20 µs between frames
		}
		frame = appendUDPFrame(frame[:0], f.from, f.to, f.data)
		if f.from.addr.Is6() {
			g.stats.IPv6++
		}
		g.stats.Messages++
		g.stats.ByType[f.data[0]>>4&3]++
		var rec [16]byte
		binary.LittleEndian.PutUint32(rec[0:], uint32(ts/1e9))
		binary.LittleEndian.PutUint32(rec[4:], uint32(ts%1e9))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(frame)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(frame)))
		bw.Write(rec[:])
		if _, err := bw.Write(frame); err != nil {
			return g.stats, err
		}
		written += int64(len(rec) + len(frame))
	}
	g.stats.Bytes = written
	g.stats.Duration = time.Duration(ts - start)
	return g.stats, bw.Flush()
}

func (g *coapGen) recycle(s *coapScript) {
	for i := range s.frames {
		s.frames[i].data = s.frames[i].data[:0]
	}
	s.frames, s.next = s.frames[:0], 0
	g.free = append(g.free, s)
}

// script builds one exchange of at most room messages.
func (g *coapGen) script(room int) *coapScript {
	var s *coapScript
	if n := len(g.free); n > 0 {
		s, g.free = g.free[n-1], g.free[:n-1]
	} else {
		s = &coapScript{}
	}
	shape := shapeUnanswered
	if room >= 2 {
		r := g.rng.IntN(1000)
		for shape = 0; shape < numShapes-1 && r >= shapeWeights[shape]; shape++ {
			r -= shapeWeights[shape]
		}
	}
	need := 2
	switch shape {
	case shapeUnanswered:
		need = 1
	case shapeRetransmitted:
		need = 3
	case shapeSeparate:
		need = 4
	}
	if need > room {
		shape = shapePiggybacked
	}
	c := &g.clients[g.rng.IntN(len(g.clients))]
	sv := &g.servers[g.rng.IntN(len(g.servers)/2)*2]
	if c.addr.Is6() {
		sv = &g.servers[g.rng.IntN(len(g.servers)/2)*2+1]
	}
	g.stats.Exchanges[shape]++
	switch shape {
	case shapePing:
		mid := c.nextMID()
		g.empty(s, c, sv, coapparse.Confirmable, mid)
		g.empty(s, sv, c, coapparse.Reset, mid)
	case shapePiggybacked, shapeRetransmitted:
		tok := g.token()
		mid := c.nextMID()
		method := g.request(coapparse.Confirmable, mid, tok)
		g.send(s, c, sv)
		if shape == shapeRetransmitted {
			g.send(s, c, sv)
		}
		g.response(coapparse.Acknowledgement, mid, tok, method, -1)
		g.send(s, sv, c)
	case shapeNON, shapeUnanswered:
		tok := g.token()
		method := g.request(coapparse.NonConfirmable, c.nextMID(), tok)
		g.send(s, c, sv)
		if shape == shapeNON {
			g.response(coapparse.NonConfirmable, sv.nextMID(), tok, method, -1)
			g.send(s, sv, c)
		}
	case shapeSeparate:
		tok := g.token()
		mid := c.nextMID()
		method := g.request(coapparse.Confirmable, mid, tok)
		g.send(s, c, sv)
		g.empty(s, sv, c, coapparse.Acknowledgement, mid)
		smid := sv.nextMID()
		g.response(coapparse.Confirmable, smid, tok, method, -1)
		g.send(s, sv, c)
		g.empty(s, c, sv, coapparse.Acknowledgement, smid)
	case shapeObserve:
		tok := g.token()
		mid := c.nextMID()
		m := g.reset(coapparse.Confirmable, coapparse.GET, mid, tok)
		must(m.AddUint(coapparse.Observe, 0))
		must(m.AddURIPath(g.path()))
		g.send(s, c, sv)
		seq := uint32(g.rng.IntN(1 << 16))
		g.response(coapparse.Acknowledgement, mid, tok, coapparse.GET, int64(seq))
		g.send(s, sv, c)
		for k := range min(1+g.rng.IntN(6), room-len(s.frames)) {
			seq++
			if k%2 == 0 || room-len(s.frames) < 2 {
				g.response(coapparse.NonConfirmable, sv.nextMID(), tok, coapparse.GET, int64(seq))
				g.send(s, sv, c)
				continue
			}
			smid := sv.nextMID()
			g.response(coapparse.Confirmable, smid, tok, coapparse.GET, int64(seq))
			g.send(s, sv, c)
			typ := coapparse.Acknowledgement
			if g.rng.IntN(8) == 0 {
				typ = coapparse.Reset // the client cancels
			}
			g.empty(s, c, sv, typ, smid)
			if typ == coapparse.Reset {
				break
			}
		}
	case shapeBlock2:
		szx := uint8(g.rng.IntN(7))
		size := 16 << szx
		blocks := min(2+g.rng.IntN(7), room/2)
		last := 1 + g.rng.IntN(size)
		path := g.path()
		for num := range blocks {
			tok := g.token()
			mid := c.nextMID()
			m := g.reset(coapparse.Confirmable, coapparse.GET, mid, tok)
			must(m.AddURIPath(path))
			if num > 0 {
				must(m.AddUint(coapparse.Block2, coapparse.Block{Num: uint32(num), SZX: szx}.Uint()))
			}
			g.send(s, c, sv)
			more := num < blocks-1
			n := size
			if !more {
				n = last
			}
			m = g.reset(coapparse.Acknowledgement, coapparse.Content, mid, tok)
			must(m.AddUint(coapparse.ContentFormat, 42))
			must(m.AddUint(coapparse.Block2, coapparse.Block{Num: uint32(num), More: more, SZX: szx}.Uint()))
			if num == 0 {
				must(m.AddUint(coapparse.Size2, uint32(size*(blocks-1)+last)))
			}
			m.Payload = g.bytes(n)
			g.send(s, sv, c)
		}
	}
	return s
}

func (e *coapEndpoint) nextMID() uint16 { e.mid++; return e.mid }

// token returns a fresh token of 1–8 bytes.
func (g *coapGen) token() []byte {
	g.tokens++
	n := 1 + g.rng.IntN(8)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], g.tokens*0x9e3779b97f4a7c15)
	return b[8-n:]
}

func (g *coapGen) path() string {
	p := coapPaths[g.rng.IntN(len(coapPaths))]
	if g.rng.IntN(2) == 0 {
		p += "/" + strconv.Itoa(g.rng.IntN(500))
	}
	return p
}

func (g *coapGen) reset(typ coapparse.Type, code coapparse.Code, mid uint16, tok []byte) *coapparse.Message {
	m := &g.msg
	m.Reset()
	m.Type, m.Code, m.MessageID = typ, code, mid
	if len(tok) > 0 {
		m.Token = tok
	}
	return m
}

// request fills g.msg with a request and returns its method.
func (g *coapGen) request(typ coapparse.Type, mid uint16, tok []byte) coapparse.Code {
	methods := []coapparse.Code{coapparse.GET, coapparse.GET, coapparse.GET, coapparse.PUT, coapparse.POST, coapparse.DELETE}
	method := methods[g.rng.IntN(len(methods))]
	m := g.reset(typ, method, mid, tok)
	if g.rng.IntN(10) == 0 {
		must(m.AddOption(coapparse.URIHost, []byte("gw"+strconv.Itoa(g.rng.IntN(8))+".plant.example")))
	}
	if g.rng.IntN(6) == 0 {
		must(m.AddOption(coapparse.URIPath, []byte(".well-known")))
		must(m.AddOption(coapparse.URIPath, []byte("core")))
	} else {
		must(m.AddURIPath(g.path()))
	}
	if g.rng.IntN(5) == 0 {
		must(m.AddURIQuery("unit=c&since=" + strconv.Itoa(g.rng.IntN(100000))))
	}
	if method == coapparse.PUT || method == coapparse.POST {
		g.payload(m, 1+g.rng.IntN(200))
	} else if g.rng.IntN(4) == 0 {
		must(m.AddUint(coapparse.Accept, 50))
	}
	return method
}

// response fills g.msg with a response to method; observe ≥ 0 adds the
// Observe option.
func (g *coapGen) response(typ coapparse.Type, mid uint16, tok []byte, method coapparse.Code, observe int64) {
	code := coapparse.Content
	switch method {
	case coapparse.PUT:
		code = coapparse.Changed
	case coapparse.POST:
		code = coapparse.Created
	case coapparse.DELETE:
		code = coapparse.Deleted
	}
	if observe < 0 && g.rng.IntN(12) == 0 {
		code = coapparse.NotFound
	}
	m := g.reset(typ, code, mid, tok)
	if observe >= 0 {
		must(m.AddUint(coapparse.Observe, uint32(observe)&0xffffff))
	}
	switch {
	case code == coapparse.Created:
		must(m.AddOption(coapparse.LocationPath, []byte("items")))
		must(m.AddOption(coapparse.LocationPath, []byte(strconv.Itoa(g.rng.IntN(10000)))))
	case code == coapparse.Content:
		g.payload(m, 1+g.rng.IntN(300))
		if g.rng.IntN(3) == 0 {
			must(m.AddUint(coapparse.MaxAge, uint32(g.rng.IntN(120))))
		}
	}
}

// payload adds a payload of about n bytes with a Content-Format whose
// dissector accepts it: text, JSON, CBOR (a byte string) or octets.
func (g *coapGen) payload(m *coapparse.Message, n int) {
	b := g.scratch[:0]
	var cf uint32
	switch g.rng.IntN(4) {
	case 0:
		cf = 0
		b = append(b, "23.5 C"...)
		for len(b) < n {
			b = append(b, 'a'+byte(g.rng.IntN(26)))
		}
	case 1:
		cf = 50
		b = append(b, `{"v":`...)
		b = strconv.AppendInt(b, int64(g.rng.IntN(1000)), 10)
		b = append(b, `,"p":"`...)
		for len(b) < n-2 {
			b = append(b, 'a'+byte(g.rng.IntN(26)))
		}
		b = append(b, `"}`...)
	case 2:
		cf = 60
		k := max(n-3, 0)
		b = append(b, 0x59, byte(k>>8), byte(k)) // CBOR byte string, 2-byte length
		for range k {
			b = append(b, byte(g.rng.Uint32()))
		}
	default:
		cf = 42
		for range n {
			b = append(b, byte(g.rng.Uint32()))
		}
	}
	g.scratch = b
	must(m.AddUint(coapparse.ContentFormat, cf))
	m.Payload = b
}

func (g *coapGen) bytes(n int) []byte {
	b := g.scratch[:0]
	for range n {
		b = append(b, byte(g.rng.Uint32()))
	}
	g.scratch = b
	return b
}

// send appends g.msg, from → to, to s.
func (g *coapGen) send(s *coapScript, from, to *coapEndpoint) {
	if len(s.frames) < cap(s.frames) {
		s.frames = s.frames[:len(s.frames)+1]
	} else {
		s.frames = append(s.frames, coapFrame{})
	}
	f := &s.frames[len(s.frames)-1]
	f.from, f.to = from, to
	var err error
	f.data, err = coapparse.AppendMessage(f.data[:0], &g.msg)
	must(err)
}

// empty appends an Empty message (ping, empty ACK, RST) to s.
func (g *coapGen) empty(s *coapScript, from, to *coapEndpoint, typ coapparse.Type, mid uint16) {
	g.reset(typ, coapparse.Empty, mid, nil)
	g.send(s, from, to)
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("coap capture generator: %v", err)) // a bug in the generator, not input
	}
}

// appendUDPFrame appends an Ethernet/IP/UDP frame carrying payload.
func appendUDPFrame(b []byte, from, to *coapEndpoint, payload []byte) []byte {
	b = append(b, to.mac[:]...)
	b = append(b, from.mac[:]...)
	udpLen := 8 + len(payload)
	var ipStart int
	if from.addr.Is4() {
		b = append(b, 0x08, 0x00)
		ipStart = len(b)
		total := 20 + udpLen
		b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0x40, 0, 64, 17, 0, 0)
		s4, d4 := from.addr.As4(), to.addr.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
		binary.BigEndian.PutUint16(b[ipStart+10:], ^fold(checksum(0, b[ipStart:ipStart+20])))
	} else {
		b = append(b, 0x86, 0xdd)
		ipStart = len(b)
		b = append(b, 0x60, 0, 0, 0, byte(udpLen>>8), byte(udpLen), 17, 64)
		s16, d16 := from.addr.As16(), to.addr.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	u := len(b)
	b = append(b, byte(from.port>>8), byte(from.port), byte(to.port>>8), byte(to.port), byte(udpLen>>8), byte(udpLen), 0, 0)
	b = append(b, payload...)
	// UDP checksum over the pseudo-header.
	var sum uint32
	if from.addr.Is4() {
		sum = checksum(sum, b[ipStart+12:ipStart+20])
	} else {
		sum = checksum(sum, b[ipStart+8:ipStart+40])
	}
	sum += 17 + uint32(udpLen)
	sum = checksum(sum, b[u:])
	c := ^fold(sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[u+6:], c)
	return b
}

// checksum adds b (16-bit big-endian words) to the one's complement sum.
func checksum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return uint32(fold(sum))
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
