package coaptrack

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/app"
)

// caseOpt is the case-key option of the tests: the first experimental
// number (RFC 7252 §12.2), elective.
const caseOpt coapparse.OptionNumber = 65000

// optMsg is a message with options, each {number, value}.
func optMsg(t *testing.T, typ coapparse.Type, code coapparse.Code, mid uint16, token string, opts ...any) []byte {
	t.Helper()
	var m coapparse.Message
	m.Reset()
	m.Type, m.Code, m.MessageID, m.Token = typ, code, mid, []byte(token)
	for i := 0; i < len(opts); i += 2 {
		n := opts[i].(coapparse.OptionNumber)
		switch v := opts[i+1].(type) {
		case string:
			require.NoError(t, m.AddOption(n, []byte(v)))
		case []byte:
			require.NoError(t, m.AddOption(n, v))
		case uint32:
			require.NoError(t, m.AddUint(n, v))
		}
	}
	b, err := coapparse.AppendMessage(nil, &m)
	require.NoError(t, err)
	return b
}

// TestCaseKey: with CaseOption set, each flow's CorrelationData is the
// option's value in the exchange's request (a notification: in the
// registration), with source CorrelationCoAPOption; without it, or
// without the option in the request, flows have none.
func TestCaseKey(t *testing.T) {
	type dgram struct {
		fromClient bool
		b          []byte
	}
	con, non, ack := coapparse.Confirmable, coapparse.NonConfirmable, coapparse.Acknowledgement
	path := coapparse.URIPath
	tests := []struct {
		name   string
		option coapparse.OptionNumber
		dgrams func(t *testing.T) []dgram
		want   []string // CorrelationData of each flow, in emit order ("" none)
		taken  uint64   // Stats.CaseKeys
		long   uint64   // Stats.CaseKeysTooLong
	}{
		{"not configured: no key", 0, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, coapparse.GET, 1, "a", path, "s", caseOpt, "case-1")}, {false, optMsg(t, ack, coapparse.Content, 1, "a")}}
		}, []string{""}, 0, 0},
		{"piggybacked", caseOpt, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, coapparse.GET, 1, "a", path, "s", caseOpt, "case-1")}, {false, optMsg(t, ack, coapparse.Content, 1, "a")}}
		}, []string{"case-1"}, 1, 0},
		{"separate response", caseOpt, func(t *testing.T) []dgram {
			return []dgram{
				{true, optMsg(t, con, coapparse.POST, 2, "b", caseOpt, "case-2")},
				{false, optMsg(t, ack, 0, 2, "")},
				{false, optMsg(t, con, coapparse.Created, 900, "b")},
				{true, optMsg(t, ack, 0, 900, "")},
			}
		}, []string{"case-2"}, 1, 0},
		{"NON, binary value", caseOpt, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, non, coapparse.PUT, 3, "c", caseOpt, []byte{0x00, 0xff, 0x10})}, {false, optMsg(t, non, coapparse.Changed, 901, "c")}}
		}, []string{"\x00\xff\x10"}, 1, 0},
		{"request without the option", caseOpt, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, coapparse.GET, 4, "d", path, "s")}, {false, optMsg(t, ack, coapparse.Content, 4, "d", caseOpt, "from-response")}}
		}, []string{""}, 0, 0},
		{"empty value", caseOpt, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, coapparse.GET, 5, "e", caseOpt, "")}, {false, optMsg(t, ack, coapparse.Content, 5, "e")}}
		}, []string{""}, 0, 0},
		{"repeated option: the first value", caseOpt, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, coapparse.GET, 6, "f", caseOpt, "first", caseOpt, "second")}, {false, optMsg(t, ack, coapparse.Content, 6, "f")}}
		}, []string{"first"}, 1, 0},
		{"a registered option: Uri-Query", coapparse.URIQuery, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, coapparse.GET, 7, "g", path, "s", coapparse.URIQuery, "case=7", coapparse.URIQuery, "x=1")}, {false, optMsg(t, ack, coapparse.Content, 7, "g")}}
		}, []string{"case=7"}, 1, 0},
		{"another option than configured", caseOpt + 2, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, coapparse.GET, 8, "h", caseOpt, "case-8")}, {false, optMsg(t, ack, coapparse.Content, 8, "h")}}
		}, []string{""}, 0, 0},
		{"longest key taken, longer refused", caseOpt, func(t *testing.T) []dgram {
			return []dgram{
				{true, optMsg(t, con, coapparse.GET, 12, "i", caseOpt, strings.Repeat("k", 128))}, {false, optMsg(t, ack, coapparse.Content, 12, "i")},
				{true, optMsg(t, con, coapparse.GET, 13, "j", caseOpt, strings.Repeat("k", 129))}, {false, optMsg(t, ack, coapparse.Content, 13, "j")},
			}
		}, []string{strings.Repeat("k", 128), ""}, 1, 1},
		{"ping has none", caseOpt, func(t *testing.T) []dgram {
			return []dgram{{true, optMsg(t, con, 0, 9, "")}, {false, optMsg(t, coapparse.Reset, 0, 9, "")}}
		}, []string{""}, 0, 0},
		{"Observe: notifications carry the registration's key", caseOpt, func(t *testing.T) []dgram {
			return []dgram{
				{true, optMsg(t, con, coapparse.GET, 10, "o", coapparse.Observe, uint32(0), path, "time", caseOpt, "case-obs")},
				{false, optMsg(t, ack, coapparse.Content, 10, "o", coapparse.Observe, uint32(1))},
				{false, optMsg(t, non, coapparse.Content, 902, "o", coapparse.Observe, uint32(2))},
				{false, optMsg(t, con, coapparse.Content, 903, "o", coapparse.Observe, uint32(3), caseOpt, "not-this")},
				{true, optMsg(t, ack, 0, 903, "")},
				// A new request on another token, with another key.
				{true, optMsg(t, con, coapparse.GET, 11, "p", caseOpt, "case-other")},
				{false, optMsg(t, ack, coapparse.Content, 11, "p")},
			}
		}, []string{"case-obs", "case-obs", "case-obs", "case-other"}, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &collect{}
			tr := New(Config{IdleTimeout: time.Second, CaseOption: tt.option}, out)
			ts := int64(1_800_000_000_000_000_000)
			for i, d := range tt.dgrams(t) {
				src, dst := client, server
				if !d.fromClient {
					src, dst = server, client
				}
				tr.Datagram(&app.Datagram{Src: src, Dst: dst, Payload: d.b, Time: ts + int64(i)*int64(time.Millisecond)})
			}
			tr.AdvanceAt(ts + int64(5*time.Second))
			tr.FlushAll()
			var got []string
			for _, f := range out.flows {
				got = append(got, string(f.CorrelationData))
				if len(f.CorrelationData) > 0 {
					require.Equal(t, flow.CorrelationCoAPOption, f.CorrelationSource)
				} else {
					require.Equal(t, flow.CorrelationNone, f.CorrelationSource)
				}
			}
			require.Equal(t, tt.want, got)
			st := tr.Stats()
			require.Equal(t, tt.taken, st.CaseKeys, "requests whose key was taken")
			require.Equal(t, tt.long, st.CaseKeysTooLong)
		})
	}
}

// TestCaseKeyOutlivesDatagram: the key is a copy, not a view of the
// datagram the request came in.
func TestCaseKeyOutlivesDatagram(t *testing.T) {
	out := &collect{}
	tr := New(Config{CaseOption: caseOpt}, out)
	req := optMsg(t, coapparse.Confirmable, coapparse.GET, 1, "a", caseOpt, "case-1")
	tr.Datagram(&app.Datagram{Src: client, Dst: server, Payload: req, Time: 1})
	for i := range req {
		req[i] = 'x'
	}
	tr.Datagram(&app.Datagram{Src: server, Dst: client, Payload: optMsg(t, coapparse.Acknowledgement, coapparse.Content, 1, "a"), Time: 2})
	require.Len(t, out.flows, 1)
	require.Equal(t, "case-1", string(out.flows[0].CorrelationData))
}

// FuzzCaseKey: arbitrary datagrams both ways with a case option never
// panic; every flow's key is at most MaxCaseKey bytes, with the CoAP
// option source exactly when there is one.
func FuzzCaseKey(f *testing.F) {
	build := func(typ coapparse.Type, code coapparse.Code, mid uint16, token string, obs bool, key string) []byte {
		var m coapparse.Message
		m.Reset()
		m.Type, m.Code, m.MessageID, m.Token = typ, code, mid, []byte(token)
		if obs {
			_ = m.AddUint(coapparse.Observe, 0)
		}
		if key != "" {
			_ = m.AddOption(caseOpt, []byte(key))
		}
		b, _ := coapparse.AppendMessage(nil, &m)
		return b
	}
	f.Add(build(coapparse.Confirmable, coapparse.GET, 1, "t", false, "k1"), build(coapparse.Acknowledgement, coapparse.Content, 1, "t", false, ""))
	f.Add(build(coapparse.Confirmable, coapparse.GET, 2, "tk", true, "toolong"), build(coapparse.NonConfirmable, coapparse.Content, 9, "tk", true, ""))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		out := &collect{}
		tr := New(Config{MaxExchanges: 64, MaxObservations: 16, CaseOption: caseOpt, MaxCaseKey: 4}, out)
		for i := 0; i < 8; i++ {
			p, src, dst := a, client, server
			if i%2 == 1 {
				p, src, dst = b, server, client
			}
			tr.Datagram(&app.Datagram{Src: src, Dst: dst, Payload: p, Time: int64(i) * int64(time.Second)})
		}
		tr.FlushAll()
		for _, fl := range out.flows {
			if len(fl.CorrelationData) > 4 {
				t.Fatalf("case key of %d bytes", len(fl.CorrelationData))
			}
			if (len(fl.CorrelationData) > 0) != (fl.CorrelationSource == flow.CorrelationCoAPOption) {
				t.Fatalf("key %q with source %v", fl.CorrelationData, fl.CorrelationSource)
			}
		}
	})
}
