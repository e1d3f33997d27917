package coapparse

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

// TestDifferentialLibcoap runs libcoap's coap-server on loopback and drives
// it with coap-client (CON and NON requests with every method, query,
// Accept, Block1 upload, Block2 download, Observe, pings, unknown options,
// a proxy request) through a UDP relay written here that records every
// datagram both ways. The datagrams are decoded by Decode and written to a
// pcap that tshark dissects; every field both give must agree. It needs
// libcoap3-bin and tshark and fails (never skips) without them.
func TestDifferentialLibcoap(t *testing.T) {
	for bin, pkg := range map[string]string{"coap-server-notls": "libcoap3-bin", "coap-client-notls": "libcoap3-bin", "tshark": "tshark"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: apt-get install %s (%v)", bin, pkg, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()

	srvPort := freeUDPPort(t)
	srv := exec.CommandContext(ctx, "coap-server-notls", "-A", "127.0.0.1", "-p", strconv.Itoa(srvPort), "-d", "4")
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	require.NoError(t, srv.Start())
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	waitCoAP(t, srvPort)

	r := newRelay(t, srvPort)
	defer r.close()
	base := fmt.Sprintf("coap://127.0.0.1:%d", r.port())
	big := filepath.Join(dir, "big.txt")
	require.NoError(t, os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 25), 0o644)) // 400 bytes

	client := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "coap-client-notls", append([]string{"-B", "3"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "coap-client %v: %s", args, out)
	}
	client(base + "/time?ticks")                                                // CON GET with query, 2.05
	client("-N", base+"/time")                                                  // NON GET, NON 2.05
	client("-b", "16", base+"/")                                                // Block2 download in 16-byte blocks
	client("-m", "put", "-t", "0", "-b", "32", "-f", big, base+"/example_data") // Block1 upload: Size1, Request-Tag
	client("-b", "64", base+"/example_data")                                    // Block2 with ETag and Size2
	client("-m", "post", "-e", "x", base+"/example_data")                       // 4.05
	client("-m", "fetch", "-e", "x", base+"/example_data")                      // FETCH
	client("-m", "patch", "-e", "x", base+"/example_data")                      // PATCH
	client("-m", "ipatch", "-e", "x", base+"/example_data")                     // iPATCH
	client("-A", "40", base+"/.well-known/core")                                // Accept, link-format
	client("-O", "2000,0xabcd", "-O", "65001,x", base+"/time")                  // unknown elective + critical: 4.02
	client("-m", "put", "-e", "small", base+"/example_data")                    // 2.04
	client("-m", "put", "-e", "new", base+"/dyn")                               // dynamic resource: 2.01
	client("-m", "delete", base+"/dyn")                                         // 2.02
	client(base + "/nothing/here")                                              // 4.04
	client("-P", base, "coap://example.org/x")                                  // Proxy-Uri, Hop-Limit: 5.05
	client("-s", "3", base+"/time")                                             // Observe: registration, notifications
	client("-B", "4", "-s", "3", "-K", "1", base+"/example_data")               // idle observe: CON Empty pings, RST
	r.close()

	recs := r.records()
	pcapFile := filepath.Join(dir, "coap.pcap")
	writePcap(t, pcapFile, recs, srvPort)
	frames := tsharkCoAP(t, ctx, pcapFile, srvPort)
	require.Len(t, frames, len(recs), "tshark frames vs recorded datagrams")

	cov := map[string]int{}
	seen := map[string]int{}
	for i, rec := range recs {
		var m Message
		err := Decode(rec.data, &m)
		where := fmt.Sprintf("datagram %d (% x)", i, rec.data)
		require.True(t, err == nil || err == ErrViolation, "%s: %v", where, err)
		if err == ErrViolation {
			// Only the critical option this test sends on purpose.
			require.Equal(t, ViolationUnknownCritical, m.Violations, where)
			require.True(t, m.Has(65001), where)
		}
		compareTshark(t, where, frames[i], rec.data, &m, cov)
		seen[m.Type.String()+" "+m.Code.String()]++
		for _, o := range m.Options() {
			seen[o.Number.String()]++
		}
	}
	t.Logf("compared %d datagrams with tshark; fields compared: %v; seen: %v", len(recs), cov, seen)
	for _, want := range []string{"CON 0.00", "RST 0.00", "ACK 0.00", "CON 0.01", "NON 0.01", "CON 0.02", "CON 0.03", "CON 0.04",
		"CON 0.05", "CON 0.06", "CON 0.07", "ACK 2.01", "ACK 2.02", "ACK 2.04", "ACK 2.05", "CON 2.05", "NON 2.05", "ACK 2.31", "ACK 4.02",
		"ACK 4.04", "ACK 4.05", "ACK 5.05",
		"Uri-Port", "Uri-Path", "Uri-Query", "Accept", "Content-Format", "Block1", "Block2", "Size1", "Size2",
		"ETag", "Observe", "Proxy-Uri", "Hop-Limit", "Max-Age", "Request-Tag", "Option(2000)", "Option(65001)"} {
		require.Positive(t, seen[want], "no %s in the exchanges", want)
	}
	for _, f := range []string{"type", "code", "mid", "token", "opt_number", "opt_length", "opt_delta", "uri_path",
		"uri_query", "uri_port", "block_number", "block_mflag", "block_size", "observe", "etag", "ctype", "accept",
		"size1", "size2", "payload_length", "proxy_uri", "hop_limit", "max_age", "unknown"} {
		require.Positive(t, cov[f], "field %s never compared", f)
	}
}

type record struct {
	toServer bool
	clientPt int
	at       time.Time
	data     []byte
}

// relay forwards datagrams between the current client and the server and
// records each one.
type relay struct {
	front, back *net.UDPConn
	wg          sync.WaitGroup
	once        sync.Once
	mu          sync.Mutex
	client      *net.UDPAddr
	recs        []record
}

func newRelay(t *testing.T, srvPort int) *relay {
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	back, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srvPort})
	require.NoError(t, err)
	r := &relay{front: front, back: back}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.client = from
			r.recs = append(r.recs, record{true, from.Port, time.Now(), bytes.Clone(buf[:n])})
			r.mu.Unlock()
			_, _ = back.Write(buf[:n])
		}
	}()
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP port unreachable from an earlier client
			}
			r.mu.Lock()
			to := r.client
			if to != nil {
				r.recs = append(r.recs, record{false, to.Port, time.Now(), bytes.Clone(buf[:n])})
			}
			r.mu.Unlock()
			if to != nil {
				_, _ = front.WriteToUDP(buf[:n], to)
			}
		}
	}()
	return r
}

func (r *relay) port() int { return r.front.LocalAddr().(*net.UDPAddr).Port }

func (r *relay) close() {
	r.once.Do(func() {
		_ = r.front.Close()
		_ = r.back.Close()
		r.wg.Wait()
	})
}

func (r *relay) records() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// writePcap writes the datagrams as Ethernet/IPv4/UDP frames between the
// client's port and the server's.
func writePcap(t *testing.T, file string, recs []record, srvPort int) {
	f, err := os.Create(file)
	require.NoError(t, err)
	defer f.Close()
	w := pcapgo.NewWriter(f)
	require.NoError(t, w.WriteFileHeader(65536, layers.LinkTypeEthernet))
	for _, rec := range recs {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{0, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1)}
		udp := &layers.UDP{SrcPort: layers.UDPPort(rec.clientPt), DstPort: layers.UDPPort(srvPort)}
		if !rec.toServer {
			udp.SrcPort, udp.DstPort = udp.DstPort, udp.SrcPort
		}
		require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
		buf := gopacket.NewSerializeBuffer()
		require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, udp, gopacket.Payload(rec.data)))
		b := buf.Bytes()
		require.NoError(t, w.WritePacket(gopacket.CaptureInfo{Timestamp: rec.at, CaptureLength: len(b), Length: len(b)}, b))
	}
}

// tsharkCoAP returns, per frame, the udp and coap fields of tshark's
// elastic JSON output, each as a list of strings.
func tsharkCoAP(t *testing.T, ctx context.Context, file string, port int) []map[string][]string {
	cmd := exec.CommandContext(ctx, "tshark", "-r", file, "-d", fmt.Sprintf("udp.port==%d,coap", port), "-T", "ek", "-J", "udp coap")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "tshark: %s", stderr.String())
	var frames []map[string][]string
	for line := range bytes.Lines(out) {
		var doc struct {
			Layers map[string]map[string]json.RawMessage `json:"layers"`
		}
		require.NoError(t, json.Unmarshal(line, &doc))
		if doc.Layers == nil {
			continue // index line
		}
		fields := map[string][]string{}
		for layer, fs := range doc.Layers {
			if layer != "udp" && layer != "coap" && layer != "_ws_malformed" {
				continue
			}
			if layer == "_ws_malformed" {
				fields["malformed"] = []string{"1"}
			}
			for k, raw := range fs {
				var one string
				var many []string
				switch {
				case json.Unmarshal(raw, &one) == nil:
					fields[k] = []string{one}
				case json.Unmarshal(raw, &many) == nil:
					fields[k] = many
				}
			}
		}
		frames = append(frames, fields)
	}
	return frames
}

// ctypeNames maps the Content-Format numbers this test sees to tshark's names.
var ctypeNames = map[uint32]string{0: "text/plain; charset=utf-8", 40: "application/link-format",
	42: "application/octet-stream", 50: "application/json"}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func unhex(s string) string { return strings.ReplaceAll(s, ":", "") }

// compareTshark checks every field tshark gives for one datagram against
// our decode; cov counts the fields compared.
func compareTshark(t *testing.T, where string, f map[string][]string, data []byte, m *Message, cov map[string]int) {
	t.Helper()
	eq := func(field string, want []string, got []string) {
		t.Helper()
		if len(want) == 0 && len(got) == 0 {
			return
		}
		require.Equal(t, want, got, "%s: %s", where, field)
		cov[field]++
	}
	num := func(k string) []string { return f["coap_coap_"+k] }
	require.Empty(t, f["malformed"], "%s: tshark says malformed", where)
	_, malformed := f["_ws_malformed"]
	require.False(t, malformed, "%s: tshark says malformed: %v", where, f)
	require.Equal(t, []string{hex.EncodeToString(data)}, []string{unhex(f["udp_udp_payload"][0])}, where)
	eq("version", num("version"), []string{"1"})
	eq("type", num("type"), []string{strconv.Itoa(int(m.Type))})
	eq("token_len", num("token_len"), []string{strconv.Itoa(len(m.Token))})
	eq("code", num("code"), []string{strconv.Itoa(int(m.Code))})
	eq("mid", num("mid"), []string{strconv.Itoa(int(m.MessageID))})
	if len(m.Token) > 0 {
		eq("token", []string{unhex(num("token")[0])}, []string{hexOf(m.Token)})
	}

	var numbers, lengths, deltas []string
	prev := OptionNumber(0)
	for _, o := range m.Options() {
		c, u := "Elective", "Safe"
		if o.Number.Critical() {
			c = "Critical"
		}
		if o.Number.Unsafe() {
			u = "Unsafe"
		}
		desc := fmt.Sprintf("Type %d, %s, %s", o.Number, c, u)
		if !o.Number.Unsafe() && o.Number.NoCacheKey() {
			desc += ", NoCacheKey"
		}
		numbers = append(numbers, desc)
		ln, _ := nibble(len(o.Value))
		dn, _ := nibble(int(o.Number - prev))
		lengths = append(lengths, strconv.Itoa(int(ln)))
		deltas = append(deltas, strconv.Itoa(int(dn)))
		prev = o.Number
	}
	eq("opt_number", num("opt_desc"), numbers)
	eq("opt_length", num("opt_length"), lengths)
	eq("opt_delta", num("opt_delta"), deltas)

	strs := func(n OptionNumber) []string {
		var out []string
		for v := range m.Values(n) {
			out = append(out, string(v))
		}
		return out
	}
	uints := func(n OptionNumber) []string {
		var out []string
		for v := range m.Values(n) {
			x, ok := DecodeUint(v)
			require.True(t, ok, where)
			out = append(out, strconv.FormatUint(uint64(x), 10))
		}
		return out
	}
	hexes := func(n OptionNumber) []string {
		var out []string
		for v := range m.Values(n) {
			out = append(out, hexOf(v))
		}
		return out
	}
	unhexAll := func(in []string) []string {
		var out []string
		for _, s := range in {
			out = append(out, unhex(s))
		}
		return out
	}
	eq("uri_path", num("opt_uri_path"), strs(URIPath))
	eq("uri_query", num("opt_uri_query"), strs(URIQuery))
	eq("uri_host", num("opt_uri_host"), strs(URIHost))
	eq("location_path", num("opt_location_path"), strs(LocationPath))
	eq("location_query", num("opt_location_query"), strs(LocationQuery))
	eq("proxy_uri", num("opt_proxy_uri"), strs(ProxyURI))
	eq("proxy_scheme", num("opt_proxy_scheme"), strs(ProxyScheme))
	eq("uri_port", num("opt_uri_port"), uints(URIPort))
	eq("observe", num("opt_observe"), uints(Observe))
	eq("max_age", num("opt_max_age"), uints(MaxAge))
	eq("size1", num("opt_size1"), uints(Size1))
	eq("hop_limit", num("opt_hop_limit"), uints(HopLimit))
	eq("etag", unhexAll(num("opt_etag")), hexes(ETag))

	// Options tshark does not know (Request-Tag among them); it must not
	// know one we do not.
	theirUnknown := map[OptionNumber]bool{}
	for _, name := range num("opt_name") {
		var i, n int
		if _, err := fmt.Sscanf(name, "#%d: Unknown Option (%d)", &i, &n); err == nil {
			theirUnknown[OptionNumber(n)] = true
		}
	}
	var unknown []string
	var bn, bm, bs []string
	for _, o := range m.Options() {
		if !o.Number.Known() {
			require.True(t, theirUnknown[o.Number], "%s: tshark knows option %d", where, o.Number)
		}
		if theirUnknown[o.Number] {
			unknown = append(unknown, hexOf(o.Value))
		}
		if o.Number == Block1 || o.Number == Block2 {
			b, ok := ParseBlock(o.Value)
			require.True(t, ok, where)
			bn = append(bn, strconv.FormatUint(uint64(b.Num), 10))
			bm = append(bm, map[bool]string{false: "0", true: "1"}[b.More])
			bs = append(bs, strconv.Itoa(int(b.SZX)))
			require.Equal(t, 16<<b.SZX, b.Size, where)
		}
		if o.Number == Size2 && len(o.Value) > 0 {
			// tshark has no Size2 field: it shows the low 3 bits of the
			// value as a Block option's encoded size.
			bs = append(bs, strconv.Itoa(int(o.Value[len(o.Value)-1]&7)))
			cov["size2"]++
		}
	}
	eq("unknown", unhexAll(num("opt_unknown")), unknown)
	eq("block_number", num("opt_block_number"), bn)
	eq("block_mflag", num("opt_block_mflag"), bm)
	eq("block_size", num("opt_block_size"), bs)

	names := func(n OptionNumber) []string {
		var out []string
		for v := range m.Values(n) {
			x, _ := DecodeUint(v)
			name, ok := ctypeNames[x]
			require.True(t, ok, "%s: content format %d not in ctypeNames", where, x)
			out = append(out, name)
		}
		return out
	}
	eq("ctype", num("opt_ctype"), names(ContentFormat))
	eq("accept", num("opt_accept"), names(Accept))

	if m.Payload != nil {
		// In a Block1/Block2 transfer tshark reassembles: block_length is this
		// block's payload, payload_length the whole body on the last block.
		pl := num("block_length")
		if pl == nil {
			pl = num("payload_length")
		}
		eq("payload_length", pl, []string{strconv.Itoa(len(m.Payload))})
		eq("end_marker", num("opt_end_marker"), []string{"255"})
	} else {
		require.Empty(t, num("opt_end_marker"), where)
	}
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := c.LocalAddr().(*net.UDPAddr).Port
	require.NoError(t, c.Close())
	return port
}

// waitCoAP pings the server (CON Empty) until it answers with a Reset.
func waitCoAP(t *testing.T, port int) {
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	require.NoError(t, err)
	defer c.Close()
	ping, err := AppendMessage(nil, &Message{Type: Confirmable, Code: Empty, MessageID: 1})
	require.NoError(t, err)
	buf := make([]byte, 64)
	for range 100 {
		_, _ = c.Write(ping)
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			var m Message
			require.NoError(t, Decode(buf[:n], &m))
			require.Equal(t, Reset, m.Type)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("coap-server did not answer on %d", port)
}
