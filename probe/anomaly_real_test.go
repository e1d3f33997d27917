package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
)

// Raw MQTT 3.1.1 packets for the anomaly capture, annotated.
var (
	// CONNECT: name "MQTT", level 4, clean session, keep alive 60, client id.
	rawConnect = func(id string) []byte {
		body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}, id...)
		return append([]byte{0x10, byte(len(body))}, body...)
	}
	// PUBLISH QoS 3 (flags 0110): topic "a/b", packet id 5, payload "x".
	rawQoS3 = []byte{0x36, 8, 0, 3, 'a', '/', 'b', 0, 5, 'x'}
	// Reserved type 0 with an empty body.
	rawReserved = []byte{0x00, 0x00}
	// PUBACK of packet id 77, never published.
	rawOrphanPuback = []byte{0x40, 2, 0, 77}
	// PUBLISH QoS 0 "early" before any CONNECT.
	rawEarly = []byte{0x30, 8, 0, 5, 'e', 'a', 'r', 'l', 'y', 'x'}
	// MQTT 5.0 CONNECT whose property length (100) overruns the packet.
	rawBadConnect = []byte{0x10, 11, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 100}
)

// TestRealAnomalies sends the bad packets to a real mosquitto over raw TCP
// connections, captures them, and checks the probe's anomaly flows, and
// tshark's dissection where tshark sees the anomaly too.
func TestRealAnomalies(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto", "dumpcap", "tshark")
	port := mqtttest.FreePort(t)
	file := filepath.Join(t.TempDir(), "anomalies.pcap")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	capt := mqtttest.StartCapture(t, "", "lo", fmt.Sprintf("tcp port %d", port), file)
	capt.WaitCapturing(t, func() {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			_ = c.Close()
		}
	})
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Port: port, Address: "127.0.0.1"})

	// session connects (CONNECT, waits for the CONNACK when connect), sends
	// the rest one by one and waits until mosquitto closes the connection.
	session := func(id string, connect bool, pkts ...[]byte) uint16 {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		if connect {
			_, err = c.Write(rawConnect(id))
			require.NoError(t, err)
			ack := make([]byte, 4)
			_, err = io.ReadFull(c, ack)
			require.NoError(t, err)
			require.Equal(t, []byte{0x20, 2, 0, 0}, ack, "CONNACK accepted")
		}
		for _, p := range pkts {
			_, _ = c.Write(p)
			time.Sleep(50 * time.Millisecond) // one packet per segment
		}
		// Until mosquitto closes (FIN or RST), not until the deadline.
		_, err = io.Copy(io.Discard, c)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "mosquitto closes the connection of %s: %v", id, err)
		return uint16(c.LocalAddr().(*net.TCPAddr).Port)
	}
	ports := map[string]uint16{
		"qos3":     session("qos3", true, rawQoS3),
		"reserved": session("reserved", true, rawReserved),
		"double":   session("double", true, rawOrphanPuback, rawConnect("double-2")),
		"early":    session("early", false, rawEarly),
		"badconn":  session("badconn", false, rawBadConnect),
	}
	broker.Stop()
	capt.Stop(t)

	recs, st := runOffline(t, file, port)
	byPort := map[uint16][]flow.Record{}
	for _, r := range recs {
		cp := r.SrcPort
		if cp == uint16(port) {
			cp = r.DstPort
		}
		byPort[cp] = append(byPort[cp], r)
	}
	type want struct {
		typ flow.ControlType
		end flow.EndReason
		an  flow.Anomaly
	}
	summary := func(rs []flow.Record) (out []want) {
		for _, r := range rs {
			out = append(out, want{r.ControlType, r.EndReason, r.Anomalies})
		}
		return out
	}
	connectOK := want{flow.Connect, flow.EndOfFlow, 0}
	for name, w := range map[string][]want{
		"qos3":     {connectOK, {flow.Publish, flow.EndAnomaly, flow.AnomalyInvalidQoSLevel}},
		"reserved": {connectOK, {0, flow.EndAnomaly, flow.AnomalyUnassignedMsgType}},
		"double": {connectOK, {flow.PubAck, flow.EndAnomaly, flow.AnomalyMissingPublish},
			{flow.Connect, flow.EndAnomaly, flow.AnomalyDoubleConnect}},
		"early":   {{flow.Publish, flow.EndOfFlow, flow.AnomalyUnintroducedMessage}},
		"badconn": {{flow.Connect, flow.EndAnomaly, flow.AnomalyMalformedTraffic}},
	} {
		require.Equal(t, w, summary(byPort[ports[name]]), "connection %s", name)
	}
	for _, name := range []string{"qos3", "reserved", "double"} {
		for _, r := range byPort[ports[name]] {
			require.Equal(t, name, r.SrcClientID+r.DstClientID[:0]+strings.TrimPrefix(r.DstClientID, flow.BrokerClientID),
				"%s flow names the connection's client", r.ControlType)
		}
	}
	require.Equal(t, uint16(5), byPort[ports["qos3"]][1].PacketID)
	require.Equal(t, "a/b", byPort[ports["qos3"]][1].Topic)
	require.Equal(t, uint16(77), byPort[ports["double"]][1].PacketID)
	require.Equal(t, uint64(5), st.Tracker.FlowsByEnd[flow.EndAnomaly])

	// tshark: the same packets, and its verdict where it has one.
	ts := tsharkVerdicts(t, file, port)
	for name, w := range map[string][]string{
		"qos3":     {"1", "2", "3"},
		"reserved": {"1", "2", "0"},
		"double":   {"1", "2", "4", "1"},
		"early":    {"3"},
		"badconn":  {"1"},
	} {
		var types []string
		for _, v := range ts[ports[name]] {
			types = append(types, v.msgtype)
		}
		require.Equal(t, w, types, "tshark's MQTT packets of %s", name)
	}
	// Where tshark flags a packet as malformed or with an expert warning,
	// the probe has an anomaly flow of that packet.
	flagged := 0
	for cp, vs := range ts {
		for _, v := range vs {
			if !v.malformed && !v.warn {
				continue
			}
			flagged++
			t.Logf("tshark flags MQTT type %s in frame %s: malformed=%t %s", v.msgtype, v.frame, v.malformed, v.expert)
			found := false
			for _, r := range byPort[cp] {
				if r.Anomalies != 0 && strconv.Itoa(int(r.ControlType)) == v.msgtype {
					found = true
				}
			}
			require.True(t, found, "tshark flags %+v of client port %d; probe flows %+v", v, cp, summary(byPort[cp]))
		}
	}
	require.Positive(t, flagged, "tshark flags some of these packets (the malformed CONNECT at least)")
	// What tshark dissects without flagging: the QoS 3 and the type 0.
	require.Equal(t, "3", ts[ports["qos3"]][2].qos, "tshark reads QoS 3")
	require.Equal(t, "0", ts[ports["reserved"]][2].msgtype, "tshark reads type 0")
	t.Logf("tshark flags %d of the anomalous packets", flagged)
}

type tsharkVerdict struct {
	frame     string
	msgtype   string
	malformed bool
	warn      bool
	expert    string
	qos       string // of a PUBLISH
}

// tsharkVerdicts dissects file and returns, by client port, each MQTT
// message's type and whether tshark called its frame malformed or raised
// an expert warning or error.
func tsharkVerdicts(t *testing.T, file string, port int) map[uint16][]tsharkVerdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tshark", "-r", file, "-d", fmt.Sprintf("tcp.port==%d,mqtt", port),
		"-Y", "mqtt", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=;",
		"-e", "frame.number", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "mqtt.msgtype",
		"-e", "_ws.malformed", "-e", "_ws.expert.severity", "-e", "_ws.expert.message", "-e", "mqtt.qos").CombinedOutput()
	require.NoError(t, err, "%s", out)
	res := map[uint16][]tsharkVerdict{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 8 {
			continue
		}
		sp, _ := strconv.Atoi(f[1])
		dp, _ := strconv.Atoi(f[2])
		cp := sp
		if sp == port {
			cp = dp
		}
		// Severity: 0x00800000 warning, 0x00c00000 error.
		warn := strings.Contains(f[5], "8388608") || strings.Contains(f[5], "12582912")
		for _, typ := range strings.Split(f[3], ";") {
			res[uint16(cp)] = append(res[uint16(cp)], tsharkVerdict{frame: f[0], msgtype: typ, malformed: f[4] != "", warn: warn,
				expert: f[6], qos: f[7]})
		}
	}
	return res
}
