package coaptrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/app"
)

var (
	client = netip.MustParseAddrPort("10.0.0.5:40000")
	server = netip.MustParseAddrPort("10.0.0.1:5683")
)

func msg(t *testing.T, typ coapparse.Type, code coapparse.Code, mid uint16, token string, path string) []byte {
	t.Helper()
	var m coapparse.Message
	m.Reset()
	m.Type, m.Code, m.MessageID, m.Token = typ, code, mid, []byte(token)
	if path != "" {
		require.NoError(t, m.AddURIPath(path))
	}
	b, err := coapparse.AppendMessage(nil, &m)
	require.NoError(t, err)
	return b
}

// dgram is a datagram of a test exchange between client and server.
type dgram struct {
	fromClient bool
	b          []byte
}

// feed gives tr the datagrams, step apart in capture time from a fixed
// start, and returns that start.
func feed(tr *Tracker, ds []dgram, step time.Duration) int64 {
	ts := int64(1_800_000_000_000_000_000)
	for i, d := range ds {
		src, dst := client, server
		if !d.fromClient {
			src, dst = server, client
		}
		tr.Datagram(&app.Datagram{Src: src, Dst: dst, Payload: d.b, Time: ts + int64(i)*int64(step)})
	}
	return ts
}

// replay runs the datagrams, 1 ms apart, through a tracker with a 1 s
// idle timeout, then lets 5 s of capture time pass and shuts it down.
func replay(ds []dgram) (*collect, *Tracker) {
	out := &collect{}
	tr := New(Config{IdleTimeout: time.Second}, out)
	ts := feed(tr, ds, time.Millisecond)
	tr.AdvanceAt(ts + int64(5*time.Second))
	tr.FlushAll()
	return out, tr
}

type collect struct{ flows []flow.Record }

func (c *collect) Flow(r *flow.Record) {
	cp := *r
	if r.CoAP != nil {
		co := *r.CoAP
		cp.CoAP = &co
	}
	c.flows = append(c.flows, cp)
}

// TestExchanges: the request/response shapes of RFC 7252 each make one
// flow with the right end reason, response code and retransmission count.
func TestExchanges(t *testing.T) {
	tests := []struct {
		name     string
		dgrams   func(t *testing.T) []dgram
		code     string // response code of the flow ("" none)
		retrans  uint32
		end      flow.EndReason
		withResp bool
	}{
		{"piggybacked", func(t *testing.T) []dgram {
			return []dgram{{true, msg(t, coapparse.Confirmable, coapparse.GET, 1, "a1", "/s/t")}, {false, msg(t, coapparse.Acknowledgement, coapparse.Content, 1, "a1", "")}}
		}, "2.05", 0, flow.EndOfFlow, true},
		{"separate response", func(t *testing.T) []dgram {
			return []dgram{
				{true, msg(t, coapparse.Confirmable, coapparse.GET, 2, "b2", "/slow")},
				{false, msg(t, coapparse.Acknowledgement, 0, 2, "", "")}, // empty ACK
				{false, msg(t, coapparse.Confirmable, coapparse.Content, 900, "b2", "")},
				{true, msg(t, coapparse.Acknowledgement, 0, 900, "", "")},
			}
		}, "2.05", 0, flow.EndOfFlow, true},
		{"retransmitted CON", func(t *testing.T) []dgram {
			req := msg(t, coapparse.Confirmable, coapparse.PUT, 3, "c3", "/a")
			return []dgram{{true, req}, {true, req}, {true, req}, {false, msg(t, coapparse.Acknowledgement, coapparse.Changed, 3, "c3", "")}}
		}, "2.04", 2, flow.EndOfFlow, true},
		{"not found", func(t *testing.T) []dgram {
			return []dgram{{true, msg(t, coapparse.Confirmable, coapparse.GET, 4, "d4", "/nope")}, {false, msg(t, coapparse.Acknowledgement, coapparse.NotFound, 4, "d4", "")}}
		}, "4.04", 0, flow.EndOfFlow, true},
		{"unanswered NON ends idle", func(t *testing.T) []dgram {
			return []dgram{{true, msg(t, coapparse.NonConfirmable, coapparse.POST, 5, "e5", "/r")}}
		}, "", 0, flow.EndIdleTimeout, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, tr := replay(tt.dgrams(t))
			require.Len(t, out.flows, 1)
			f := out.flows[0]
			require.Equal(t, flow.AppCoAP, f.ApplicationProtocol)
			require.NotNil(t, f.CoAP)
			require.Equal(t, tt.end, f.EndReason)
			require.Equal(t, client.Addr(), f.SrcAddr, "the client initiates")
			got := tr.Stats()
			require.EqualValues(t, tt.retrans, got.Retransmissions, "%+v", got)
			require.EqualValues(t, tt.retrans, f.CoAP.Retransmissions)
			if tt.withResp {
				require.Equal(t, tt.code, coapparse.Code(f.CoAP.ResponseCode).String())
			} else {
				require.Zero(t, f.CoAP.ResponseCode)
			}
		})
	}
}

// FuzzDatagrams: arbitrary datagrams in both directions never panic, and
// every datagram is in exactly one place: a flow's packets or one of the
// counters of those that join none.
func FuzzDatagrams(f *testing.F) {
	f.Add([]byte{0x40, 0x01, 0x00, 0x01, 0xb1, 'a'}, []byte{0x60, 0x45, 0x00, 0x01})
	f.Add([]byte{0x42, 0x01, 0x00, 0x02, 't', 'k'}, []byte{0x70, 0x00, 0x00, 0x02})
	f.Add([]byte{0x40, 0x00, 0x00, 0x03}, []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		out := &collect{}
		tr := New(Config{MaxExchanges: 64, MaxObservations: 16}, out)
		n := 0
		for i := 0; i < 8; i++ {
			p := a
			src, dst := client, server
			if i%2 == 1 {
				p, src, dst = b, server, client
			}
			tr.Datagram(&app.Datagram{Src: src, Dst: dst, Payload: p, Time: int64(i) * int64(time.Second)})
			n++
		}
		tr.FlushAll()
		require.LessOrEqual(t, len(out.flows), n)
		requireEveryDatagramCounted(t, tr.Stats(), out.flows)
	})
}

// TestLossyExchanges: what a lossy link makes of an exchange (copies,
// late ACKs, retransmitted responses) joins its flow while it is open and
// is a duplicate after; each case is a sequence libcoap produced through
// the lossy relay of the probe package's TestCoAPLossyLink or one it can.
func TestLossyExchanges(t *testing.T) {
	type dgram struct {
		fromClient bool
		b          []byte
	}
	tests := []struct {
		name       string
		dgrams     func(t *testing.T) []dgram
		packets    uint64 // of the one flow
		last       int    // index of the flow's last datagram
		retrans    uint32
		duplicates uint64
		end        flow.EndReason
	}{
		// Bug: the server's empty ACK of the retransmitted request (sent
		// because the first empty ACK and the separate response were
		// lost) ended the exchange, and the client's ACK of the response
		// became a duplicate.
		{"separate CON response: the server's ACK of a retransmitted request does not end it", func(t *testing.T) []dgram {
			req := msg(t, coapparse.Confirmable, coapparse.GET, 2, "b2", "/async")
			return []dgram{
				{true, req},
				{false, msg(t, coapparse.Acknowledgement, 0, 2, "", "")},                 // lost on the way to the client
				{false, msg(t, coapparse.Confirmable, coapparse.Content, 900, "b2", "")}, // lost too
				{true, req}, // retransmitted
				{false, msg(t, coapparse.Acknowledgement, 0, 2, "", "")},                 // ACK of the copy
				{false, msg(t, coapparse.Confirmable, coapparse.Content, 900, "b2", "")}, // retransmitted
				{true, msg(t, coapparse.Acknowledgement, 0, 900, "", "")},
			}
		}, 7, 6, 2, 0, flow.EndOfFlow},
		{"separate CON response retransmitted after the client's ACK: duplicates", func(t *testing.T) []dgram {
			resp := msg(t, coapparse.Confirmable, coapparse.Content, 901, "b3", "")
			ack := msg(t, coapparse.Acknowledgement, 0, 901, "", "")
			return []dgram{
				{true, msg(t, coapparse.Confirmable, coapparse.GET, 3, "b3", "/async")},
				{false, msg(t, coapparse.Acknowledgement, 0, 3, "", "")},
				{false, resp}, {true, ack}, // the ACK is lost after this point
				{false, resp}, {true, ack},
			}
		}, 4, 3, 0, 2, flow.EndOfFlow},
		{"piggybacked ACK lost: the retransmitted request and the second ACK are duplicates", func(t *testing.T) []dgram {
			req := msg(t, coapparse.Confirmable, coapparse.GET, 4, "c4", "/time")
			ack := msg(t, coapparse.Acknowledgement, coapparse.Content, 4, "c4", "")
			return []dgram{{true, req}, {false, ack}, {true, req}, {false, ack}}
		}, 2, 1, 0, 2, flow.EndOfFlow},
		{"request lost once: the copy joins", func(t *testing.T) []dgram {
			req := msg(t, coapparse.Confirmable, coapparse.PUT, 5, "d5", "/a")
			return []dgram{{true, req}, {true, req}, {false, msg(t, coapparse.Acknowledgement, coapparse.Changed, 5, "d5", "")}}
		}, 3, 2, 1, 0, flow.EndOfFlow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &collect{}
			tr := New(Config{}, out)
			ts := int64(1_800_000_000_000_000_000)
			at := func(i int) int64 { return ts + int64(i)*int64(2*time.Second) }
			for i, d := range tt.dgrams(t) {
				src, dst := client, server
				if !d.fromClient {
					src, dst = server, client
				}
				tr.Datagram(&app.Datagram{Src: src, Dst: dst, Payload: d.b, Time: at(i)})
			}
			tr.FlushAll()
			require.Len(t, out.flows, 1)
			f := out.flows[0]
			got := tr.Stats()
			require.Equal(t, tt.end, f.EndReason)
			require.Equal(t, tt.packets, f.Packets)
			require.Equal(t, at(tt.last), f.End.UnixNano())
			require.Equal(t, tt.retrans, f.CoAP.Retransmissions)
			require.Equal(t, tt.duplicates, got.Duplicates, "%+v", got)
			require.Zero(t, got.Unmatched, "%+v", got)
			requireEveryDatagramCounted(t, got, out.flows)
		})
	}
}

// requireEveryDatagramCounted checks that the datagrams given equal the
// packets of the flows plus those counted as joining none.
func requireEveryDatagramCounted(t *testing.T, st Stats, flows []flow.Record) {
	t.Helper()
	var packets uint64
	for _, f := range flows {
		packets += f.Packets
	}
	require.Equal(t, st.Datagrams, packets+st.Malformed+st.Duplicates+st.Unmatched+st.Ignored, "%d flows, %+v", len(flows), st)
}
