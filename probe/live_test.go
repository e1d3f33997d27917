package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/mqttparse"
)

// ipfixReceiver is a minimal IPFIX-over-UDP collector for tests: it decodes
// every message with an ipfix.Session and flow.Decoder and keeps the flows.
type ipfixReceiver struct {
	conn *net.UDPConn
	mu   sync.Mutex
	recs []flow.Record
	errs []error
	msgs int
	done chan struct{}
}

func startIPFIXReceiver(t *testing.T) *ipfixReceiver {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	require.NoError(t, conn.SetReadBuffer(8<<20))
	r := &ipfixReceiver{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		buf := make([]byte, 65535)
		var sess *ipfix.Session
		dec := flow.NewDecoder(ipfix.DefaultMQTTPEN)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if sess == nil {
				sess = ipfix.NewSession(ipfix.Config{}, ipfix.SessionKey{Exporter: from, Transport: ipfix.UDP})
			}
			err = sess.Decode(buf[:n], func(rec ipfix.Record) error {
				var fr flow.Record
				if !dec.Decode(rec, &fr) {
					return fmt.Errorf("record of template %d is not an MQTT flow", rec.Template.ID)
				}
				r.mu.Lock()
				r.recs = append(r.recs, fr)
				r.mu.Unlock()
				return nil
			})
			r.mu.Lock()
			r.msgs++
			if err != nil {
				r.errs = append(r.errs, err)
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-r.done })
	return r
}

func (r *ipfixReceiver) addr() string { return r.conn.LocalAddr().String() }

// wait returns the flows once n have arrived.
func (r *ipfixReceiver) wait(t *testing.T, n int) []flow.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		got, errs := len(r.recs), errors.Join(r.errs...)
		r.mu.Unlock()
		require.NoError(t, errs, "IPFIX decoding")
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector received %d flows, the probe exported %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flow.Record(nil), r.recs...)
}

// mqttString encodes an MQTT UTF-8 string / binary data field.
func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// mqttPacket prepends a fixed header (remaining length < 128).
func mqttPacket(first byte, body ...[]byte) []byte {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	if len(b) >= 128 {
		panic("test packet too long")
	}
	return append([]byte{first, byte(len(b))}, b...)
}

// readMQTT reads one MQTT packet (remaining length < 128) from c.
func readMQTT(t *testing.T, c net.Conn) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	h := make([]byte, 2)
	_, err := io.ReadFull(c, h)
	require.NoError(t, err)
	require.Less(t, h[1], byte(128))
	body := make([]byte, h[1])
	_, err = io.ReadFull(c, body)
	require.NoError(t, err)
	return append(h, body...)
}

// TestLiveCapture runs the probe live on lo (AF_PACKET, kernel BPF filter)
// against a real mosquitto and real clients, exports IPFIX over UDP to a
// collector, and checks the flows that arrive against tshark's dissection
// of a parallel dumpcap capture and against the known workload. Then it
// cancels the probe with a QoS 2 exchange left open and checks the
// shutdown: Run returns nil, the open transaction is exported as
// "forced end", and the kernel counters were read.
func TestLiveCapture(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto", "mosquitto_pub", "mosquitto_sub", "dumpcap", "tshark")
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
	port := broker.Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	filter := fmt.Sprintf("tcp port %d", port)
	poke := func() { // a connection without MQTT: no flow
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
		}
	}

	file := filepath.Join(t.TempDir(), "live.pcap")
	capt := mqtttest.StartCapture(t, "", "lo", filter, file)
	capt.WaitCapturing(t, poke)

	recv := startIPFIXReceiver(t)
	exp, err := NewIPFIXExporter(IPFIXConfig{Transport: "udp", Address: recv.addr()})
	require.NoError(t, err)
	p, err := New(Config{Interface: "lo", Filter: filter, MQTTPorts: []uint16{uint16(port)}, TLSPorts: []uint16{}}, exp)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	// The probe counts packets once its socket is open (the stats are
	// refreshed on every 100 ms poll timeout).
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Packets == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the live probe saw no packet within 10 s")
		}
		select {
		case err := <-runDone:
			t.Fatalf("probe stopped early: %v", err)
		default:
		}
		poke()
		time.Sleep(50 * time.Millisecond)
	}

	// The workload: a v5 subscriber gets every message at QoS 2, three
	// publishers send QoS 2 with correlation data, QoS 1 (3.1.1) and QoS 0
	// with a W3C traceparent.
	const nQ2, nQ1, nQ0 = 20, 50, 50
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	host := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}
	command := func(args ...string) []string { return append(append([]string{args[0]}, host...), args[1:]...) }
	sub := mqtttest.Command(wctx, "", command("mosquitto_sub", "-V", "mqttv5", "-i", "livesub", "-q", "2",
		"-t", "live/#", "-C", strconv.Itoa(nQ2+nQ1+nQ0), "-W", "20")...)
	require.NoError(t, sub.Start())
	broker.WaitLog(t, "Sending SUBACK to livesub", 10*time.Second)
	mqtttest.Run(t, wctx, "", command("mosquitto_pub", "-V", "mqttv5", "-i", "liveq2", "-q", "2", "-t", "live/q2",
		"-m", "two", "--repeat", strconv.Itoa(nQ2), "-D", "publish", "correlation-data", "live-corr")...)
	q1 := mqtttest.Command(wctx, "", command("mosquitto_pub", "-V", "mqttv311", "-i", "liveq1", "-q", "1", "-t", "live/q1", "-l")...)
	q1.Stdin = mqtttest.Lines("one", nQ1)
	out, err := q1.CombinedOutput()
	require.NoError(t, err, "%s", out)
	q0 := mqtttest.Command(wctx, "", command("mosquitto_pub", "-V", "mqttv5", "-i", "liveq0", "-q", "0", "-t", "live/q0", "-l",
		"-D", "publish", "user-property", "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")...)
	q0.Stdin = mqtttest.Lines("zero", nQ0)
	out, err = q0.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, sub.Wait(), "mosquitto_sub did not get all %d messages", nQ2+nQ1+nQ0)

	// A raw v5 client publishes at QoS 2 and never sends PUBREL: the
	// transaction stays open (PUBLISH, PUBREC) until the probe stops.
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write(mqttPacket(0x10, mqttString("MQTT"), []byte{5, 0x02, 0, 60, 0}, mqttString("liveopen")))
	require.NoError(t, err)
	require.Equal(t, byte(0x20), readMQTT(t, raw)[0], "CONNACK")
	props := append([]byte{0x09}, mqttString("open-corr")...)
	_, err = raw.Write(mqttPacket(0x34, mqttString("live/open"), []byte{0, 7, byte(len(props))}, props, []byte("held")))
	require.NoError(t, err)
	pubrec := readMQTT(t, raw)
	require.Equal(t, []byte{0x50, 2, 0, 7}, pubrec[:4], "PUBREC for packet id 7")

	// Every PUBREC was read by the probe: the liveq2 ones, the
	// subscriber's for its QoS 2 deliveries of them, and the raw client's.
	deadline = time.Now().Add(10 * time.Second)
	for p.Stats().Tracker.Packets[mqttparse.Pubrec] < 2*nQ2+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the probe decoded %d PUBRECs, want %d: %+v", p.Stats().Tracker.Packets[mqttparse.Pubrec], 2*nQ2+1, p.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	capt.Stop(t)

	// Shutdown with the QoS 2 exchange still open.
	cancel()
	select {
	case err := <-runDone:
		require.NoError(t, err, "Run after cancel")
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of the cancellation")
	}
	st := p.Stats()
	t.Logf("probe: %d packets (kernel received %d, dropped %d), %d MQTT segments, %d flows exported; tracker %v",
		st.Packets, st.KernelReceived, st.KernelDropped, st.MQTTSegments, st.FlowsExported, st.Tracker.Packets)
	require.Positive(t, st.KernelReceived, "kernel counters read")
	require.GreaterOrEqual(t, st.KernelReceived, st.Packets)
	require.Zero(t, st.KernelDropped)
	require.Zero(t, st.FlowsDropped+st.FlowsLost+st.ExportErrors)
	require.Zero(t, st.Reassembly.Gaps+st.Tracker.Malformed+st.Tracker.FramingErrors)
	require.Zero(t, st.OtherTCP+st.TLSPackets+st.NotTCP, "the kernel filter let only the broker's port through")
	got := recv.wait(t, int(st.FlowsExported))
	require.Len(t, got, int(st.FlowsExported))

	// The open transaction, forced out by the shutdown.
	var open []flow.Record
	for _, r := range got {
		if r.SrcClientID == "liveopen" && r.ControlType == flow.Publish {
			open = append(open, r)
		}
	}
	require.Len(t, open, 1)
	o := open[0]
	require.Equal(t, flow.EndForced, o.EndReason)
	require.Equal(t, uint8(2), o.QoS)
	require.Equal(t, uint16(7), o.PacketID)
	require.Equal(t, uint64(2), o.Packets, "PUBLISH and PUBREC")
	require.Equal(t, "live/open", o.Topic)
	require.Equal(t, "open-corr", string(o.CorrelationData))
	require.Equal(t, flow.CorrelationData, o.CorrelationSource)

	// The known workload.
	count := map[string]int{}
	for _, r := range got {
		key := fmt.Sprintf("%s %s>%s q%d %s pkts=%d corr=%s/%s end=%s", r.ControlType, r.SrcClientID, r.DstClientID,
			r.QoS, r.Topic, r.Packets, r.CorrelationData, r.CorrelationSource, r.EndReason)
		count[key]++
	}
	b := flow.BrokerClientID
	want := map[string]int{
		"PUBLISH liveq2>" + b + " q2 live/q2 pkts=4 corr=live-corr/correlationData end=end of flow":                     nQ2,
		"PUBLISH " + b + ">livesub q2 live/q2 pkts=4 corr=live-corr/correlationData end=end of flow":                    nQ2,
		"PUBLISH liveq1>" + b + " q1 live/q1 pkts=2 corr=/none end=end of flow":                                         nQ1,
		"PUBLISH " + b + ">livesub q1 live/q1 pkts=2 corr=/none end=end of flow":                                        nQ1,
		"PUBLISH liveq0>" + b + " q0 live/q0 pkts=1 corr=4bf92f3577b34da6a3ce929d0e0e4736/traceparent end=end of flow":  nQ0,
		"PUBLISH " + b + ">livesub q0 live/q0 pkts=1 corr=4bf92f3577b34da6a3ce929d0e0e4736/traceparent end=end of flow": nQ0,
	}
	for _, id := range []string{"livesub", "liveq2", "liveq1", "liveq0", "liveopen"} {
		want[fmt.Sprintf("CONNECT %s>%s q0  pkts=2 corr=/none end=end of flow", id, b)] = 1
	}
	want["SUBSCRIBE livesub>"+b+" q2 live/# pkts=2 corr=/none end=end of flow"] = 1
	for _, id := range []string{"livesub", "liveq2", "liveq1", "liveq0"} {
		want[fmt.Sprintf("DISCONNECT %s>%s q0  pkts=1 corr=/none end=end of flow", id, b)] = 1
	}
	want["PUBLISH liveopen>"+b+" q2 live/open pkts=2 corr=open-corr/correlationData end=forced end"] = 1
	require.Equal(t, want, count)

	// Field by field against tshark's dissection of the parallel capture.
	// Timestamps are compared separately: dumpcap's (TPACKET_V3 ring,
	// microseconds in the pcap) are taken a little later on lo than the
	// probe's (SO_TIMESTAMPNS), by some microseconds.
	msgs := mqtttest.TsharkMessages(t, file, port)
	ref, _ := mqtttest.ReferenceFlows(msgs, uint16(port))
	requireSameFlows(t, ref, got, false)
	requireCloseTimes(t, ref, got, time.Millisecond)
}

// requireCloseTimes pairs flows with equal fields (in time order where
// several are equal) and checks their start and end times differ by at
// most tol.
func requireCloseTimes(t *testing.T, want, got []flow.Record, tol time.Duration) {
	t.Helper()
	group := func(recs []flow.Record) map[string][]*flow.Record {
		m := map[string][]*flow.Record{}
		for i := range recs {
			l := flowLine(&recs[i], false)
			m[l] = append(m[l], &recs[i])
		}
		for _, g := range m {
			sort.Slice(g, func(i, j int) bool { return g[i].Start.Before(g[j].Start) })
		}
		return m
	}
	gw, gg := group(want), group(got)
	worst := time.Duration(0)
	for l, w := range gw {
		g := gg[l]
		require.Len(t, g, len(w), l)
		for i := range w {
			for _, d := range []time.Duration{g[i].Start.Sub(w[i].Start), g[i].End.Sub(w[i].End)} {
				d = max(d, -d)
				worst = max(worst, d)
				require.LessOrEqual(t, d, tol, "times of %s: probe %v–%v, reference %v–%v", l, g[i].Start, g[i].End, w[i].Start, w[i].End)
			}
		}
	}
	t.Logf("largest timestamp difference to the reference: %v", worst)
}
