package probe

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
)

// TestCoAPRealTraffic drives libcoap's coap-server with coap-client (every
// method, CON and NON, a 4.04, Observe with notifications, a Block1
// upload and a Block2 download of 4 KiB), captures the loopback with
// dumpcap, runs the probe over the capture and compares its CoAP flows
// with a reference built from tshark's dissection of the same capture:
// one flow per request (with the response tshark pairs with it,
// coap.response_in), per notification and per ping.
func TestCoAPRealTraffic(t *testing.T) {
	mqtttest.RequireTools(t, "coap-server-notls", "coap-client-notls", "tshark", "dumpcap")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	port := freeUDP(t)
	srv := exec.CommandContext(ctx, "coap-server-notls", "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-d", "8")
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	require.NoError(t, srv.Start())
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()

	file := filepath.Join(dir, "coap.pcap")
	capt := mqtttest.StartCapture(t, "", "lo", fmt.Sprintf("udp port %d", port), file)
	capt.WaitCapturing(t, func() {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_, _ = c.Write(nil) // an empty datagram: not CoAP, no flow
			_ = c.Close()
		}
	})
	base := fmt.Sprintf("coap://127.0.0.1:%d", port)
	big := filepath.Join(dir, "big.txt")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 256), 0o644)) // 4 KiB
	client := func(args ...string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, "coap-client-notls", append([]string{"-B", "3"}, args...)...).CombinedOutput()
		require.NoError(t, err, "coap-client %v: %s", args, out)
	}
	client(base + "/time")
	client("-N", base+"/time")
	client("-m", "put", "-b", "64", "-f", big, base+"/example_data") // Block1 upload
	client("-b", "64", base+"/example_data")                         // Block2 download
	client("-m", "post", "-e", "x", base+"/example_data")
	client("-m", "put", "-e", "new", base+"/dyn")
	client("-m", "delete", base+"/dyn")
	client("-N", "-m", "put", "-e", "non", base+"/example_data")
	client(base + "/nothing/here")  // 4.04
	client("-s", "4", base+"/time") // Observe
	capt.Stop(t)

	exp := &collectExporter{}
	p, err := New(Config{ReadFile: file, Protocols: []string{"coap"}, CoAPPorts: []uint16{uint16(port)}}, exp)
	require.NoError(t, err)
	require.NoError(t, p.Run(context.Background()))
	st := p.Stats()
	var got []string
	kinds := map[string]int{}
	for _, r := range exp.records() {
		require.Equal(t, flow.AppCoAP, r.ApplicationProtocol)
		require.NotNil(t, r.CoAP)
		got = append(got, coapLine(&r))
		switch {
		case r.CoAP.Code == 0:
			kinds["ping"]++
		case r.CoAP.Code>>5 != 0:
			kinds["notification"]++
		default:
			kinds["request "+coapparse.Code(r.CoAP.Method).Name()]++
			if r.CoAP.BlockOption != flow.BlockNone {
				kinds["block"]++
			}
		}
	}
	want := tsharkCoAPFlows(t, ctx, file, port)
	slices.Sort(got)
	slices.Sort(want)
	require.Equal(t, want, got, "probe flows vs tshark reference (stats %+v)", st.CoAP)
	t.Logf("%d flows: %v; coap stats %+v", len(got), kinds, st.CoAP)
	for _, k := range []string{"request GET", "request PUT", "request POST", "request DELETE", "notification", "block"} {
		require.Positive(t, kinds[k], k)
	}
	require.GreaterOrEqual(t, kinds["notification"], 2, "several notifications")
	require.GreaterOrEqual(t, kinds["block"], 2*4096/64, "a flow per block both ways")
}

func freeUDP(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// coapLine renders what the probe and the reference both know of a flow.
func coapLine(r *flow.Record) string {
	c := r.CoAP
	resp := "-"
	if c.ResponseCode != 0 {
		resp = coapparse.Code(c.ResponseCode).String()
	}
	obs := "-"
	if c.HasObserve && c.Code>>5 != 0 {
		obs = strconv.FormatUint(uint64(c.Observe), 10)
	}
	return fmt.Sprintf("%s:%d>%s:%d %s %s mid=%d tok=%s path=%q resp=%s obs=%s",
		r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort, coapparse.Type(c.Type), coapparse.Code(c.Code), c.MessageID,
		hex.EncodeToString(c.Token), c.URIPath, resp, obs)
}

// tsharkCoAPFlows builds the reference from tshark's fields alone: a flow
// per request (not a retransmission) with the code of the frame tshark
// names as its response; a flow per Empty CON (ping); a flow per
// response that no request names (a notification), with the URI of the
// registration (the request with its token).
func tsharkCoAPFlows(t *testing.T, ctx context.Context, file string, port int) []string {
	t.Helper()
	fields := []string{"frame.number", "ip.src", "udp.srcport", "ip.dst", "udp.dstport", "coap.type", "coap.code",
		"coap.mid", "coap.token", "coap.response_in", "coap.opt.uri_path", "coap.opt.observe", "coap.retransmitted"}
	args := []string{"-2", "-r", file, "-d", fmt.Sprintf("udp.port==%d,coap", port), "-Y", "coap", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.CommandContext(ctx, "tshark", args...).Output()
	require.NoError(t, err)
	type frame map[string]string
	var frames []frame
	byNum := map[string]frame{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		vals := strings.Split(line, "\t")
		f := frame{}
		for i, name := range fields {
			if i < len(vals) {
				f[name] = vals[i]
			}
		}
		frames = append(frames, f)
		byNum[f["frame.number"]] = f
	}
	typeNames := []string{"CON", "NON", "ACK", "RST"}
	code := func(s string) coapparse.Code { v, _ := strconv.Atoi(s); return coapparse.Code(v) }
	tok := func(s string) string { return strings.ReplaceAll(s, ":", "") }
	answered := map[string]bool{}
	paths := map[string]string{} // token → path of its request
	var want []string
	for _, f := range frames {
		ty, _ := strconv.Atoi(f["coap.type"])
		c := code(f["coap.code"])
		if f["coap.retransmitted"] != "" || ty > 1 && !(c.IsResponse()) {
			continue
		}
		src := f["ip.src"] + ":" + f["udp.srcport"] + ">" + f["ip.dst"] + ":" + f["udp.dstport"]
		mid := f["coap.mid"]
		switch {
		case c.IsEmpty() && ty == 0:
			want = append(want, fmt.Sprintf("%s CON 0.00 mid=%s tok= path=\"\" resp=- obs=-", src, mid))
		case c.IsRequest():
			path := ""
			if p := f["coap.opt.uri_path"]; p != "" {
				path = "/" + strings.ReplaceAll(p, ",", "/")
			}
			paths[tok(f["coap.token"])] = path
			resp := "-"
			if r := byNum[f["coap.response_in"]]; r != nil {
				resp = code(r["coap.code"]).String()
				answered[r["frame.number"]] = true
			}
			want = append(want, fmt.Sprintf("%s %s %s mid=%s tok=%s path=%q resp=%s obs=-", src, typeNames[ty], c, mid, tok(f["coap.token"]), path, resp))
		}
	}
	for _, f := range frames {
		ty, _ := strconv.Atoi(f["coap.type"])
		c := code(f["coap.code"])
		if !c.IsResponse() || answered[f["frame.number"]] || ty > 1 || f["coap.retransmitted"] != "" {
			continue
		}
		src := f["ip.src"] + ":" + f["udp.srcport"] + ">" + f["ip.dst"] + ":" + f["udp.dstport"]
		obs := f["coap.opt.observe"]
		if obs == "" {
			obs = "-"
		}
		want = append(want, fmt.Sprintf("%s %s %s mid=%s tok=%s path=%q resp=%s obs=%s", src, typeNames[ty], c, f["coap.mid"],
			tok(f["coap.token"]), paths[tok(f["coap.token"])], c, obs))
	}
	return want
}
