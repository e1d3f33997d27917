package tracker

import (
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/mqttparse"
)

// wantFlow is what a test expects of one flow.
type wantFlow struct {
	typ flow.ControlType
	end flow.EndReason
	an  flow.Anomaly
}

// TestAnomalyFixtures sends annotated bytes through assembler and tracker:
// each anomaly yields exactly one anomaly flow, or its flag on the flow
// the packet belongs to. Unless noConnect, the connection starts with a
// handshake and a 3.1.1 CONNECT/CONNACK of client "c" (flow 0, clean, not
// listed in want).
func TestAnomalyFixtures(t *testing.T) {
	const (
		eof = flow.EndOfFlow
		ano = flow.EndAnomaly
	)
	for _, tc := range []struct {
		name      string
		cfg       Config
		noConnect bool
		run       func(h *harness)
		want      []wantFlow
		check     func(t *testing.T, fs []flow.Record)
	}{
		{name: "QoS 3 PUBLISH", run: func(h *harness) {
			// 0x36: PUBLISH, QoS bits 11; topic "a/b", packet id 5, payload "x".
			h.send(c2s, pkt(0x36, str("a/b"), u16(5), []byte("x")))
		}, want: []wantFlow{{flow.Publish, ano, flow.AnomalyInvalidQoSLevel}}, check: func(t *testing.T, fs []flow.Record) {
			r := fs[1]
			require.Equal(t, uint8(3), r.QoS)
			require.Equal(t, uint16(5), r.PacketID)
			require.Equal(t, "a/b", r.Topic)
			require.Equal(t, "c", r.SrcClientID)
			require.Equal(t, uint64(1), r.Packets)
		}},
		{name: "reserved type 0", run: func(h *harness) {
			h.send(c2s, pkt(0x00)) // type 0, remaining length 0
		}, want: []wantFlow{{0, ano, flow.AnomalyUnassignedMsgType}}},
		{name: "reserved type 0 with a body", run: func(h *harness) {
			h.send(c2s, pkt(0x00, []byte{1, 2, 3}))
			h.send(c2s, pkt(0xc0)) // the stream stays in sync: PINGREQ
			h.send(s2c, pkt(0xd0))
		}, want: []wantFlow{{0, ano, flow.AnomalyUnassignedMsgType}, {flow.PingReq, eof, 0}}},
		{name: "AUTH before 5.0", run: func(h *harness) {
			h.send(c2s, pkt(0xf0))
		}, want: []wantFlow{{flow.Auth, ano, flow.AnomalyUnassignedMsgType}}},
		{name: "PUBACK without PUBLISH", run: func(h *harness) {
			h.send(s2c, ack(0x40, 9, 4, 0))
		}, want: []wantFlow{{flow.PubAck, ano, flow.AnomalyMissingPublish}}, check: func(t *testing.T, fs []flow.Record) {
			require.Equal(t, uint16(9), fs[1].PacketID)
			require.Equal(t, "c", fs[1].DstClientID, "the broker answered client c")
			require.Equal(t, flow.BrokerClientID, fs[1].SrcClientID)
		}},
		{name: "PUBACK for a QoS 2 PUBLISH", run: func(h *harness) {
			h.send(c2s, publish(4, 2, false, false, 3, "q/2", "x"))
			h.send(s2c, ack(0x40, 3, 4, 0)) // wrong acknowledgement
			h.send(s2c, ack(0x50, 3, 4, 0))
			h.send(c2s, ack(0x62, 3, 4, 0))
			h.send(s2c, ack(0x70, 3, 4, 0))
		}, want: []wantFlow{{flow.PubAck, ano, flow.AnomalyMissingPublish}, {flow.Publish, eof, 0}}},
		{name: "PUBREC, PUBREL, PUBCOMP without PUBLISH", run: func(h *harness) {
			h.send(s2c, ack(0x50, 4, 4, 0))
			h.send(c2s, ack(0x62, 4, 4, 0))
			h.send(s2c, ack(0x70, 4, 4, 0))
		}, want: []wantFlow{{flow.PubRec, ano, flow.AnomalyMissingPublish}, {flow.PubRel, ano, flow.AnomalyMissingPublish},
			{flow.PubComp, ano, flow.AnomalyMissingPublish}}},
		{name: "SUBACK without SUBSCRIBE", run: func(h *harness) {
			h.send(s2c, suback(4, 6, 0))
		}, want: []wantFlow{{flow.SubAck, ano, flow.AnomalyMissingSubscribe}}},
		{name: "UNSUBACK without UNSUBSCRIBE", run: func(h *harness) {
			h.send(s2c, pkt(0xb0, u16(6)))
		}, want: []wantFlow{{flow.UnsubAck, ano, flow.AnomalyMissingUnsubscribe}}},
		{name: "CONNACK without CONNECT", run: func(h *harness) {
			h.send(s2c, connack(4, 0))
		}, want: []wantFlow{{flow.ConnAck, ano, flow.AnomalyMissingConnect}}},
		{name: "PINGRESP without PINGREQ", run: func(h *harness) {
			h.send(s2c, pkt(0xd0))
		}, want: []wantFlow{{flow.PingResp, ano, flow.AnomalyMissingPingreq}}},
		{name: "second CONNECT", run: func(h *harness) {
			h.send(c2s, connect(4, "other", ""))
			h.send(c2s, publish(4, 0, false, false, 0, "a", "x"))
		}, want: []wantFlow{{flow.Connect, ano, flow.AnomalyDoubleConnect}, {flow.Publish, eof, 0}}, check: func(t *testing.T, fs []flow.Record) {
			require.Equal(t, "c", fs[1].SrcClientID, "the connection keeps its first CONNECT's client")
			require.Equal(t, "c", fs[2].SrcClientID)
		}},
		{name: "message before CONNECT", noConnect: true, run: func(h *harness) {
			h.handshake()
			h.send(c2s, publish(4, 0, false, false, 0, "early", "x"))
			h.send(c2s, connect(4, "c", ""))
			h.send(s2c, connack(4, 0))
			h.send(c2s, publish(4, 0, false, false, 0, "late", "x"))
		}, want: []wantFlow{{flow.Publish, eof, flow.AnomalyUnintroducedMessage}, {flow.Connect, eof, 0}, {flow.Publish, eof, 0}}},
		{name: "response before CONNECT", noConnect: true, run: func(h *harness) {
			h.handshake()
			h.send(s2c, ack(0x40, 1, 4, 0))
		}, want: []wantFlow{{flow.PubAck, ano, flow.AnomalyUnintroducedMessage | flow.AnomalyMissingPublish}}},
		{name: "CONNECT whose property length overruns the packet", noConnect: true, run: func(h *harness) {
			h.handshake()
			// MQTT 5.0 CONNECT: name "MQTT", level 5, flags 0x02, keep
			// alive 60, property length 100 with 0 bytes left.
			h.send(c2s, pkt(0x10, str("MQTT"), []byte{5, 0x02, 0, 60}, vbi(100)))
			h.send(c2s, publish(4, 0, false, false, 0, "a", "x"))
		}, want: []wantFlow{{flow.Connect, ano, flow.AnomalyMalformedTraffic}, {flow.Publish, eof, 0}}, check: func(t *testing.T, fs []flow.Record) {
			require.Equal(t, flow.IdentityNone, fs[0].IdentitySource)
		}},
		{name: "PUBLISH whose topic overruns the packet", run: func(h *harness) {
			h.send(c2s, pkt(0x32, []byte{0, 50, 'a'}))
			h.send(c2s, publish(4, 0, false, false, 0, "ok", "x"))
		}, want: []wantFlow{{flow.Publish, ano, flow.AnomalyMalformedTraffic}, {flow.Publish, eof, 0}}, check: func(t *testing.T, fs []flow.Record) {
			require.Equal(t, uint8(1), fs[1].QoS)
		}},
		{name: "packet over the maximum size", cfg: Config{MaxPacketSize: 100}, run: func(h *harness) {
			h.send(c2s, publish(4, 1, false, true, 8, "big", strings.Repeat("x", 200)))
			h.send(c2s, publish(4, 0, false, false, 0, "ok", "x"))
		}, want: []wantFlow{{flow.Publish, ano, flow.AnomalyPacketTooLarge}, {flow.Publish, eof, 0}}, check: func(t *testing.T, fs []flow.Record) {
			require.Equal(t, uint64(len(publish(4, 1, false, true, 8, "big", strings.Repeat("x", 200)))), fs[1].Octets)
			require.Equal(t, uint8(1), fs[1].QoS)
			require.True(t, fs[1].Retain)
		}},
		{name: "packet identifier 0", run: func(h *harness) {
			h.send(c2s, publish(4, 1, false, false, 0, "a", "x"))
			h.send(s2c, pkt(0x40, u16(0)))
		}, want: []wantFlow{{flow.Publish, eof, flow.AnomalyMissingMsgID}}},
		{name: "invalid UTF-8 topic", run: func(h *harness) {
			h.send(c2s, publish(4, 0, false, false, 0, "a\xff", "x"))
		}, want: []wantFlow{{flow.Publish, eof, flow.AnomalyInvalidUTF8}}},
		{name: "wildcard topic, DUP with QoS 0", run: func(h *harness) {
			h.send(c2s, publish(4, 0, true, false, 0, "a/#", "x"))
		}, want: []wantFlow{{flow.Publish, eof, flow.AnomalyInvalidTopic | flow.AnomalyDupQoS0}}},
		{name: "repeated single property", noConnect: true, run: func(h *harness) {
			h.handshake()
			h.send(c2s, connect(5, "c", ""))
			h.send(s2c, connack(5, 0))
			h.send(c2s, publish(5, 0, false, false, 0, "a", "x", []byte{0x01, 0}, []byte{0x01, 1}))
		}, want: []wantFlow{{flow.Connect, eof, 0}, {flow.Publish, eof, flow.AnomalyDuplicateProperty}}},
		{name: "SUBSCRIBE header flags", run: func(h *harness) {
			b := subscribe(4, 2, "a/#")
			b[0] = 0x80 // reserved flags must be 0010
			h.send(c2s, b)
			h.send(s2c, suback(4, 2, 0))
		}, want: []wantFlow{{flow.Subscribe, eof, flow.AnomalyInvalidHeaderFlags}}},
		{name: "anomaly in the response joins the flow", run: func(h *harness) {
			h.send(c2s, publish(4, 1, false, false, 2, "a", "x"))
			h.send(s2c, pkt(0x40, u16(2), []byte{0})) // 3.1.1 PUBACK longer than 2
		}, want: []wantFlow{{flow.Publish, eof, flow.AnomalyTrailingBytes}}},
		{name: "too many transactions", cfg: Config{MaxTransactions: 1}, run: func(h *harness) {
			h.send(c2s, publish(4, 1, false, false, 1, "a", "x"))
			h.send(c2s, publish(4, 1, false, false, 2, "a", "y"))
			h.send(s2c, ack(0x40, 2, 4, 0))
		}, want: []wantFlow{{flow.Publish, flow.EndLackOfResources, 0}, {flow.Publish, eof, flow.AnomalyTooManyTransactions}}},
		{name: "late answer after an idle timeout is excused", cfg: Config{IdleTimeout: 5 * time.Second}, run: func(h *harness) {
			h.send(c2s, publish(4, 1, false, false, 1, "a", "x"))
			h.now = h.now.Add(6 * time.Second)
			h.tr.Advance(h.now)
			h.send(s2c, ack(0x40, 1, 4, 0))
			h.now = h.now.Add(6 * time.Second)
			h.send(s2c, ack(0x40, 1, 4, 0)) // a second one, past the window
		}, want: []wantFlow{{flow.Publish, flow.EndIdleTimeout, 0}, {flow.PubAck, ano, flow.AnomalyMissingPublish}}},
		{name: "midstream: answers to unseen requests excused for an idle timeout", noConnect: true, cfg: Config{IdleTimeout: 5 * time.Second}, run: func(h *harness) {
			// No handshake: picked up midstream; each packet in a segment
			// of its own proves the boundaries (docs/midstream.md).
			h.send(c2s, publish(4, 0, false, false, 0, "m", "1"))
			h.send(c2s, publish(4, 0, false, false, 0, "m", "2"))
			h.send(s2c, ack(0x40, 7, 0, 0))
			h.send(s2c, ack(0x40, 8, 0, 0))
			h.send(s2c, pkt(0xd0))
			h.now = h.now.Add(6 * time.Second)
			h.send(s2c, ack(0x40, 9, 0, 0))
		}, want: []wantFlow{{flow.Publish, eof, 0}, {flow.Publish, eof, 0}, {flow.PubAck, ano, flow.AnomalyMissingPublish}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			if !tc.noConnect {
				h.handshake()
				h.send(c2s, connect(4, "c", ""))
				h.send(s2c, connack(4, 0))
			}
			tc.run(h)
			h.tr.FlushAll()
			fs := h.flows
			if !tc.noConnect {
				require.NotEmpty(t, fs)
				require.Equal(t, flow.Connect, fs[0].ControlType)
				require.Zero(t, fs[0].Anomalies)
				fs = fs[1:]
			}
			require.Len(t, fs, len(tc.want), "flows: %v", flowSummary(fs))
			var count [64]uint64
			for i, w := range tc.want {
				got := wantFlow{fs[i].ControlType, fs[i].EndReason, fs[i].Anomalies}
				require.Equal(t, w, got, "flow %d: %s %s %s", i, got.typ, got.end, got.an)
				for a := uint64(w.an); a != 0; a &= a - 1 {
					count[bits.TrailingZeros64(a)]++
				}
				if w.end == ano {
					require.Equal(t, uint64(1), fs[i].Packets)
					require.Equal(t, fs[i].Start, fs[i].End)
				}
			}
			// Counted per packet: at least once per flow that has it, never
			// one no flow has.
			st := h.tr.Stats()
			for bit := range count {
				require.Equal(t, count[bit] == 0, st.Anomalies[bit] == 0, "bit %d", bit)
				require.GreaterOrEqual(t, st.Anomalies[bit], count[bit], "bit %d", bit)
			}
			if tc.check != nil {
				tc.check(t, h.flows)
			}
		})
	}
}

func flowSummary(fs []flow.Record) []string {
	var out []string
	for _, r := range fs {
		out = append(out, r.ControlType.String()+"/"+r.EndReason.String()+"/"+r.Anomalies.String())
	}
	return out
}

// TestViolationAnomalies: every mqttparse violation bit has its anomaly.
func TestViolationAnomalies(t *testing.T) {
	n := len(strings.Split(mqttparse.Violations(^uint32(0)).String(), ","))
	seen := flow.Anomaly(0)
	for i := range n {
		a := ViolationAnomalies(mqttparse.Violations(1)<<i, mqttparse.Subscribe)
		require.Equal(t, 1, bits.OnesCount64(uint64(a)), "violation %s", mqttparse.Violations(1)<<i)
		require.Zero(t, seen&a, "violation %s: anomaly used twice", mqttparse.Violations(1)<<i)
		seen |= a
	}
	require.Equal(t, flow.AnomalyInvalidQoSLevel, ViolationAnomalies(mqttparse.ViolationHeaderFlags, mqttparse.Publish))
	require.Equal(t, flow.AnomalyMissingMsgID, ViolationAnomalies(mqttparse.ViolationPacketIDZero, mqttparse.Publish))
	require.Equal(t, flow.AnomalyUnassignedMsgType, ViolationAnomalies(mqttparse.ViolationReservedType, mqttparse.Auth))
}
