package probe

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/probe/coaptrack"
)

// TestCoAPRealTraffic drives libcoap's coap-server with coap-client over
// IPv4 and IPv6 (every method, CON and NON, piggybacked and separate
// responses, a 4.04, Observe with notifications and deregistration, pings,
// Block1 uploads and Block2 downloads of 4 KiB, a block-wise
// notification, NON notifications), captures the loopback
// with dumpcap, runs the probe over the capture and compares every CoAP
// flow, field by field (packets, octets, start and end time, block,
// content format, Observe, retransmissions, payload length, response
// code, end reason), with a reference built from tshark's dissection of
// the same capture (coapReference).
func TestCoAPRealTraffic(t *testing.T) {
	mqtttest.RequireTools(t, "coap-server-notls", "coap-client-notls", "tshark", "dumpcap")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	port := freeUDP6(t)
	startCoAPServer(t, ctx, "::", port) // both families
	nonPort := freeUDP(t)
	startCoAPServer(t, ctx, "127.0.0.1", nonPort, "-N") // NON notifications, every fifth CON
	file := filepath.Join(dir, "coap.pcap")
	capt := mqtttest.StartCapture(t, "", "lo", fmt.Sprintf("udp port %d or udp port %d", port, nonPort), file)
	capt.WaitCapturing(t, func() {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_, _ = c.Write(nil) // an empty datagram: not CoAP, no flow
			_ = c.Close()
		}
	})
	v4 := fmt.Sprintf("coap://127.0.0.1:%d", port)
	v6 := fmt.Sprintf("coap://[::1]:%d", port)
	big := filepath.Join(dir, "big.txt")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 256), 0o644)) // 4 KiB
	client := func(args ...string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, "coap-client-notls", append([]string{"-B", "3"}, args...)...).CombinedOutput()
		require.NoError(t, err, "coap-client %v: %s", args, out)
	}
	// Beside the rest, on its own server: an observation with NON notifications.
	var nonOut bytes.Buffer
	nonObserver := exec.CommandContext(ctx, "coap-client-notls", "-B", "9", "-s", "7", fmt.Sprintf("coap://127.0.0.1:%d/time", nonPort))
	nonObserver.Stdout, nonObserver.Stderr = &nonOut, &nonOut
	require.NoError(t, nonObserver.Start())
	for _, base := range []string{v4, v6} {
		client(base + "/time")                                           // CON GET, piggybacked 2.05
		client("-N", base+"/time")                                       // NON GET, NON 2.05
		client(base + "/async?1")                                        // empty ACK, then a separate CON 2.05
		client("-N", base+"/async?1")                                    // NON GET, separate NON 2.05
		client("-m", "put", "-b", "64", "-f", big, base+"/example_data") // Block1 upload
		client("-b", "64", base+"/example_data")                         // Block2 download
		client("-m", "post", "-e", "x", base+"/example_data")
		client("-m", "put", "-t", "50", "-e", "{}", base+"/dyn") // Content-Format
		client("-m", "delete", base+"/dyn")
		client("-N", "-m", "put", "-e", "non", base+"/example_data")
		client(base + "/nothing/here")               // 4.04
		client("-A", "40", base+"/.well-known/core") // a response with Content-Format
	}
	client("-s", "4", v4+"/time")                               // Observe: notifications, deregistration
	client("-B", "4", "-s", "3", "-K", "1", v6+"/example_data") // an idle observation: pings, RST
	// A notification caused by another client's PUT, too big for one
	// message: Block2, the observer fetches the rest.
	observer := exec.CommandContext(ctx, "coap-client-notls", "-B", "5", "-s", "3", v4+"/example_data")
	require.NoError(t, observer.Start())
	time.Sleep(time.Second)
	client("-m", "put", "-b", "1024", "-f", big, v4+"/example_data")
	require.NoError(t, observer.Wait())
	require.NoError(t, nonObserver.Wait(), "coap-client: %s", &nonOut)
	capt.Stop(t)

	exp := &collectExporter{}
	p, err := New(Config{ReadFile: file, Protocols: []string{"coap"}, CoAPPorts: []uint16{uint16(port), uint16(nonPort)},
		CoAP: coaptrack.Config{IdleTimeout: 10 * time.Minute}}, exp)
	require.NoError(t, err)
	require.NoError(t, p.Run(context.Background()))
	st := p.Stats()
	frames := tsharkCoAPFrames(t, ctx, file, port, nonPort)
	want, ref := coapReference(t, frames)
	requireSameCoAPFlows(t, want, exp.records())
	requireCoAPAccounting(t, len(frames), st.CoAP, exp.records())
	require.Equal(t, ref, coapRefStats{Retransmissions: int(st.CoAP.Retransmissions), Duplicates: int(st.CoAP.Duplicates),
		Unmatched: int(st.CoAP.Unmatched), Ignored: int(st.CoAP.Ignored)}, "probe stats %+v", st.CoAP)

	kinds := map[string]int{}
	for _, x := range want {
		k := x.kind
		switch {
		case x.kind == "request":
			k = fmt.Sprintf("%s %s", [...]string{"CON", "NON"}[x.first.typ], coapparse.Code(x.method).Name())
			if x.block != "-" {
				kinds[x.block[:2]]++
			}
			if x.resp == int(coapparse.NotFound) {
				kinds["4.04"]++
			}
			if x.first.src.Addr().Is6() {
				kinds["IPv6"]++
			}
		case x.kind == "notification" && x.hasObs:
			kinds["notification with Observe"]++
			kinds[[...]string{"CON", "NON"}[x.first.typ]+" notification"]++
			if strings.HasPrefix(x.block, "B2:0/1/") {
				kinds["notification, first of its blocks"]++
			}
		}
		kinds[k]++
		if x.respMid != nil && x.kind == "request" {
			kinds["separate "+[...]string{"CON", "NON"}[x.first.typ]]++
		}
	}
	separate := 0
	for _, x := range want {
		if x.kind == "request" && x.path == "/async" && x.hasResp {
			separate++
		}
	}
	for _, x := range want {
		if x.block == "-" {
			t.Log(x.line())
		}
	}
	t.Logf("%d flows: %v; reference %+v; coap stats %+v", len(want), kinds, ref, st.CoAP)
	for _, k := range []string{"CON GET", "NON GET", "CON PUT", "NON PUT", "CON POST", "CON DELETE", "ping", "4.04", "IPv6", "separate CON"} {
		require.Positive(t, kinds[k], k)
	}
	require.Equal(t, 4, separate, "separate responses: /async over CON and NON, both families")
	require.GreaterOrEqual(t, kinds["notification with Observe"], 2, "several notifications")
	require.GreaterOrEqual(t, kinds["NON notification"], 2, "NON notifications")
	require.Positive(t, kinds["CON notification"], "CON notifications")
	require.Positive(t, kinds["notification, first of its blocks"], "a block-wise notification")
	require.GreaterOrEqual(t, kinds["B1"], 2*4096/64, "a flow per Block1 block, both families")
	require.GreaterOrEqual(t, kinds["B2"], 2*4096/64, "a flow per Block2 block, both families")
}

func freeUDP(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// freeUDP6 returns a UDP port that was free on the IPv6 (and IPv4)
// wildcard address.
func freeUDP6(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified})
	require.NoError(t, err)
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startCoAPServer runs libcoap's example server on addr and port until the
// test ends.
func startCoAPServer(t *testing.T, ctx context.Context, addr string, port int, args ...string) {
	t.Helper()
	srv := exec.CommandContext(ctx, "coap-server-notls", append([]string{"-A", addr, "-p", strconv.Itoa(port), "-d", "8"}, args...)...)
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
}

// TestCoAPLossyLink runs a handful of exchanges through a UDP relay that
// drops every third datagram each way, so libcoap retransmits its CON
// messages (ACK_TIMEOUT 2 s, random factor 1.5), and checks the probe's
// flows against the tshark reference. One capture holds both legs of the
// relay, and the reference (like the probe) reads both, because each
// shows a different half of the loss: the client leg (client ↔ relay)
// has everything the client sent, so a request or ACK lost after it
// shows up as a retransmission that joins its open exchange; the server
// leg (relay ↔ server) has everything the server sent, so when its
// answer is lost the client's retransmission reaches it after the
// exchange completed there, a duplicate that must not open a flow. Two
// more relays lose fixed datagrams beside it: the empty ACK and the
// separate response of one /async exchange (the server then ACKs the
// client's copy of the request inside the exchange), and the piggybacked
// response of one GET (the copy and the second ACK are duplicates on the
// server leg).
func TestCoAPLossyLink(t *testing.T) {
	mqtttest.RequireTools(t, "coap-server-notls", "coap-client-notls", "tshark", "dumpcap")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	began := time.Now()
	port := freeUDP(t)
	startCoAPServer(t, ctx, "127.0.0.1", port)
	srvAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	relay := newLossyRelay(t, srvAddr, everyNth(3))
	// A burst: the empty ACK and the separate response both lost, so the
	// client retransmits its request after the server sent the response.
	burst := newLossyRelay(t, srvAddr, func(dir, n int) bool { return dir == toClient && n <= 2 })
	// The piggybacked response lost: the client's copy of the request and
	// the server's second ACK reach the server leg after the exchange
	// completed there (duplicates).
	ackLost := newLossyRelay(t, srvAddr, func(dir, n int) bool { return dir == toClient && n == 1 })
	relays := []*lossyRelay{relay, burst, ackLost}
	filter, ports := fmt.Sprintf("udp port %d", port), []int{port}
	for _, r := range relays {
		filter += fmt.Sprintf(" or udp port %d", r.port())
		ports = append(ports, r.port())
	}
	file := filepath.Join(t.TempDir(), "lossy.pcap")
	capt := mqtttest.StartCapture(t, "", "lo", filter, file)
	capt.WaitCapturing(t, func() {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_, _ = c.Write(nil) // an empty datagram: not CoAP, no flow
			_ = c.Close()
		}
	})
	base := fmt.Sprintf("coap://127.0.0.1:%d", relay.port())
	client := func(wait string, args ...string) {
		// A lost NON or a CON lost too often fails the client; the
		// capture is what is compared, so only log it.
		out, err := exec.CommandContext(ctx, "coap-client-notls", append([]string{"-B", wait}, args...)...).CombinedOutput()
		if err != nil {
			t.Logf("coap-client %v: %v: %s", args, err, out)
		}
	}
	var bursts sync.WaitGroup // beside the every-third relay's sequence, which they do not touch
	bursts.Go(func() {
		client("15", fmt.Sprintf("coap://127.0.0.1:%d/async?1", burst.port()))
		client("15", fmt.Sprintf("coap://127.0.0.1:%d/time", ackLost.port()))
	})
	client("15", base+"/time")
	client("15", "-m", "put", "-e", "lossy", base+"/example_data")
	client("15", base+"/async?1") // separate CON response
	client("15", base+"/nothing/here")
	client("3", "-N", base+"/time")
	client("15", "-m", "put", "-b", "16", "-e", "0123456789abcdef0123456789abcdef", base+"/example_data") // 2 Block1 blocks
	client("15", "-s", "3", base+"/time")                                                                 // notifications, some lost
	bursts.Wait()
	capt.Stop(t)
	seen, dropped := relay.counts()
	for _, r := range relays {
		r.close()
	}

	exp := &collectExporter{}
	var coapPorts []uint16
	for _, p := range ports {
		coapPorts = append(coapPorts, uint16(p))
	}
	p, err := New(Config{ReadFile: file, Protocols: []string{"coap"}, CoAPPorts: coapPorts,
		CoAP: coaptrack.Config{IdleTimeout: 10 * time.Minute}}, exp)
	require.NoError(t, err)
	require.NoError(t, p.Run(context.Background()))
	st := p.Stats()
	frames := tsharkCoAPFrames(t, ctx, file, ports...)
	want, ref := coapReference(t, frames)
	requireSameCoAPFlows(t, want, exp.records())
	requireCoAPAccounting(t, len(frames), st.CoAP, exp.records())
	require.Equal(t, ref, coapRefStats{Retransmissions: int(st.CoAP.Retransmissions), Duplicates: int(st.CoAP.Duplicates),
		Unmatched: int(st.CoAP.Unmatched), Ignored: int(st.CoAP.Ignored)}, "probe stats %+v", st.CoAP)
	var retransmitted, burstServer, ackLostClient []string
	for _, x := range want {
		if x.retrans > 0 {
			retransmitted = append(retransmitted, x.line())
		}
		switch {
		case x.dst.Port() == uint16(port) && x.ackedCopyAfterResponse():
			burstServer = append(burstServer, x.line()) // req, ACK, resp, req copy, ACK, …, the client's ACK
		case x.dst.Port() == uint16(ackLost.port()) && x.retrans == 1 && x.packets == 3:
			ackLostClient = append(ackLostClient, x.line()) // req, req copy, ACK
		}
	}
	t.Logf("%d flows in %v; every-third relay seen %v dropped %v; reference %+v; coap stats %+v", len(want),
		time.Since(began).Round(time.Second), seen, dropped, ref, st.CoAP)
	for _, l := range retransmitted {
		t.Log("retransmitted: ", l)
	}
	require.Positive(t, dropped[toServer], "datagrams dropped on the way to the server")
	require.Positive(t, dropped[toClient], "datagrams dropped on the way to the clients")
	require.NotEmpty(t, retransmitted, "flows with retransmissions")
	require.NotEmpty(t, burstServer, "the burst: the server's ACK of the request copy, inside the exchange")
	require.Len(t, ackLostClient, 1, "the lost piggybacked ACK: the request copy joins on the client leg")
	require.GreaterOrEqual(t, ref.Duplicates, 2, "the lost piggybacked ACK: duplicates on the server leg")
}
