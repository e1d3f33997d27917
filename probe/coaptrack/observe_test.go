package coaptrack

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
)

// obsMsg is a message with an Observe option (and a path when given).
func obsMsg(t *testing.T, typ coapparse.Type, code coapparse.Code, mid uint16, token string, observe uint32, path string) []byte {
	t.Helper()
	if path == "" {
		return optMsg(t, typ, code, mid, token, coapparse.Observe, observe)
	}
	return optMsg(t, typ, code, mid, token, coapparse.Observe, observe, coapparse.URIPath, path)
}

// TestObservation: every notification of a registration is a flow of its
// own, server → client, with the registration's token, method and path
// and its Observe sequence; the client's RST or a deregistration ends the
// observation, and later notifications join nothing (counted unmatched).
func TestObservation(t *testing.T) {
	register := func(t *testing.T) []dgram {
		return []dgram{
			{true, obsMsg(t, coapparse.Confirmable, coapparse.GET, 1, "ob", 0, "temp")},
			{false, obsMsg(t, coapparse.Acknowledgement, coapparse.Content, 1, "ob", 1, "")},
		}
	}
	notify := func(t *testing.T, typ coapparse.Type, mid uint16, seq uint32) dgram {
		return dgram{false, obsMsg(t, typ, coapparse.Content, mid, "ob", seq, "")}
	}
	tests := []struct {
		name      string
		dgrams    func(t *testing.T) []dgram
		observes  []uint32 // the notification flows' Observe, in order
		ends      []flow.EndReason
		unmatched uint64
	}{
		{"NON and CON notifications", func(t *testing.T) []dgram {
			return append(register(t),
				notify(t, coapparse.NonConfirmable, 100, 2),
				notify(t, coapparse.Confirmable, 101, 3),
				dgram{true, msg(t, coapparse.Acknowledgement, 0, 101, "", "")})
		}, []uint32{2, 3}, []flow.EndReason{flow.EndOfFlow, flow.EndOfFlow}, 0},
		{"RST to a notification cancels the observation", func(t *testing.T) []dgram {
			return append(register(t),
				notify(t, coapparse.Confirmable, 100, 2),
				dgram{true, msg(t, coapparse.Reset, 0, 100, "", "")},
				notify(t, coapparse.NonConfirmable, 101, 3)) // the server had not heard yet
		}, []uint32{2}, []flow.EndReason{flow.EndOfFlow}, 1},
		{"deregistration (GET with Observe 1) ends it", func(t *testing.T) []dgram {
			return append(register(t),
				notify(t, coapparse.NonConfirmable, 100, 2),
				dgram{true, obsMsg(t, coapparse.Confirmable, coapparse.GET, 2, "ob", 1, "temp")},
				dgram{false, msg(t, coapparse.Acknowledgement, coapparse.Content, 2, "ob", "")},
				notify(t, coapparse.NonConfirmable, 101, 3))
		}, []uint32{2}, []flow.EndReason{flow.EndOfFlow}, 1},
		{"an unanswered CON notification ends idle", func(t *testing.T) []dgram {
			return append(register(t), notify(t, coapparse.Confirmable, 100, 2))
		}, []uint32{2}, []flow.EndReason{flow.EndIdleTimeout}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, tr := replay(tt.dgrams(t))
			st := tr.Stats()
			var observes []uint32
			var ends []flow.EndReason
			var requests int
			for _, f := range out.flows {
				if f.SrcAddr == client.Addr() {
					requests++
					continue
				}
				require.Equal(t, "ob", string(f.CoAP.Token))
				require.Equal(t, "/temp", f.CoAP.URIPath, "the registration's path")
				require.Equal(t, uint8(coapparse.GET), f.CoAP.Method)
				require.Equal(t, server.Port(), f.SrcPort, "the server initiates a notification")
				require.True(t, f.CoAP.HasObserve)
				observes = append(observes, f.CoAP.Observe)
				ends = append(ends, f.EndReason)
			}
			require.Equal(t, tt.observes, observes)
			require.Equal(t, tt.ends, ends)
			require.EqualValues(t, len(tt.observes), st.Flows[KindNotification])
			require.Equal(t, requests, int(st.Flows[KindRequest]))
			require.Equal(t, tt.unmatched, st.Unmatched, "%+v", st)
			require.Zero(t, st.Observations, "FlushAll forgets them")
			requireEveryDatagramCounted(t, st, out.flows)
		})
	}
}
