package command

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/mining"
)

// coapCapture writes a pcap of CoAP exchanges over UDP: each request
// (CON, from a fresh ephemeral port) and its piggybacked response (ACK).
type coapCapture struct {
	t    *testing.T
	w    *pcapgo.Writer
	f    *os.File
	now  time.Time
	port uint16
	mid  uint16
}

func newCoAPCapture(t *testing.T, file string, start time.Time) *coapCapture {
	f, err := os.Create(file)
	require.NoError(t, err)
	w := pcapgo.NewWriter(f)
	require.NoError(t, w.WriteFileHeader(65536, layers.LinkTypeEthernet))
	return &coapCapture{t: t, w: w, f: f, now: start, port: 40000}
}

func (x *coapCapture) datagram(src, dst net.IP, sport, dport uint16, m *coapparse.Message) {
	payload, err := coapparse.AppendMessage(nil, m)
	require.NoError(x.t, err)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	require.NoError(x.t, udp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(x.t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)))
	b := buf.Bytes()
	require.NoError(x.t, x.w.WritePacket(gopacket.CaptureInfo{Timestamp: x.now, CaptureLength: len(b), Length: len(b)}, b))
}

// exchange sends method path from client to server (port 5683) at the
// capture's clock and the response 2 ms later; the clock moves by gap.
func (x *coapCapture) exchange(client, server string, method, resp coapparse.Code, path string, gap time.Duration) {
	c, s := net.ParseIP(client).To4(), net.ParseIP(server).To4()
	x.port++
	x.mid++
	tok := []byte{byte(x.mid >> 8), byte(x.mid)}
	var req coapparse.Message
	req.Reset()
	req.Type, req.Code, req.MessageID, req.Token = coapparse.Confirmable, method, x.mid, tok
	require.NoError(x.t, req.AddURIPath(path))
	x.datagram(c, s, x.port, 5683, &req)
	x.now = x.now.Add(2 * time.Millisecond)
	var ack coapparse.Message
	ack.Reset()
	ack.Type, ack.Code, ack.MessageID, ack.Token = coapparse.Acknowledgement, resp, x.mid, tok
	x.datagram(s, c, 5683, x.port, &ack)
	x.now = x.now.Add(gap)
}

func (x *coapCapture) close() { require.NoError(x.t, x.f.Close()) }

// coapPlant writes n rounds (one per second) of a controller reading a
// sensor and setting the LED.
func coapPlant(t *testing.T, file string, start time.Time, n int) *coapCapture {
	x := newCoAPCapture(t, file, start)
	for range n {
		x.exchange("10.1.0.2", "10.1.0.10", coapparse.GET, coapparse.Content, "/temperature", 10*time.Millisecond)
		x.exchange("10.1.0.2", "10.1.0.20", coapparse.PUT, coapparse.Changed, "/led/state", 978*time.Millisecond)
	}
	return x
}

func alertChecks(t *testing.T, out string) (checks []string, clients map[string]bool) {
	t.Helper()
	clients = map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var a mining.Alert
		require.NoError(t, json.Unmarshal([]byte(l), &a), l)
		if !slices.Contains(checks, string(a.Check)) {
			checks = append(checks, string(a.Check))
		}
		clients[a.Client] = true
	}
	slices.Sort(checks)
	return checks, clients
}

// CoAP through every layer of the command line: a capture stored by
// all-in-one in the embedded store, mined with --names (recorded in the
// model), detected on fresh normal traffic (nothing) and on an attack,
// with the model's names or another --names file.
func TestMineAndDetectCoAPWithNames(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	names := filepath.Join(dir, "plant.names")
	require.NoError(t, os.WriteFile(names, []byte("# the plant\n10.1.0.2 controller\n10.1.0.10 temperatureSensor\n10.1.0.20 led # actuator\n"), 0o644))

	store := func(name string, write func(pcap string)) string {
		pcap, data := filepath.Join(dir, name+".pcap"), filepath.Join(dir, name)
		write(pcap)
		run(t, "all-in-one", "--read", pcap, "--data-dir", data)
		return data
	}
	train := store("train", func(p string) { coapPlant(t, p, t0, 60).close() })
	fresh := store("fresh", func(p string) { coapPlant(t, p, t0.Add(time.Hour), 60).close() })
	attack := store("attack", func(p string) {
		x := coapPlant(t, p, t0.Add(2*time.Hour), 20)
		x.exchange("10.1.0.66", "10.1.0.20", coapparse.DELETE, coapparse.Deleted, "/led/state", time.Second)
		x.exchange("10.1.0.2", "10.1.0.10", coapparse.GET, coapparse.Content, "/temperature", time.Second)
		x.close()
	})

	mined := filepath.Join(dir, "mined")
	var report struct {
		Flows, Cases, Activities int
	}
	require.NoError(t, json.Unmarshal([]byte(run(t, "mine", "--data-dir", train, "--names", names, "--out", mined)), &report))
	require.Equal(t, 120, report.Flows)
	require.Zero(t, report.Cases)
	require.Equal(t, 2, report.Activities)
	model := filepath.Join(mined, "model.json")
	m, err := mining.ReadModelFile(model)
	require.NoError(t, err)
	var acts []string
	for _, a := range m.Activities {
		acts = append(acts, a.Activity)
	}
	require.Equal(t, []string{"controller → GET /temperature", "controller → PUT /led/state"}, acts)
	require.Equal(t, []mining.NameEntry{{Address: "10.1.0.10", Name: "temperatureSensor"}, {Address: "10.1.0.2", Name: "controller"},
		{Address: "10.1.0.20", Name: "led"}}, m.Names)

	// Without --names endpoints are their addresses, whatever the port.
	plain := filepath.Join(dir, "plain")
	run(t, "mine", "--data-dir", train, "--out", plain)
	pm, err := mining.ReadModelFile(filepath.Join(plain, "model.json"))
	require.NoError(t, err)
	require.Equal(t, "10.1.0.2 → GET /temperature", pm.Activities[0].Activity)
	require.Len(t, pm.Clients, 1)

	// Fresh normal traffic (other ports, tokens, times): nothing, with
	// the model's names and with the same file given again.
	require.Empty(t, strings.TrimSpace(run(t, "detect", "--data-dir", fresh, "--model", model)))
	require.Empty(t, strings.TrimSpace(run(t, "detect", "--data-dir", fresh, "--model", model, "--names", names)))

	// The attack: an unknown client deletes the LED's state.
	checks, clients := alertChecks(t, run(t, "detect", "--data-dir", attack, "--model", model))
	require.Equal(t, []string{"unknown-activity", "unknown-client", "unusual-method"}, checks)
	require.Equal(t, map[string]bool{"10.1.0.66": true}, clients)

	// The same from the probe's JSON lines of the capture.
	jsonl := filepath.Join(dir, "attack.jsonl")
	require.NoError(t, os.WriteFile(jsonl, []byte(run(t, "probe", "--read", filepath.Join(dir, "attack.pcap"), "--stdout")), 0o644))
	checks, _ = alertChecks(t, run(t, "detect", "--jsonl", jsonl, "--model", model))
	require.Equal(t, []string{"unknown-activity", "unknown-client", "unusual-method"}, checks)

	// --names replaces the model's table: here the intruder's address is
	// named controller (as if the controller had been renumbered), so
	// only what the controller never did remains.
	renamed := filepath.Join(dir, "renamed.names")
	require.NoError(t, os.WriteFile(renamed, []byte("10.1.0.66 controller\n10.1.0.2 controller\n10.1.0.20 led\n10.1.0.0/24 plant\n"), 0o644))
	checks, clients = alertChecks(t, run(t, "detect", "--data-dir", attack, "--model", model, "--names", renamed))
	require.Equal(t, []string{"unknown-activity", "unusual-method"}, checks)
	require.Equal(t, map[string]bool{"controller": true}, clients)

	// Live detection (all-in-one --model) raises the same checks, into
	// the store and the EVE log.
	eve := filepath.Join(dir, "aio.eve.json")
	pcap := filepath.Join(dir, "attack.pcap")
	run(t, "all-in-one", "--read", pcap, "--data-dir", filepath.Join(dir, "aio"), "--model", model, "--eve-log", eve)
	b, err := os.ReadFile(eve)
	require.NoError(t, err)
	var sids []int
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev struct {
			Proto    string `json:"proto"`
			AppProto string `json:"app_proto"`
			Alert    struct {
				SignatureID int `json:"signature_id"`
			} `json:"alert"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		require.Equal(t, "UDP", ev.Proto)
		require.Equal(t, "coap", ev.AppProto)
		sids = append(sids, ev.Alert.SignatureID)
	}
	slices.Sort(sids)
	require.Equal(t, []int{9990001, 9990002, 9990012}, sids)
}

// A names file that does not parse stops mine, detect and all-in-one
// --model, naming the file and the line.
func TestNamesFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.names")
	require.NoError(t, os.WriteFile(bad, []byte("# devices\n10.1.0.2 controller\n10.1.0.999 typo\n"), 0o644))
	pcap := filepath.Join(dir, "p.pcap")
	coapPlant(t, pcap, time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC), 3).close()
	data := filepath.Join(dir, "data")
	run(t, "all-in-one", "--read", pcap, "--data-dir", data)
	mined := filepath.Join(dir, "mined")
	run(t, "mine", "--data-dir", data, "--out", mined)
	model := filepath.Join(mined, "model.json")
	for _, args := range [][]string{
		{"mine", "--data-dir", data, "--out", filepath.Join(dir, "m2"), "--names", bad},
		{"detect", "--data-dir", data, "--model", model, "--names", bad},
		{"all-in-one", "--read", pcap, "--data-dir", filepath.Join(dir, "aio"), "--model", model, "--names", bad},
	} {
		out, err := runAll(t, append([]string{"--log-level", "error"}, args...)...)
		require.Error(t, err, "%v", args)
		require.ErrorIs(t, err, mining.ErrNamesSyntax)
		var ne *mining.NamesError
		require.True(t, errors.As(err, &ne))
		require.Equal(t, 3, ne.Line)
		require.Contains(t, out, "--names: names file "+bad+" line 3")
	}
	// A missing file too.
	_, err := runAll(t, "detect", "--data-dir", data, "--model", model, "--names", filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
