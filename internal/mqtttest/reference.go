package mqtttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mission-ids/mission/flow"
)

// Message is one MQTT control packet as tshark dissected it.
type Message struct {
	Frame    int // capture frame number (1-based) where tshark completed it
	Time     time.Time
	Src, Dst netip.AddrPort
	Type     int
	Len      int // remaining length
	fields   map[string][]string
	propIDs  []int
	strProps []string // values of string-typed properties, in wire order
	userKeys []string
	userVals []string
}

func (m *Message) get(f string) string {
	if v := m.fields[f]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m *Message) num(f string) int {
	n, _ := strconv.Atoi(m.get(f))
	return n
}

func (m *Message) flag(f string) bool { return m.get(f) == "true" || m.get(f) == "1" }

// stringProp returns the value of string-typed property id (tshark shows
// Response Topic, Correlation Data, Assigned Client Identifier, … in one
// field, mqtt.prop_string, in wire order).
func (m *Message) stringProp(id int) (string, bool) {
	i := 0
	for _, p := range m.propIDs {
		switch p {
		case 0x08, 0x09, 0x12, 0x15, 0x16, 0x1a, 0x1c, 0x1f:
			if p == id {
				if i < len(m.strProps) {
					return m.strProps[i], true
				}
				return "", false
			}
			i++
		}
	}
	return "", false
}

func (m *Message) userProp(key string) (string, bool) {
	for i, k := range m.userKeys {
		if k == key && i < len(m.userVals) {
			return m.userVals[i], true
		}
	}
	return "", false
}

// TsharkMessages dissects file with tshark, decoding TCP port `port` as
// MQTT, and returns every MQTT message in capture order.
func TsharkMessages(t testing.TB, file string, port int) []Message {
	t.Helper()
	RequireTools(t, "tshark")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", "-r", file, "-d", fmt.Sprintf("tcp.port==%d,mqtt", port),
		"-o", "tcp.desegment_tcp_streams:TRUE", "-T", "ek", "-J", "frame ip ipv6 tcp mqtt")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", file, err, stderr.String())
	}
	var msgs []Message
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	for sc.Scan() {
		var line struct {
			Layers map[string]json.RawMessage `json:"layers"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("tshark EK line: %v", err)
		}
		raw, ok := line.Layers["mqtt"]
		if !ok {
			continue
		}
		frame := flat(t, line.Layers["frame"])
		tcp := flat(t, line.Layers["tcp"])
		var src, dst netip.Addr
		if l, ok := line.Layers["ip"]; ok {
			ip := flat(t, l)
			src, dst = netip.MustParseAddr(first(ip["ip_ip_src"])), netip.MustParseAddr(first(ip["ip_ip_dst"]))
		} else {
			ip := flat(t, line.Layers["ipv6"])
			src, dst = netip.MustParseAddr(first(ip["ipv6_ipv6_src"])), netip.MustParseAddr(first(ip["ipv6_ipv6_dst"]))
		}
		sp, _ := strconv.Atoi(first(tcp["tcp_tcp_srcport"]))
		dp, _ := strconv.Atoi(first(tcp["tcp_tcp_dstport"]))
		num, _ := strconv.Atoi(first(frame["frame_frame_number"]))
		ts := parseEpoch(t, first(frame["frame_frame_time_epoch"]))
		var list []json.RawMessage
		if raw[0] == '[' {
			if err := json.Unmarshal(raw, &list); err != nil {
				t.Fatal(err)
			}
		} else {
			list = []json.RawMessage{raw}
		}
		for _, r := range list {
			f := flat(t, r)
			m := Message{Frame: num, Time: ts, Src: netip.AddrPortFrom(src, uint16(sp)), Dst: netip.AddrPortFrom(dst, uint16(dp)),
				fields: map[string][]string{}}
			for k, v := range f {
				m.fields[strings.TrimPrefix(k, "mqtt_mqtt_")] = v
			}
			m.Type = m.num("msgtype")
			m.Len = m.num("len")
			for _, id := range m.fields["property_id"] {
				n, _ := strconv.ParseInt(strings.TrimPrefix(id, "0x"), 16, 32)
				m.propIDs = append(m.propIDs, int(n))
			}
			m.strProps = m.fields["prop_string"]
			m.userKeys = m.fields["prop_key"]
			m.userVals = m.fields["prop_value"]
			msgs = append(msgs, m)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func flat(t testing.TB, raw json.RawMessage) map[string][]string {
	var m map[string]any
	if len(raw) == 0 {
		return map[string][]string{}
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("tshark EK layer: %v: %s", err, raw)
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				out[k] = append(out[k], fmt.Sprint(e))
			}
		case nil:
			out[k] = nil
		default:
			out[k] = []string{fmt.Sprint(v)}
		}
	}
	return out
}

func first(v []string) string {
	if len(v) > 0 {
		return v[0]
	}
	return ""
}

func parseEpoch(t testing.TB, s string) time.Time {
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		t.Fatalf("frame time %q: %v", s, err)
	}
	frac = (frac + "000000000")[:9]
	ns, _ := strconv.ParseInt(frac, 10, 64)
	return time.Unix(n, ns)
}

// ReferenceFlows groups tshark's MQTT messages into flows by the rules of
// README.md ("What a flow is"), written here independently of the
// probe's tracker: port is the broker's port; every transaction still
// open at the end of the capture ends with flowEndReason "forced end".
// Stats counts what did not become part of a flow.
func ReferenceFlows(msgs []Message, port uint16) ([]flow.Record, RefStats) {
	type conn struct {
		client, broker netip.AddrPort
		version        int
		clientID       string
		username       string
		aliases        [2]map[int]string
	}
	type key struct {
		client, broker netip.AddrPort
		fromClient     bool
		kind           int // initiating type
		pid            int
	}
	type open struct {
		rec *flow.Record
		seq int
	}
	var (
		conns = map[[2]netip.AddrPort]*conn{}
		txs   = map[key]*open{}
		out   []flow.Record
		st    RefStats
		seq   int
	)
	getConn := func(m *Message) (*conn, bool) {
		fromClient := m.Dst.Port() == port
		c, b := m.Src, m.Dst
		if !fromClient {
			c, b = m.Dst, m.Src
		}
		k := [2]netip.AddrPort{c, b}
		cs := conns[k]
		if cs == nil {
			cs = &conn{client: c, broker: b}
			conns[k] = cs
		}
		return cs, fromClient
	}
	newRec := func(cs *conn, m *Message, fromClient bool) *flow.Record {
		r := &flow.Record{
			SrcAddr: m.Src.Addr(), SrcPort: m.Src.Port(), DstAddr: m.Dst.Addr(), DstPort: m.Dst.Port(),
			Protocol: 6, Start: m.Time, End: m.Time, Packets: 1, Octets: octets(m.Len),
			ControlType: flow.ControlType(m.Type), ProtocolVersion: uint8(cs.version), Username: cs.username,
		}
		if fromClient {
			r.SrcClientID, r.DstClientID = cs.clientID, flow.BrokerClientID
		} else {
			r.SrcClientID, r.DstClientID = flow.BrokerClientID, cs.clientID
		}
		return r
	}
	attach := func(o *open, m *Message) {
		o.rec.Packets++
		o.rec.Octets += octets(m.Len)
		if m.Time.After(o.rec.End) {
			o.rec.End = m.Time
		}
	}
	finish := func(k key, reason flow.EndReason) {
		o := txs[k]
		delete(txs, k)
		o.rec.EndReason = reason
		out = append(out, *o.rec)
	}
	begin := func(k key, r *flow.Record) {
		if _, ok := txs[k]; ok {
			st.Superseded++
			finish(k, flow.EndForced)
		}
		seq++
		txs[k] = &open{rec: r, seq: seq}
	}
	for i := range msgs {
		m := &msgs[i]
		cs, fromClient := getConn(m)
		dir := 0
		if !fromClient {
			dir = 1
		}
		reqKey := func(kind, pid int) key { return key{cs.client, cs.broker, fromClient, kind, pid} }
		respKey := func(kind, pid int) key { return key{cs.client, cs.broker, !fromClient, kind, pid} }
		v5 := cs.version == 5
		pid := m.num("msgid")
		switch m.Type {
		case 1: // CONNECT
			cs.version = m.num("ver")
			cs.clientID = m.get("clientid")
			cs.username = m.get("username")
			cs.aliases = [2]map[int]string{}
			begin(reqKey(1, 0), newRec(cs, m, fromClient))
		case 2: // CONNACK
			k := respKey(1, 0)
			o := txs[k]
			if o == nil {
				st.Unmatched[m.Type]++
				continue
			}
			if id, ok := m.stringProp(0x12); ok && cs.clientID == "" {
				cs.clientID = id
				o.rec.SrcClientID = id
			}
			attach(o, m)
			if v5 {
				o.rec.ReasonCode = uint8(m.num("connack_reason_code"))
			} else {
				o.rec.ReasonCode = uint8(m.num("conack_val"))
			}
			o.rec.HasReasonCode = true
			finish(k, flow.EndOfFlow)
		case 3: // PUBLISH
			r := newRec(cs, m, fromClient)
			qos := m.num("qos")
			r.QoS = uint8(qos)
			r.Retain = m.flag("retain")
			r.Dup = m.flag("dupflag")
			topic := m.get("topic")
			if v5 {
				if a := m.get("property.topic_alias"); a != "" {
					n, _ := strconv.Atoi(a)
					if cs.aliases[dir] == nil {
						cs.aliases[dir] = map[int]string{}
					}
					if topic != "" {
						cs.aliases[dir][n] = topic
					} else {
						topic = cs.aliases[dir][n]
					}
				}
			}
			r.Topic = topic
			body := m.Len - 2 - m.num("topic_len")
			if qos > 0 {
				body -= 2
			}
			if v5 {
				pl := m.num("property_len")
				body -= pl + varintLen(pl)
				if rt, ok := m.stringProp(0x08); ok {
					r.ResponseTopic = rt
				}
				if cd, ok := m.stringProp(0x09); ok {
					r.CorrelationData, r.CorrelationSource = []byte(cd), flow.CorrelationData
				} else if tp, ok := m.userProp("traceparent"); ok && len(tp) >= 55 && tp[2] == '-' && tp[35] == '-' {
					if _, err := hex.DecodeString(tp[3:35]); err == nil && strings.ToLower(tp[3:35]) == tp[3:35] {
						r.CorrelationData, r.CorrelationSource = []byte(tp[3:35]), flow.CorrelationTraceparent
					}
				}
			}
			r.PayloadLength = uint32(body)
			if qos == 0 {
				r.EndReason = flow.EndOfFlow
				out = append(out, *r)
				continue
			}
			r.PacketID = uint16(pid)
			k := reqKey(3, pid)
			if o := txs[k]; o != nil && r.Dup {
				attach(o, m)
				o.rec.Dup = true
				continue
			}
			begin(k, r)
		case 4, 5, 7: // PUBACK, PUBREC, PUBCOMP
			k := respKey(3, pid)
			o := txs[k]
			if o == nil || (m.Type == 4) != (o.rec.QoS == 1) {
				st.Unmatched[m.Type]++
				continue
			}
			attach(o, m)
			rc := 0
			if v5 {
				rc = m.num(map[int]string{4: "puback", 5: "pubrec", 7: "pubcomp"}[m.Type] + "_reason_code")
			}
			if !o.rec.HasReasonCode || o.rec.ReasonCode < 0x80 {
				o.rec.ReasonCode, o.rec.HasReasonCode = uint8(rc), true
			}
			if m.Type != 5 || rc >= 0x80 {
				finish(k, flow.EndOfFlow)
			}
		case 6: // PUBREL travels with the initiator
			k := reqKey(3, pid)
			o := txs[k]
			if o == nil || o.rec.QoS != 2 {
				st.Unmatched[m.Type]++
				continue
			}
			attach(o, m)
		case 8, 10: // SUBSCRIBE, UNSUBSCRIBE
			r := newRec(cs, m, fromClient)
			r.PacketID = uint16(pid)
			r.TopicFilters = append([]string(nil), m.fields["topic"]...)
			if len(r.TopicFilters) > 0 {
				r.Topic = r.TopicFilters[0]
			}
			if m.Type == 8 {
				if v5 {
					r.QoS = uint8(m.num("subscription_options_qos"))
				} else {
					r.QoS = uint8(m.num("sub_qos"))
				}
			}
			begin(reqKey(m.Type, pid), r)
		case 9, 11: // SUBACK, UNSUBACK
			k := respKey(m.Type-1, pid)
			o := txs[k]
			if o == nil {
				st.Unmatched[m.Type]++
				continue
			}
			attach(o, m)
			f := "suback_qos"
			if v5 {
				f = map[int]string{9: "suback", 11: "unsuback"}[m.Type] + "_reason_code"
			}
			codes := m.fields[f]
			if len(codes) == 0 && cs.version == 0 {
				// No CONNECT seen: tshark dissects by its own guess.
				for _, g := range []string{"suback_qos", "suback_reason_code", "unsuback_reason_code"} {
					if codes = m.fields[g]; len(codes) > 0 {
						break
					}
				}
			}
			if len(codes) > 0 {
				rc, _ := strconv.Atoi(codes[0])
				for _, c := range codes {
					if n, _ := strconv.Atoi(c); n >= 0x80 {
						rc = n
						break
					}
				}
				o.rec.ReasonCode, o.rec.HasReasonCode = uint8(rc), true
			}
			finish(k, flow.EndOfFlow)
		case 12:
			begin(reqKey(12, 0), newRec(cs, m, fromClient))
		case 13:
			k := respKey(12, 0)
			if txs[k] == nil {
				st.Unmatched[m.Type]++
				continue
			}
			attach(txs[k], m)
			finish(k, flow.EndOfFlow)
		case 14, 15:
			r := newRec(cs, m, fromClient)
			if v5 || m.Type == 15 {
				f := map[int]string{14: "disconnect", 15: "auth"}[m.Type] + "_reason_code"
				r.ReasonCode, r.HasReasonCode = uint8(m.num(f)), true
			}
			r.EndReason = flow.EndOfFlow
			out = append(out, *r)
		default:
			st.Other++
		}
	}
	// Unfinished transactions end at the end of the capture, oldest first.
	rest := make([]key, 0, len(txs))
	for k := range txs {
		rest = append(rest, k)
	}
	sort.Slice(rest, func(i, j int) bool { return txs[rest[i]].seq < txs[rest[j]].seq })
	for _, k := range rest {
		finish(k, flow.EndForced)
	}
	return out, st
}

// RefStats counts messages that did not become part of a reference flow.
type RefStats struct {
	Unmatched  [16]int
	Superseded int
	Other      int
}

func octets(remaining int) uint64 { return uint64(1 + varintLen(remaining) + remaining) }

func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}
