package coapplant_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/internal/coapplant"
	"github.com/mission-ids/mission/internal/mqtttest"
)

// fastConfig is a plant of the default devices at test speed.
func fastConfig(seed uint64) coapplant.Config {
	return coapplant.Config{
		ReadingInterval: 100 * time.Millisecond,
		GetInterval:     200 * time.Millisecond,
		PutInterval:     300 * time.Millisecond,
		Duration:        2 * time.Second,
		Seed:            seed,
	}
}

func runPlant(t *testing.T, cfg coapplant.Config, attack *coapplant.AttackConfig) (*coapplant.Report, *coapplant.AttackReport, map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := coapplant.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ar *coapplant.AttackReport
	if attack != nil {
		a, err := p.Attack(ctx, *attack)
		if err != nil {
			t.Errorf("attack: %v", err)
		}
		ar = &a
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	received := p.Received()
	rep, err := p.Stop(ctx)
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	return rep, ar, received
}

// TestCoAPPlantReport runs the plant and checks its report: every device
// made the exchanges its role says, at its rate, with the right response
// codes; every notification reached the observer, every fourth one
// Confirmable, with increasing Observe numbers; the attacker's PUTs
// succeed and its DELETEs are refused.
func TestCoAPPlantReport(t *testing.T) {
	cfg := fastConfig(1)
	rep, ar, received := runPlant(t, cfg, &coapplant.AttackConfig{Rounds: 2, Over: 200 * time.Millisecond})
	addrs := map[string]netip.Addr{}
	for _, d := range rep.Devices {
		if prev, ok := addrs[d.Name]; ok {
			t.Errorf("device %s twice (%v, %v)", d.Name, prev, d.Addr)
		}
		addrs[d.Name] = d.Addr
	}
	want := map[string]string{"coap-server": "127.0.1.1", "dashboard": "127.0.1.2", "controller": "127.0.1.3",
		"sensor-1": "127.0.1.10", "sensor-2": "127.0.1.11", "sensor-3": "127.0.1.12", "intruder": "127.0.2.66"}
	for name, a := range want {
		if addrs[name].String() != a {
			t.Errorf("device %s at %v, want %s", name, addrs[name], a)
		}
	}
	if rep.Server.Addr().String() != "127.0.1.1" || rep.Server.Port() == 0 {
		t.Errorf("server at %v", rep.Server)
	}

	counts := rep.Counts()
	perSensor := int(cfg.Duration / cfg.ReadingInterval)
	for _, s := range []string{"sensor-1", "sensor-2", "sensor-3"} {
		path := "/sensors/" + s + "/reading"
		posts := counts[coapplant.Key{From: s, Kind: coapplant.KindRequest, Method: "POST", Path: path}]
		if posts < perSensor-1 || posts > perSensor+1 {
			t.Errorf("%s: %d POSTs in %s, want %d ± 1", s, posts, cfg.Duration, perSensor)
		}
		notes := counts[coapplant.Key{From: coapplant.ServerName, Kind: coapplant.KindNotification, Method: "GET", Path: path}]
		if notes != posts || received[s] != posts {
			t.Errorf("%s: %d readings, %d notifications sent, %d received", s, posts, notes, received[s])
		}
		// Register and cancel.
		if n := counts[coapplant.Key{From: coapplant.ObserverName, Kind: coapplant.KindRequest, Method: "GET", Path: path}]; n != 2 {
			t.Errorf("%s: observer made %d GETs, want 2 (register, cancel)", s, n)
		}
	}
	for _, a := range []string{"actuator-1", "actuator-2"} {
		path := "/actuators/" + a
		gets := counts[coapplant.Key{From: coapplant.ObserverName, Kind: coapplant.KindRequest, Method: "GET", Path: path}]
		puts := counts[coapplant.Key{From: coapplant.ControllerName, Kind: coapplant.KindRequest, Method: "PUT", Path: path}]
		// Round robin over two actuators: each gets half the cycle, ± 1.
		if g := int(cfg.Duration / cfg.GetInterval / 2); gets < g-1 || gets > g+1 {
			t.Errorf("%s: %d GETs, want %d ± 1", a, gets, g)
		}
		if p := int(cfg.Duration / cfg.PutInterval / 2); puts < p-1 || puts > p+1 {
			t.Errorf("%s: %d PUTs, want %d ± 1", a, puts, p)
		}
		for _, m := range []string{"PUT", "DELETE"} {
			if n := counts[coapplant.Key{From: "intruder", Kind: coapplant.KindRequest, Method: m, Path: path}]; n != 2 {
				t.Errorf("intruder: %d %s %s, want 2", n, m, path)
			}
		}
	}
	if len(ar.Exchanges) != 8 || ar.Device.Addr.String() != "127.0.2.66" || !ar.End.After(ar.Start) {
		t.Errorf("attack report: %d exchanges from %v, %v to %v", len(ar.Exchanges), ar.Device.Addr, ar.Start, ar.End)
	}

	wantResp := map[string]string{"POST": "2.04", "PUT": "2.04", "GET": "2.05", "DELETE": "4.05"}
	lastSeq := map[string]uint32{}
	sent := map[string]int{}
	for _, x := range rep.Exchanges {
		if x.Err != nil {
			t.Errorf("%s: %v", x.Key(), x.Err)
		}
		if x.Response != wantResp[x.Method] {
			t.Errorf("%s: response %q, want %s", x.Key(), x.Response, wantResp[x.Method])
		}
		if x.Retransmissions != 0 {
			t.Errorf("%s: %d retransmissions on a loss-free loopback", x.Key(), x.Retransmissions)
		}
		if x.Kind != coapplant.KindNotification {
			if x.Type != "CON" {
				t.Errorf("%s: request type %s", x.Key(), x.Type)
			}
			continue
		}
		sent[x.Path]++
		wantType := "NON"
		if sent[x.Path]%4 == 0 {
			wantType = "CON"
		}
		if x.Type != wantType {
			t.Errorf("notification %d of %s: %s, want %s", sent[x.Path], x.Path, x.Type, wantType)
		}
		if !x.HasObserve || x.Observe <= lastSeq[x.Path] {
			t.Errorf("notification %d of %s: Observe %d (has %v) after %d", sent[x.Path], x.Path, x.Observe, x.HasObserve, lastSeq[x.Path])
		}
		lastSeq[x.Path] = x.Observe
	}
}

// TestCoAPPlantRetransmits drops a third of what reaches the server: every
// request is retransmitted until it gets through (RFC 7252 §4.2) and every
// exchange still completes.
func TestCoAPPlantRetransmits(t *testing.T) {
	cfg := fastConfig(2)
	cfg.Duration, cfg.Loss = time.Second, 0.3
	cfg.Timing = coapplant.Timing{ACKTimeout: 20 * time.Millisecond, MaxRetransmit: 8}
	rep, _, _ := runPlant(t, cfg, nil)
	requests := 0
	for _, x := range rep.Exchanges {
		if x.Err != nil || x.Response == "" {
			t.Errorf("%s: response %q, %v", x.Key(), x.Response, x.Err)
		}
		if x.Kind == coapplant.KindRequest {
			requests++
		}
	}
	// Each first copy is lost with probability 0.3.
	if r := rep.Retransmissions(); r < requests/10 {
		t.Errorf("%d retransmissions for %d requests with 30 %% loss", r, requests)
	}
	t.Logf("%d exchanges, %d retransmissions", len(rep.Exchanges), rep.Retransmissions())
}

// TestCoAPPlantServer checks the server's message layer with raw
// datagrams: a duplicate CON gets the same ACK and is not processed
// twice; a NON request gets a NON response; a ping gets RST; unknown paths
// get 4.04; a cancelled observation gets no more notifications.
func TestCoAPPlantServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := coapplant.StartServer(ctx, coapplant.ServerConfig{
		Address: netip.MustParseAddrPort("127.0.1.1:0"), Sensors: []string{"s"}, Actuators: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.Address()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exchange := func(typ coapparse.Type, code coapparse.Code, mid uint16, tok, path string, payload string, observe int) []byte {
		t.Helper()
		var m coapparse.Message
		m.Type, m.Code, m.MessageID = typ, code, mid
		if tok != "" {
			m.Token = []byte(tok)
		}
		if observe >= 0 {
			_ = m.AddUint(coapparse.Observe, uint32(observe))
		}
		_ = m.AddURIPath(path)
		if payload != "" {
			m.Payload = []byte(payload)
		}
		b, err := coapparse.AppendMessage(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	read := func() (coapparse.Message, []byte) {
		t.Helper()
		buf := make([]byte, 1500)
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		var m coapparse.Message
		if err := coapparse.Decode(buf[:n], &m); err != nil {
			t.Fatalf("answer %x: %v", buf[:n], err)
		}
		return m, buf[:n]
	}
	expect := func(what string, m coapparse.Message, typ coapparse.Type, code coapparse.Code, tok string) {
		t.Helper()
		if m.Type != typ || m.Code != code || string(m.Token) != tok {
			t.Errorf("%s: got %s %s token %q, want %s %s token %q", what, m.Type, m.Code, m.Token, typ, code, tok)
		}
	}

	// Observe, then a duplicated POST: one notification, the same ACK twice.
	exchange(coapparse.Confirmable, coapparse.GET, 1, "ob", "/sensors/s/reading", "", 0)
	reg, _ := read()
	expect("register", reg, coapparse.Acknowledgement, coapparse.Content, "ob")
	seq0, ok := reg.Observe()
	if !ok || reg.MessageID != 1 {
		t.Fatalf("registration answer without Observe or with message id %d", reg.MessageID)
	}
	for range 2 {
		exchange(coapparse.Confirmable, coapparse.POST, 2, "p1", "/sensors/s/reading", `{"value":1}`, -1)
	}
	var acks [][]byte
	var notes []coapparse.Message
	for range 3 {
		m, raw := read()
		if m.Type == coapparse.Acknowledgement {
			acks = append(acks, append([]byte(nil), raw...))
			expect("POST", m, coapparse.Acknowledgement, coapparse.Changed, "p1")
		} else {
			m.Payload = append([]byte(nil), m.Payload...)
			notes = append(notes, m)
		}
	}
	if len(acks) != 2 || !bytes.Equal(acks[0], acks[1]) || len(notes) != 1 {
		t.Fatalf("duplicate POST: %d ACKs (%x), %d notifications; want 2 equal ACKs and 1 notification", len(acks), acks, len(notes))
	}
	expect("notification", notes[0], coapparse.NonConfirmable, coapparse.Content, "ob")
	if seq, ok := notes[0].Observe(); !ok || seq != seq0+1 || string(notes[0].Payload) != `{"value":1}` {
		t.Errorf("notification: Observe %d (%v) after %d, payload %q", seq, ok, seq0, notes[0].Payload)
	}

	// Cancel; the next reading notifies nobody.
	exchange(coapparse.Confirmable, coapparse.GET, 3, "ob", "/sensors/s/reading", "", 1)
	m, _ := read()
	expect("cancel", m, coapparse.Acknowledgement, coapparse.Content, "ob")
	if srv.Observers("s") != 0 {
		t.Errorf("%d observers after cancelling", srv.Observers("s"))
	}

	for i, c := range []struct {
		what string
		typ  coapparse.Type
		code coapparse.Code
		path string
		body string
		want coapparse.Code
		resp coapparse.Type
	}{
		{"NON GET actuator", coapparse.NonConfirmable, coapparse.GET, "/actuators/a", "", coapparse.Content, coapparse.NonConfirmable},
		{"PUT actuator", coapparse.Confirmable, coapparse.PUT, "/actuators/a", `{"on":true}`, coapparse.Changed, coapparse.Acknowledgement},
		{"DELETE actuator", coapparse.Confirmable, coapparse.DELETE, "/actuators/a", "", coapparse.MethodNotAllowed, coapparse.Acknowledgement},
		{"unknown actuator", coapparse.Confirmable, coapparse.GET, "/actuators/b", "", coapparse.NotFound, coapparse.Acknowledgement},
		{"unknown path", coapparse.Confirmable, coapparse.GET, "/.well-known/core", "", coapparse.NotFound, coapparse.Acknowledgement},
		{"POST actuator", coapparse.Confirmable, coapparse.POST, "/actuators/a", "x", coapparse.MethodNotAllowed, coapparse.Acknowledgement},
	} {
		mid := uint16(100 + i)
		exchange(c.typ, c.code, mid, "tk", c.path, c.body, -1)
		m, _ := read()
		expect(c.what, m, c.resp, c.want, "tk")
		if c.resp == coapparse.Acknowledgement && m.MessageID != mid {
			t.Errorf("%s: ACK message id %d, want %d", c.what, m.MessageID, mid)
		}
	}
	if s, _ := srv.Actuator("a"); s != `{"on":true}` {
		t.Errorf("actuator state %q after PUT", s)
	}
	// A ping.
	if _, err := conn.Write([]byte{0x40, 0, 0, 9}); err != nil {
		t.Fatal(err)
	}
	m, _ = read()
	if m.Type != coapparse.Reset || m.MessageID != 9 || !m.Code.IsEmpty() {
		t.Errorf("ping answered %s %s id %d", m.Type, m.Code, m.MessageID)
	}
}

// TestCoAPPlantLibcoap: libcoap's coap-client reads a running plant's
// resources (2.05 with the actuator's state, 4.04 for an unknown path) and
// observes a sensor, receiving its notifications: the server speaks real
// CoAP.
func TestCoAPPlantLibcoap(t *testing.T) {
	mqtttest.RequireTools(t, "coap-client-notls")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := fastConfig(3)
	cfg.Duration = 0
	p, err := coapplant.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := p.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	uri := "coap://" + p.Server().String()
	client := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "coap-client-notls", append([]string{"-v", "6"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("coap-client-notls %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := client("-m", "get", uri+"/actuators/actuator-1")
	if !strings.Contains(out, "t:ACK c:2.05") || !strings.Contains(out, `{"on":`) {
		t.Errorf("coap-client GET actuator: no 2.05 with the state:\n%s", out)
	}
	out = client("-m", "get", uri+"/no/such/thing")
	if !strings.Contains(out, "t:ACK c:4.04") {
		t.Errorf("coap-client GET unknown path: no 4.04:\n%s", out)
	}
	// Observe sensor-1 for 1.5 s: about 15 readings, each a notification.
	out = client("-m", "get", "-s", "1", "-B", "3", uri+"/sensors/sensor-1/reading")
	notes := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "c:2.05") && strings.Contains(l, "Observe:") && strings.Contains(l, `{"value":`) {
			notes++
		}
	}
	if notes < 5 {
		t.Errorf("coap-client observed %d notifications of sensor-1 in 1 s, want about 10:\n%s", notes, out)
	}
}

// TestCoAPPlantTshark captures the plant and its attack with dumpcap:
// tshark dissects every datagram as CoAP without a malformed packet or
// an expert warning, and counts the messages the report says were sent.
func TestCoAPPlantTshark(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "dumpcap", "tshark")
	// A free UDP port for the server, known before the capture starts.
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	file := filepath.Join(t.TempDir(), "plant.pcap")
	capture := mqtttest.StartCapture(t, "", "lo", fmt.Sprintf("udp port %d", port), file)
	capture.WaitCapturing(t, func() {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.1.1:%d", port))
		if err == nil {
			_, _ = c.Write(nil) // an empty datagram: no CoAP message
			c.Close()
		}
	})
	cfg := fastConfig(4)
	cfg.Port = uint16(port)
	rep, _, _ := runPlant(t, cfg, &coapplant.AttackConfig{Rounds: 1, Over: 100 * time.Millisecond})
	capture.Stop(t)

	// Messages sent: a CON request and its ACK; a NON notification alone;
	// a CON notification and its ACK.
	want := 0
	for _, x := range rep.Exchanges {
		want += 2 + x.Retransmissions
		if x.Type == "NON" {
			want--
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tshark := func(filter string) int {
		t.Helper()
		cmd := exec.CommandContext(ctx, "tshark", "-r", file, "-d", fmt.Sprintf("udp.port==%d,coap", port), "-Y", filter, "-T", "fields", "-e", "frame.number")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			errors.As(err, &ee)
			t.Fatalf("tshark -Y %s: %v\n%s", filter, err, stderr.String())
		}
		return len(strings.Fields(string(out)))
	}
	if n := tshark("_ws.malformed || _ws.expert.severity >= warning"); n != 0 {
		t.Errorf("tshark: %d malformed or warned frames", n)
	}
	got := tshark("coap")
	if got != want {
		t.Errorf("tshark decoded %d CoAP messages, the report says %d were sent", got, want)
	}
	for typ, filter := range map[string]string{"CON": "coap.type == 0", "NON": "coap.type == 1", "ACK": "coap.type == 2", "RST": "coap.type == 3"} {
		t.Logf("%s: %d", typ, tshark(filter))
	}
	if tshark("coap.opt.observe") == 0 || tshark("coap.code == 4") == 0 {
		t.Error("tshark saw no Observe option or no DELETE")
	}
	t.Logf("tshark: %d CoAP messages, none malformed (%s)", got, strconv.Itoa(len(rep.Exchanges))+" exchanges")
}
