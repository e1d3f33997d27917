package mqttparse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

// TestDifferentialTshark runs a real mosquitto on loopback, drives it with
// mosquitto_pub/mosquitto_sub over MQTT 3.1, 3.1.1 and 5.0, captures lo with
// tshark, reassembles the TCP streams here, decodes every packet with our
// Framer + Decode and compares each packet's fields with tshark's MQTT
// dissector on the same capture. It needs root, mosquitto, mosquitto-clients
// and tshark, and fails (never skips) without them.
func TestDifferentialTshark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestDifferentialTshark must run as root (it captures on lo)")
	}
	for _, bin := range []string{"mosquitto", "mosquitto_pub", "mosquitto_sub", "tshark"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: apt-get install mosquitto mosquitto-clients tshark (%v)", bin, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	port := freePort(t)
	pcapFile := filepath.Join(dir, "mqtt.pcap")

	// Capture first, and wait until tshark says it is capturing.
	capCmd := exec.CommandContext(ctx, "tshark", "-i", "lo", "-w", pcapFile, "-F", "pcap", "-f", fmt.Sprintf("tcp port %d", port))
	capErr, err := capCmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, capCmd.Start())
	defer func() { _ = capCmd.Process.Kill() }()
	waitLine(t, capErr, "Capturing on")

	conf := filepath.Join(dir, "mosquitto.conf")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil, "listener %d 127.0.0.1\nallow_anonymous true\n", port), 0o644))
	broker := exec.CommandContext(ctx, "mosquitto", "-c", conf)
	require.NoError(t, broker.Start())
	defer func() { _ = broker.Process.Kill() }()
	waitPort(t, port)

	p := strconv.Itoa(port)
	big := filepath.Join(dir, "big.bin")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 200*1024/16), 0o644))
	run := func(args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, args[0], append([]string{"-p", p}, args[1:]...)...)
		return c
	}
	// Subscribers in the background, one per version.
	subs := []*exec.Cmd{
		run("mosquitto_sub", "-V", "mqttv5", "-i", "sub5", "-q", "2", "-t", "t5/#", "-t", "t311/+", "--nl", "--rap",
			"-D", "subscribe", "subscription-identifier", "42", "-D", "connect", "user-property", "who", "sub5", "-C", "4", "-W", "15"),
		run("mosquitto_sub", "-V", "mqttv311", "-i", "sub311", "-q", "1", "-t", "t311/#", "-t", "t31/#", "-C", "3", "-W", "15"),
		run("mosquitto_sub", "-V", "mqttv31", "-i", "sub31", "-q", "0", "-t", "t31/x", "-C", "1", "-W", "15"),
	}
	for _, s := range subs {
		s.Stdout = nil
		require.NoError(t, s.Start())
	}
	time.Sleep(700 * time.Millisecond) // let the subscriptions settle
	pubs := [][]string{
		{"mosquitto_pub", "-V", "mqttv31", "-i", "pub31", "-q", "1", "-t", "t31/x", "-m", "three-one"},
		{"mosquitto_pub", "-V", "mqttv311", "-i", "pub311", "-q", "2", "-r", "-t", "t311/a", "-m", "retained",
			"-u", "alice", "-P", "secret", "--will-topic", "will/311", "--will-payload", "bye", "--will-qos", "1"},
		{"mosquitto_pub", "-V", "mqttv5", "-i", "pub5", "-q", "2", "-t", "t5/big", "-f", big,
			"-D", "publish", "user-property", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"-D", "publish", "user-property", "k", "v1", "-D", "publish", "correlation-data", "corr-123",
			"-D", "publish", "content-type", "application/octet-stream", "-D", "publish", "response-topic", "reply/5",
			"-D", "publish", "message-expiry-interval", "60",
			"--will-topic", "will/5", "--will-payload", "gone", "-D", "will", "will-delay-interval", "5"},
		{"mosquitto_pub", "-V", "mqttv5", "-i", "pub5a", "-q", "1", "-t", "t5/alias", "-m", "aliased",
			"-D", "publish", "topic-alias", "1", "-D", "connect", "topic-alias-maximum", "10"},
		{"mosquitto_sub", "-V", "mqttv311", "-i", "unsub311", "-t", "u/x", "-U", "u/x", "-E"},
		{"mosquitto_sub", "-V", "mqttv5", "-i", "unsub5", "-t", "u/y", "-U", "u/y", "-E"},
	}
	for _, a := range pubs {
		out, err := run(a...).CombinedOutput()
		require.NoError(t, err, "%v: %s", a, out)
	}
	// A raw client writing CONNECT, three PUBLISH, PINGREQ and DISCONNECT in a
	// single write: several packets per segment for sure, and PINGREQ/PINGRESP.
	raw, err := net.Dial("tcp", "127.0.0.1:"+p)
	require.NoError(t, err)
	burst := []byte{
		0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, 3, 'r', 'a', 'w', // CONNECT 3.1.1 "raw"
		0x30, 6, 0, 3, 'r', '/', '1', 'a', // PUBLISH r/1 "a"
		0x30, 6, 0, 3, 'r', '/', '2', 'b', // PUBLISH r/2 "b"
		0x32, 8, 0, 3, 'r', '/', '3', 0, 9, 'c', // PUBLISH QoS 1 id 9 "c"
		0xC0, 0, // PINGREQ
	}
	_, err = raw.Write(burst)
	require.NoError(t, err)
	rbuf := make([]byte, 64)
	got := 0
	for got < 8 { // CONNACK (4) + PUBACK (4); PINGRESP may be in the same read
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := raw.Read(rbuf[got:])
		require.NoError(t, err)
		got += n
	}
	time.Sleep(100 * time.Millisecond)
	_, err = raw.Write([]byte{0xE0, 0}) // DISCONNECT
	require.NoError(t, err)
	_ = raw.Close()
	// Many small QoS 0 messages from one client: several packets per segment.
	lines := run("mosquitto_pub", "-V", "mqttv5", "-i", "lines5", "-q", "0", "-t", "t5/lines", "-l")
	lines.Stdin = strings.NewReader(strings.Repeat("line\n", 200))
	out, err := lines.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines = run("mosquitto_pub", "-V", "mqttv311", "-i", "lines311", "-q", "1", "-t", "t311/lines", "-l")
	lines.Stdin = strings.NewReader(strings.Repeat("l311\n", 50))
	out, err = lines.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, s := range subs {
		_ = s.Wait() // -C or -W ends them
	}
	_ = broker.Process.Signal(os.Interrupt)
	_ = broker.Wait()
	time.Sleep(300 * time.Millisecond)
	_ = capCmd.Process.Signal(os.Interrupt)
	_ = capCmd.Wait()

	ours := decodeCapture(t, pcapFile, uint16(port))
	theirs, multi := tsharkCapture(t, ctx, pcapFile, port)
	require.Positive(t, multi, "no TCP segment carried several MQTT packets")
	require.Equal(t, len(theirs), len(ours), "directions")
	total := 0
	seen := map[Type]int{}
	var bigPayload bool
	for key, want := range theirs {
		got := ours[key]
		require.Equal(t, len(want), len(got), "packets in direction %v", key)
		for i := range want {
			compareTshark(t, fmt.Sprintf("%v #%d", key, i), want[i], got[i])
			seen[got[i].Header.Type]++
			bigPayload = bigPayload || len(got[i].Payload) >= 200*1024
			total++
		}
	}
	t.Logf("compared %d packets in %d directions with tshark (%d segments with several packets): %v", total, len(ours), multi, seen)
	for _, typ := range []Type{Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Suback, Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect} {
		require.Positive(t, seen[typ], "no %s in the capture", typ)
	}
	require.True(t, bigPayload, "200 KB publish not seen")
}

type dirKey struct{ Src, Dst uint16 }

// decoded is a deep copy of a Packet (the framer's buffers are reused).
type decoded struct{ Packet }

func decodeCapture(t *testing.T, file string, port uint16) map[dirKey][]decoded {
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	require.NoError(t, err)
	type seg struct {
		seq  uint32
		data []byte
	}
	isn := map[dirKey]uint32{}
	segs := map[dirKey][]seg{}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		tcpL, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			continue
		}
		k := dirKey{uint16(tcpL.SrcPort), uint16(tcpL.DstPort)}
		if tcpL.SYN {
			isn[k] = tcpL.Seq + 1
			continue
		}
		if len(tcpL.Payload) > 0 {
			segs[k] = append(segs[k], seg{tcpL.Seq, bytes.Clone(tcpL.Payload)})
		}
	}
	// Reassemble each direction (lo: no loss; drop retransmitted bytes).
	streams := map[dirKey][]byte{}
	for k, ss := range segs {
		base, ok := isn[k]
		require.True(t, ok, "SYN missing for %v", k)
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].seq-base < ss[j].seq-base })
		var s []byte
		for _, sg := range ss {
			rel := int(sg.seq - base)
			if rel+len(sg.data) <= len(s) {
				continue
			}
			require.LessOrEqual(t, rel, len(s), "gap in %v", k)
			s = append(s, sg.data[len(s)-rel:]...)
		}
		streams[k] = s
	}
	// Client directions first, to learn each connection's version.
	version := map[uint16]Version{}
	out := map[dirKey][]decoded{}
	keys := make([]dirKey, 0, len(streams))
	for k := range streams {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Dst == port && keys[j].Dst != port })
	for _, k := range keys {
		client := k.Src
		if k.Src == port {
			client = k.Dst
		}
		fr := NewFramer(0)
		// Feed in irregular chunks to exercise the framer too.
		s := streams[k]
		for i, n := 0, 1; i < len(s); i, n = i+n, n*3%1500+1 {
			fr.Feed(s[i:min(i+n, len(s))])
			for {
				raw, err := fr.Next()
				require.NoError(t, err)
				if raw == nil {
					break
				}
				var p Packet
				_, err = Decode(bytes.Clone(raw), version[client], &p)
				require.NoError(t, err, "%v: %s %s", k, p.Header.Type, p.Violations)
				if p.Header.Type == Connect {
					version[client] = p.Version
				}
				out[k] = append(out[k], decoded{p})
			}
		}
		require.Zero(t, fr.Buffered(), "%v ends inside a packet", k)
	}
	return out
}

// tsharkCapture returns tshark's MQTT messages per direction, in order.
// multi counts frames in which tshark found several MQTT packets.
func tsharkCapture(t *testing.T, ctx context.Context, file string, port int) (res map[dirKey][]map[string][]string, multi int) {
	cmd := exec.CommandContext(ctx, "tshark", "-r", file, "-d", fmt.Sprintf("tcp.port==%d,mqtt", port), "-T", "ek", "-J", "tcp mqtt")
	out, err := cmd.Output()
	require.NoError(t, err)
	res = map[dirKey][]map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		var line struct {
			Layers map[string]json.RawMessage `json:"layers"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		raw, ok := line.Layers["mqtt"]
		if !ok {
			continue
		}
		var tcpL map[string]any
		require.NoError(t, json.Unmarshal(line.Layers["tcp"], &tcpL))
		src, _ := strconv.Atoi(fmt.Sprint(tcpL["tcp_tcp_srcport"]))
		dst, _ := strconv.Atoi(fmt.Sprint(tcpL["tcp_tcp_dstport"]))
		var msgs []map[string]any
		if raw[0] == '[' {
			require.NoError(t, json.Unmarshal(raw, &msgs))
		} else {
			var m map[string]any
			require.NoError(t, json.Unmarshal(raw, &m))
			msgs = []map[string]any{m}
		}
		if len(msgs) > 1 {
			multi++
		}
		k := dirKey{uint16(src), uint16(dst)}
		for _, m := range msgs {
			norm := map[string][]string{}
			for f, v := range m {
				f = strings.TrimPrefix(f, "mqtt_mqtt_")
				switch v := v.(type) {
				case []any:
					for _, e := range v {
						norm[f] = append(norm[f], fmt.Sprint(e))
					}
				case nil:
					norm[f] = nil
				default:
					norm[f] = []string{fmt.Sprint(v)}
				}
			}
			res[k] = append(res[k], norm)
		}
	}
	require.NoError(t, sc.Err())
	return res, multi
}

func one(m map[string][]string, f string) string {
	if v := m[f]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func b2s(b bool) string { return strconv.FormatBool(b) }

// compareTshark checks our packet against tshark's fields.
func compareTshark(t *testing.T, where string, m map[string][]string, d decoded) {
	p := &d.Packet
	eq := func(field, want, got string) {
		t.Helper()
		require.Equal(t, want, got, "%s %s: field %s", where, p.Header.Type, field)
	}
	eq("msgtype", one(m, "msgtype"), strconv.Itoa(int(p.Header.Type)))
	eq("len", one(m, "len"), strconv.Itoa(p.Header.RemainingLength))
	if _, ok := m["msgid"]; ok {
		eq("msgid", one(m, "msgid"), strconv.Itoa(int(p.PacketID)))
	}
	v5 := p.Version == Version5
	switch p.Header.Type {
	case Connect:
		c := &p.Connect
		eq("protoname", one(m, "protoname"), string(c.ProtocolName))
		eq("ver", one(m, "ver"), strconv.Itoa(int(c.ProtocolLevel)))
		eq("kalive", one(m, "kalive"), strconv.Itoa(int(c.KeepAlive)))
		eq("clientid", one(m, "clientid"), string(c.ClientID))
		eq("cleansess", one(m, "conflag_cleansess"), b2s(c.CleanStart))
		eq("willflag", one(m, "conflag_willflag"), b2s(c.WillFlag))
		eq("will qos", one(m, "conflag_qos"), strconv.Itoa(int(c.WillQoS)))
		eq("uname", one(m, "conflag_uname"), b2s(c.UsernameFlag))
		eq("passwd", one(m, "conflag_passwd"), b2s(c.PasswordFlag))
		eq("willtopic", one(m, "willtopic"), string(c.WillTopic))
		eq("username", one(m, "username"), string(c.Username))
		if c.PasswordFlag {
			eq("passwd_len", one(m, "passwd_len"), strconv.Itoa(c.PasswordLen))
		}
		if c.WillFlag {
			eq("willmsg_len", one(m, "willmsg_len"), strconv.Itoa(len(c.WillPayload)))
		}
	case Connack:
		if p.Version != Version31 { // 3.1 has no session-present flag; tshark shows none
			eq("sp", one(m, "conack_flags_sp"), b2s(p.SessionPresent))
		}
		if v5 {
			eq("reason", one(m, "connack_reason_code"), strconv.Itoa(int(p.ReasonCode)))
		} else {
			eq("return code", one(m, "conack_val"), strconv.Itoa(int(p.ReasonCode)))
		}
	case Publish:
		eq("qos", one(m, "qos"), strconv.Itoa(int(p.Header.QoS)))
		eq("retain", one(m, "retain"), b2s(p.Header.Retain))
		eq("dup", one(m, "dupflag"), b2s(p.Header.Dup))
		eq("topic", one(m, "topic"), string(p.Topic))
		msg := one(m, "msg")
		n := 0
		if msg != "" {
			n = (len(msg) + 1) / 3 // aa:bb:cc
		}
		eq("payload length", strconv.Itoa(n), strconv.Itoa(len(p.Payload)))
	case Puback, Pubrec, Pubrel, Pubcomp, Disconnect:
		if v5 && p.Header.RemainingLength > 2 {
			f := strings.ToLower(p.Header.Type.String()) + "_reason_code"
			eq(f, one(m, f), strconv.Itoa(int(p.ReasonCode)))
		}
	case Subscribe, Unsubscribe:
		var filters, opts []string
		for _, s := range p.Filters {
			filters = append(filters, string(s.Filter))
			opts = append(opts, strconv.Itoa(int(s.QoS)))
		}
		eq("topics", strings.Join(m["topic"], "|"), strings.Join(filters, "|"))
		if p.Header.Type == Subscribe {
			if v5 {
				eq("options qos", strings.Join(m["subscription_options_qos"], "|"), strings.Join(opts, "|"))
				var nl []string
				for _, s := range p.Filters {
					nl = append(nl, b2s(s.NoLocal)+"/"+b2s(s.RetainAsPublished)+"/"+strconv.Itoa(int(s.RetainHandling)))
				}
				var want []string
				for i := range m["subscription_options_nl"] {
					want = append(want, m["subscription_options_nl"][i]+"/"+m["subscription_options_rap"][i]+"/"+m["subscription_options_retain"][i])
				}
				eq("options", strings.Join(want, "|"), strings.Join(nl, "|"))
			} else {
				eq("sub qos", strings.Join(m["sub_qos"], "|"), strings.Join(opts, "|"))
			}
		}
	case Suback, Unsuback:
		var codes []string
		for _, c := range p.ReasonCodes {
			codes = append(codes, strconv.Itoa(int(c)))
		}
		f := "suback_qos"
		if v5 {
			f = strings.ToLower(p.Header.Type.String()) + "_reason_code"
		}
		eq(f, strings.Join(m[f], "|"), strings.Join(codes, "|"))
	}
	if !v5 {
		return
	}
	// Properties of the packet and, for CONNECT, of the will: tshark lists
	// the identifiers in wire order in one field.
	var ids []string
	// tshark's EK output repeats the same keys for the will's subtree after
	// the CONNECT's, and JSON keeps the last: compare the will's then.
	props := []*Properties{&p.Properties}
	if p.Header.Type == Connect && p.Connect.WillFlag {
		props = []*Properties{&p.Connect.WillProperties}
	}
	var keys, vals []string
	for _, pr := range props {
		for id := PropertyID(1); id < 64; id++ {
			if pr.Has(id) {
				n := 1
				switch id {
				case PropUserProperty:
					n = len(pr.User)
				case PropSubscriptionIdentifier:
					n = len(pr.SubscriptionIdentifiers)
				}
				for range n {
					ids = append(ids, fmt.Sprintf("0x%02x", byte(id)))
				}
			}
		}
		for _, u := range pr.User {
			keys = append(keys, string(u.Key))
			vals = append(vals, string(u.Value))
		}
	}
	want := append([]string(nil), m["property_id"]...)
	sort.Strings(want)
	sort.Strings(ids)
	eq("property ids", strings.Join(want, ","), strings.Join(ids, ","))
	eq("user property keys", strings.Join(m["prop_key"], "|"), strings.Join(keys, "|"))
	eq("user property values", strings.Join(m["prop_value"], "|"), strings.Join(vals, "|"))
	if p.Properties.Has(PropTopicAlias) {
		eq("topic alias", one(m, "property_topic_alias"), strconv.Itoa(int(p.Properties.TopicAlias)))
	}
	if p.Properties.Has(PropCorrelationData) {
		require.Contains(t, m["prop_string"], string(p.Properties.CorrelationData), "%s correlation data", where)
	}
	if p.Properties.Has(PropContentType) {
		eq("content type", one(m, "property_content_type"), string(p.Properties.ContentType))
	}
	for _, s := range [][]byte{p.Properties.ResponseTopic, p.Properties.AssignedClientIdentifier, p.Properties.ReasonString} {
		if s != nil {
			require.Contains(t, m["prop_string"], string(s), "%s string property", where)
		}
	}
	var nums []string
	for _, n := range m["prop_number"] {
		nums = append(nums, n)
	}
	for _, id := range p.Properties.SubscriptionIdentifiers {
		require.Contains(t, nums, strconv.Itoa(int(id)), "%s subscription identifier", where)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func waitPort(t *testing.T, port int) {
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("mosquitto did not listen on %d", port)
}

func waitLine(t *testing.T, r interface{ Read([]byte) (int, error) }, want string) {
	sc := bufio.NewScanner(r)
	done := make(chan bool, 1)
	go func() {
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				done <- true
				for sc.Scan() { // keep draining stderr
				}
				return
			}
		}
		done <- false
	}()
	select {
	case ok := <-done:
		require.True(t, ok, "tshark exited before capturing")
	case <-time.After(20 * time.Second):
		t.Fatal("tshark did not start capturing")
	}
	time.Sleep(200 * time.Millisecond)
}
