package coaptrack

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/app"
)

// The tracker's benchmark (docs/benchmarks.md, "CoAP offline"):
//
//	go test ./probe/coaptrack -run '^$' -bench Tracker -benchmem -cpu 1
//
// A realistic mix of datagrams, replayed with fresh message ids on every
// pass so that every pass opens new exchanges (no duplicates): 2,000
// clients (a fifth over IPv6) talking to 8 servers; per 100 exchanges 55
// CON requests with a piggybacked response (5 of them retransmitted), 20
// NON/NON, 10 separate responses, 5 Observe registrations with 3
// notifications each (NON, CON + ACK, NON), 5 two-block Block2 transfers
// and 5 pings.

// benchDatagram is one datagram of the mix (its message id in bytes 2–3).
type benchDatagram struct {
	src, dst netip.AddrPort
	payload  []byte
}

func benchMix(nexch int) []benchDatagram {
	var out []benchDatagram
	var m coapparse.Message
	enc := func(src, dst netip.AddrPort, typ coapparse.Type, code coapparse.Code, mid uint16, tok []byte, build func(*coapparse.Message)) {
		m.Reset()
		m.Type, m.Code, m.MessageID = typ, code, mid
		if len(tok) > 0 {
			m.Token = tok
		}
		if build != nil {
			build(&m)
		}
		b, err := coapparse.AppendMessage(nil, &m)
		if err != nil {
			panic(err)
		}
		out = append(out, benchDatagram{src, dst, b})
	}
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	paths := []string{"sensors/temp", "sensors/hum/3", "actuators/valve/12", "config", "status"}
	payload := []byte(`{"v":235,"unit":"c","p":"abcdefghijklmnopqrstuvwxyz"}`)
	var servers []netip.AddrPort
	for i := range 8 {
		servers = append(servers, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, 1, byte(i + 1)}), 5683))
	}
	for i := range 8 {
		servers = append(servers, netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i + 1)}), 5683))
	}
	var mid uint16
	for e := range nexch {
		ci := e % 2000
		var c, s netip.AddrPort
		if ci%5 == 4 {
			c = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 1, 14: byte(ci >> 8), 15: byte(ci)}), uint16(50000+ci))
			s = servers[8+e%8]
		} else {
			c = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(ci >> 8), byte(ci)}), uint16(50000+ci))
			s = servers[e%8]
		}
		var tok [8]byte
		binary.BigEndian.PutUint64(tok[:], uint64(e)*0x9e3779b97f4a7c15)
		tk := tok[:1+e%8]
		path := paths[e%len(paths)]
		get := func(m *coapparse.Message) { must(m.AddURIPath(path)) }
		content := func(m *coapparse.Message) {
			must(m.AddUint(coapparse.ContentFormat, 50))
			m.Payload = payload
		}
		mid++
		switch k := e % 100; {
		case k < 55:
			enc(c, s, coapparse.Confirmable, coapparse.GET, mid, tk, get)
			if k < 5 {
				enc(c, s, coapparse.Confirmable, coapparse.GET, mid, tk, get)
			}
			enc(s, c, coapparse.Acknowledgement, coapparse.Content, mid, tk, content)
		case k < 75:
			enc(c, s, coapparse.NonConfirmable, coapparse.PUT, mid, tk, func(m *coapparse.Message) { get(m); content(m) })
			mid++
			enc(s, c, coapparse.NonConfirmable, coapparse.Changed, mid, tk, nil)
		case k < 85:
			enc(c, s, coapparse.Confirmable, coapparse.GET, mid, tk, get)
			enc(s, c, coapparse.Acknowledgement, coapparse.Empty, mid, nil, nil)
			mid++
			enc(s, c, coapparse.Confirmable, coapparse.Content, mid, tk, content)
			enc(c, s, coapparse.Acknowledgement, coapparse.Empty, mid, nil, nil)
		case k < 90:
			enc(c, s, coapparse.Confirmable, coapparse.GET, mid, tk, func(m *coapparse.Message) { must(m.AddUint(coapparse.Observe, 0)); get(m) })
			enc(s, c, coapparse.Acknowledgement, coapparse.Content, mid, tk, func(m *coapparse.Message) { must(m.AddUint(coapparse.Observe, 1)); content(m) })
			for n := range 3 {
				mid++
				typ := coapparse.NonConfirmable
				if n == 1 {
					typ = coapparse.Confirmable
				}
				enc(s, c, typ, coapparse.Content, mid, tk, func(m *coapparse.Message) { must(m.AddUint(coapparse.Observe, uint32(2+n))); content(m) })
				if typ == coapparse.Confirmable {
					enc(c, s, coapparse.Acknowledgement, coapparse.Empty, mid, nil, nil)
				}
			}
		case k < 95:
			for n := range 2 {
				if n > 0 {
					mid++
				}
				enc(c, s, coapparse.Confirmable, coapparse.GET, mid, tk, func(m *coapparse.Message) {
					get(m)
					if n > 0 {
						must(m.AddUint(coapparse.Block2, coapparse.Block{Num: uint32(n), SZX: 2}.Uint()))
					}
				})
				enc(s, c, coapparse.Acknowledgement, coapparse.Content, mid, tk, func(m *coapparse.Message) {
					must(m.AddUint(coapparse.Block2, coapparse.Block{Num: uint32(n), More: n == 0, SZX: 2}.Uint()))
					m.Payload = payload
				})
			}
		default:
			enc(c, s, coapparse.Confirmable, coapparse.Empty, mid, nil, nil)
			enc(s, c, coapparse.Reset, coapparse.Empty, mid, nil, nil)
		}
	}
	return out
}

// BenchmarkTracker feeds the mix through one tracker: "dense" at one
// datagram every 10 µs of capture time (the 45 s linger holds far more
// than MaxExchanges: the bound evicts on every new exchange), "sparse" at
// one every 1 ms (about 22,000 exchanges lingering). Both are warmed up to
// their steady state before the timer starts; allocs/op is per datagram.
func BenchmarkTracker(b *testing.B) {
	for _, bc := range []struct {
		name string
		gap  time.Duration
	}{{"dense", 10 * time.Microsecond}, {"sparse", time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			mix := benchMix(20_000)
			var flows int
			tr := New(Config{}, app.FlowFunc(func(*flow.Record) { flows++ }))
			var d app.Datagram
			ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			var pass uint16
			i := 0
			step := func() {
				if i == len(mix) {
					i, pass = 0, pass+1
				}
				x := &mix[i]
				i++
				mid := binary.BigEndian.Uint16(x.payload[2:4])
				binary.BigEndian.PutUint16(x.payload[2:4], mid+8*pass) // an exchange spans at most 4 message ids
				d.Src, d.Dst, d.Payload, d.Time = x.src, x.dst, x.payload, ts
				tr.Datagram(&d)
				binary.BigEndian.PutUint16(x.payload[2:4], mid)
				ts += int64(bc.gap)
				if i&1023 == 0 {
					tr.AdvanceAt(ts)
				}
			}
			// Warm up: fill the tables to their steady size.
			warm := min(int(tr.cfg.Linger/bc.gap), 2*tr.cfg.MaxExchanges) * 2
			for range warm {
				step()
			}
			b.ReportAllocs()
			b.ResetTimer()
			flows = 0
			for range b.N {
				step()
			}
			b.StopTimer()
			s := tr.Stats()
			b.ReportMetric(float64(flows)/float64(b.N), "flows/op")
			b.ReportMetric(float64(s.Open+s.Lingering), "exchanges")
			if s.Duplicates != 0 || s.Malformed != 0 {
				b.Fatalf("duplicates %d, malformed %d: the mix is not fresh on every pass", s.Duplicates, s.Malformed)
			}
		})
	}
}

// BenchmarkMemoryLatency measures what one dependent random access costs
// on this machine in a table of each size: a walk along a random cyclic
// permutation, so every load waits for the one before (the tracker's
// lookups are like that unless they are loaded ahead together). It is
// the machine's figure, not the tracker's: docs/benchmarks.md, "CoAP
// offline", uses it to explain where the time goes.
func BenchmarkMemoryLatency(b *testing.B) {
	for _, mib := range []int{1, 4, 64} {
		n := mib << 20 / 4 // uint32 entries
		next := make([]uint32, n)
		perm := make([]uint32, n)
		for i := range perm {
			perm[i] = uint32(i)
		}
		x := uint64(0x9e3779b97f4a7c15)
		for i := n - 1; i > 0; i-- {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			j := int(x % uint64(i))
			perm[i], perm[j] = perm[j], perm[i]
		}
		for i := range n {
			next[perm[i]] = perm[(i+1)%n]
		}
		b.Run(strconv.Itoa(mib)+"MiB", func(b *testing.B) {
			var at uint32
			for range b.N {
				at = next[at]
			}
			if at >= uint32(n) {
				b.Fatal("walk left the table")
			}
		})
	}
}
