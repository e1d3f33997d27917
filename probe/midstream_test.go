package probe

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/mqttparse"
	"github.com/mission-ids/mission/probe/tracker"
)

// segInfo is what the cut tests need to know of one data segment: its
// direction, whether it starts at an MQTT packet boundary (known from the
// whole capture, framed from the SYN), and whether its connection's SYN is
// in the frames kept.
type segInfo struct {
	conn     string // canonical endpoints
	dir      string // src>dst
	boundary bool
	syn      bool
}

// endpointsOf returns the canonical connection key and direction of a frame.
func endpointsOf(data []byte, lt layers.LinkType) (conn, dir string, tcp *layers.TCP) {
	p := gopacket.NewPacket(data, lt, gopacket.NoCopy)
	tcp, _ = p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	var src, dst netip.Addr
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	} else if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	a := netip.AddrPortFrom(src.Unmap(), uint16(tcp.SrcPort)).String()
	b := netip.AddrPortFrom(dst.Unmap(), uint16(tcp.DstPort)).String()
	dir = a + ">" + b
	if a < b {
		return a + "|" + b, dir, tcp
	}
	return b + "|" + a, dir, tcp
}

// frameBoundaries marks, for every frame of a loss-free capture, whether
// its payload starts at an MQTT packet boundary of its direction.
func frameBoundaries(t *testing.T, pkts []pkt, lt layers.LinkType) []segInfo {
	type dirStream struct {
		next   uint32 // next expected sequence number
		init   bool
		toNext int // bytes to the next packet start from next
		hdr    []byte
	}
	streams := map[string]*dirStream{}
	out := make([]segInfo, len(pkts))
	for i, p := range pkts {
		conn, dir, tcp := endpointsOf(p.data, lt)
		out[i] = segInfo{conn: conn, dir: dir}
		s := streams[dir]
		if s == nil {
			s = &dirStream{}
			streams[dir] = s
		}
		if tcp.SYN {
			s.next, s.init = tcp.Seq+1, true
			continue
		}
		if len(tcp.Payload) == 0 || !s.init {
			continue
		}
		pay := tcp.Payload
		if d := int32(tcp.Seq - s.next); d < 0 {
			if int(-d) >= len(pay) {
				continue // retransmission
			}
			pay = pay[-d:]
		}
		out[i].boundary = s.toNext == 0 && len(s.hdr) == 0
		for len(pay) > 0 {
			if s.toNext > 0 {
				n := min(s.toNext, len(pay))
				s.toNext -= n
				pay = pay[n:]
				s.next += uint32(n)
				continue
			}
			s.hdr = append(s.hdr, pay[0])
			pay = pay[1:]
			s.next++
			h, err := mqttparse.ParseFixedHeader(s.hdr)
			if err == mqttparse.ErrIncomplete {
				continue
			}
			require.NoError(t, err, "frame %d", i+1)
			s.toNext = h.Len() - len(s.hdr)
			s.hdr = s.hdr[:0]
		}
	}
	return out
}

// cutResult is the comparison of a cut capture's flows with the whole's.
type cutResult struct {
	want, produced, prefix, wrong int
}

// compareCut runs the probe on pkts[from:] and compares its flows with
// the whole capture's (ref): every flow of a connection that starts at or
// after the first segment of each of its directions that begins at a
// packet boundary must be there, with the same fields and capture times
// (identity fields blanked when the connection's CONNECT is not in the
// cut); every flow produced must be one of the whole capture's, or an
// honest prefix of one.
func compareCut(t *testing.T, dir string, lt layers.LinkType, pkts []pkt, info []segInfo, from, port int, ref []flow.Record) cutResult {
	file := filepath.Join(dir, fmt.Sprintf("cut-%d.pcap", from))
	writePackets(t, file, lt, pkts[from:], stampsOf(pkts[from:]))
	got, _ := runOffline(t, file, port)

	first := map[string]int64{}  // direction → time of its first boundary segment in the cut
	hasData := map[string]bool{} // direction has data in the cut
	syn := map[string]bool{}     // connection's SYN is in the cut
	for i := from; i < len(pkts); i++ {
		in := info[i]
		if pkts[i].n == 0 {
			_, _, tcp := endpointsOf(pkts[i].data, lt)
			if tcp.SYN {
				syn[in.conn] = true
			}
			continue
		}
		hasData[in.dir] = true
		if _, ok := first[in.dir]; !ok && in.boundary {
			first[in.dir] = pkts[i].ci.Timestamp.UnixNano()
		}
	}
	cutAt := pkts[from].ci.Timestamp.UnixNano()
	eligible := func(r *flow.Record) (ok, midstream bool) {
		a := netip.AddrPortFrom(r.SrcAddr.Unmap(), r.SrcPort).String()
		b := netip.AddrPortFrom(r.DstAddr.Unmap(), r.DstPort).String()
		conn := a + "|" + b
		if b < a {
			conn = b + "|" + a
		}
		start := r.Start.UnixNano()
		if start < cutAt {
			return false, false
		}
		if syn[conn] {
			return true, false
		}
		for _, d := range []string{a + ">" + b, b + ">" + a} {
			if !hasData[d] {
				continue
			}
			f, ok := first[d]
			if !ok || start < f {
				return false, true
			}
		}
		return true, true
	}
	norm := func(r *flow.Record, mid bool) string {
		if mid {
			return flowLine(unknownSession(r), true)
		}
		return flowLine(r, true)
	}
	// Lines of the reference, by whether the connection is midstream.
	wantLines := map[string]int{}
	allLines := map[[2]string]int{} // any reference flow, both normalisations
	var res cutResult
	for i := range ref {
		r := &ref[i]
		allLines[[2]string{norm(r, false), norm(r, true)}]++
		if ok, mid := eligible(r); ok {
			wantLines[norm(r, mid)]++
			res.want++
		}
	}
	refIdentity := map[string]bool{}
	for i := range ref {
		refIdentity[identity(unknownSession(&ref[i]))] = true
		refIdentity[identity(&ref[i])] = true
	}
	var wrong []string
	for i := range got {
		g := &got[i]
		_, mid := eligible(g)
		mid = mid || g.ProtocolVersion == 0
		l := norm(g, mid)
		if wantLines[l] > 0 {
			wantLines[l]--
			res.produced++
			continue
		}
		found := false
		for k := range allLines {
			if k[0] == l || k[1] == l {
				found = true
				break
			}
		}
		if found {
			continue
		}
		if g.EndReason != flow.EndOfFlow && (refIdentity[identity(unknownSession(g))] || refIdentity[identity(g)]) {
			res.prefix++
			continue
		}
		res.wrong++
		wrong = append(wrong, flowLine(g, true))
	}
	if len(wrong) > 0 {
		if len(wrong) > 10 {
			wrong = wrong[:10]
		}
		t.Errorf("cut at frame %d: flows not in the whole capture:\n  %s", from+1, joinLines(wrong))
	}
	if res.produced < res.want {
		var missing []string
		for l, n := range wantLines {
			if n > 0 && len(missing) < 10 {
				missing = append(missing, l)
			}
		}
		t.Logf("cut at frame %d: %d of %d missing, e.g.:\n  %s", from+1, res.want-res.produced, res.want, joinLines(missing))
	}
	return res
}

// cutPoints returns n cut positions spread over pkts, plus up to extra
// cuts right after the first segment of a multi-segment MQTT packet.
func cutPoints(pkts []pkt, info []segInfo, n, extra int) []int {
	var cuts []int
	for i := 1; i <= n; i++ {
		cuts = append(cuts, i*len(pkts)/(n+1))
	}
	for i := 1; i+1 < len(pkts) && extra > 0; i++ {
		if pkts[i].n > 0 && pkts[i+1].n > 0 && info[i+1].dir == info[i].dir && !info[i+1].boundary {
			cuts = append(cuts, i+1)
			extra--
			i += 200
		}
	}
	return cuts
}

func runCuts(t *testing.T, file string, port int, cuts, extra int) {
	pkts, lt := loadPackets(t, file)
	info := frameBoundaries(t, pkts, lt)
	ref, _ := runOffline(t, file, port)
	dir := t.TempDir()
	var total cutResult
	for _, c := range cutPoints(pkts, info, cuts, extra) {
		r := compareCut(t, dir, lt, pkts, info, c, port, ref)
		total.want += r.want
		total.produced += r.produced
		total.prefix += r.prefix
		total.wrong += r.wrong
	}
	pct := 100 * float64(total.produced) / float64(max(1, total.want))
	t.Logf("%s: %d flows expected after the first provable boundaries, %d produced (%.2f %%), %d honest prefixes, %d wrong",
		filepath.Base(file), total.want, total.produced, pct, total.prefix, total.wrong)
	require.Positive(t, total.want)
	require.GreaterOrEqual(t, pct, 99.9)
	require.Zero(t, total.wrong)
}

// TestMidstreamCutsSample cuts the plant's sample capture (real mosquitto)
// at ten points and compares each cut's flows with the whole capture's.
func TestMidstreamCutsSample(t *testing.T) {
	runCuts(t, filepath.Join("..", "testdata", "sample.pcap"), 1883, 12, 0)
}

// TestMidstreamCutsRealTraffic cuts the real-traffic capture (every MQTT
// version, 200 KB payloads segmented at the MTU, many packets per segment)
// at ten points and inside multi-segment PUBLISH packets.
func TestMidstreamCutsRealTraffic(t *testing.T) {
	rc := sharedCapture(t)
	runCuts(t, rc.file, rc.port, 12, 6)
}

// runOfflineState runs the probe on file with a state file.
func runOfflineState(t *testing.T, file string, port int, state string) []flow.Record {
	t.Helper()
	exp := &collectExporter{}
	p, err := New(Config{ReadFile: file, MQTTPorts: []uint16{uint16(port)}, TLSPorts: []uint16{}, StateFile: state}, exp)
	require.NoError(t, err)
	require.NoError(t, p.Run(t.Context()))
	return exp.records()
}

// TestStateFileTwoParts replays a capture in two parts with a state file
// between them: the flows of part 2 on connections opened in part 1 carry
// the client id, user name and protocol level of their CONNECT, restored.
func TestStateFileTwoParts(t *testing.T) {
	for _, tc := range []struct {
		name string
		file func(t *testing.T) (string, int)
	}{
		{"sample", func(*testing.T) (string, int) { return filepath.Join("..", "testdata", "sample.pcap"), 1883 }},
		{"realtraffic", func(t *testing.T) (string, int) { rc := sharedCapture(t); return rc.file, rc.port }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, port := tc.file(t)
			pkts, lt := loadPackets(t, file)
			ref, _ := runOffline(t, file, port)
			refLines := map[string]int{}
			refNorm := map[string]int{}
			for i := range ref {
				refLines[flowLine(&ref[i], true)]++
				refNorm[flowLine(unknownSession(&ref[i]), true)]++
			}
			dir := t.TempDir()
			matched, right, restored := 0, 0, 0
			for i := 1; i <= 10; i++ {
				k := i * len(pkts) / 11
				p1, p2 := filepath.Join(dir, "p1.pcap"), filepath.Join(dir, "p2.pcap")
				writePackets(t, p1, lt, pkts[:k], stampsOf(pkts[:k]))
				writePackets(t, p2, lt, pkts[k:], stampsOf(pkts[k:]))
				state := filepath.Join(dir, fmt.Sprintf("state-%d", i))
				runOfflineState(t, p1, port, state)
				got := runOfflineState(t, p2, port, state)
				lines := maps(refLines)
				norm := maps(refNorm)
				for j := range got {
					g := &got[j]
					if g.IdentitySource == flow.IdentityRestored {
						restored++
					}
					if g.IdentitySource == flow.IdentityConnect {
						continue // a connection opened in part 2
					}
					l := flowLine(unknownSession(g), true)
					if norm[l] == 0 {
						continue // a flow cut by the split
					}
					norm[l]--
					matched++
					if full := flowLine(g, true); lines[full] > 0 {
						lines[full]--
						right++
					}
				}
			}
			pct := 100 * float64(right) / float64(max(1, matched))
			t.Logf("%s: %d restored flows in the second parts; %d flows of connections opened in the first parts matched to the whole capture, %d (%.2f %%) with the right client id, user name and version",
				tc.name, restored, matched, right, pct)
			require.Positive(t, matched)
			require.GreaterOrEqual(t, pct, 99.9)
		})
	}
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestStateFileRejected: a missing, truncated, corrupted, oversized or
// hostile state file is reported and ignored, never fatal.
func TestStateFileRejected(t *testing.T) {
	good, err := encodeState(nil)
	require.NoError(t, err)
	dir := t.TempDir()
	cases := map[string][]byte{
		"truncated":       good[:len(good)-1],
		"not a state":     []byte("hello\n{}"),
		"bad crc":         append([]byte("mission-probe-state 1 00000000 2\n"), "{}"...),
		"unknown field":   mustState(t, `{"connections":[],"x":1}`),
		"bad address":     mustState(t, `{"connections":[{"client":"nope","server":"1.2.3.4:1883","lastSeenNs":1,"topicAliases":[null,null]}]}`),
		"bad version":     mustState(t, `{"connections":[{"client":"1.2.3.4:5","server":"1.2.3.4:1883","protocolVersion":9,"lastSeenNs":1,"topicAliases":[null,null]}]}`),
		"bad alias":       mustState(t, `{"connections":[{"client":"1.2.3.4:5","server":"1.2.3.4:1883","lastSeenNs":1,"topicAliases":[{"0":"x"},null]}]}`),
		"trailing data":   mustState(t, `{"connections":[]} {}`),
		"too many":        mustState(t, `{"connections":[{"client":"1.2.3.4:5","server":"1.2.3.4:1883","lastSeenNs":1,"topicAliases":[null,null]},{"client":"1.2.3.4:6","server":"1.2.3.4:1883","lastSeenNs":1,"topicAliases":[null,null]}]}`),
		"long string":     mustState(t, `{"connections":[{"client":"1.2.3.4:5","server":"1.2.3.4:1883","clientId":"`+string(bytes.Repeat([]byte("a"), 70000))+`","lastSeenNs":1,"topicAliases":[null,null]}]}`),
		"no last seen":    mustState(t, `{"connections":[{"client":"1.2.3.4:5","server":"1.2.3.4:1883","topicAliases":[null,null]}]}`),
		"empty":           nil,
		"header too long": bytes.Repeat([]byte("x"), 100),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := decodeState("f", b, 1)
			require.ErrorIs(t, err, ErrBadStateFile)
			var se *StateFileError
			require.ErrorAs(t, err, &se)
			// The probe starts anyway.
			path := filepath.Join(dir, "s")
			require.NoError(t, os.WriteFile(path, b, 0o600))
			_, err = New(Config{ReadFile: filepath.Join("..", "testdata", "sample.pcap"), StateFile: path}, &collectExporter{})
			require.NoError(t, err)
		})
	}
	_, err = readStateFile(filepath.Join(dir, "missing"), 1)
	require.ErrorIs(t, err, ErrBadStateFile)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func mustState(t *testing.T, body string) []byte {
	return append([]byte(fmt.Sprintf("%s %08x %d\n", stateMagic, crc32.ChecksumIEEE([]byte(body)), len(body))), body...)
}

// FuzzStateFile: the state-file reader never panics, and what it accepts
// it writes back to an equivalent file.
func FuzzStateFile(f *testing.F) {
	ok, _ := encodeState([]tracker.ConnState{{Client: netip.MustParseAddrPort("10.0.0.1:4000"), Server: netip.MustParseAddrPort("10.0.0.2:1883"),
		ClientID: "c", Username: "u", Version: 5, KeepAlive: 60, LastSeen: 1, Aliases: [2]map[uint16]string{{1: "t"}, nil}}})
	f.Add(ok)
	f.Add([]byte("mission-probe-state 1 00000000 0\n"))
	f.Add(mustStateF(`{"connections":[{"client":"[::1]:5","server":"[::1]:1883","lastSeenNs":9,"topicAliases":[{"7":"a"},{"65535":"b"}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		states, err := decodeState("fuzz", b, 100)
		if err != nil {
			require.ErrorIs(t, err, ErrBadStateFile)
			return
		}
		require.LessOrEqual(t, len(states), 100)
		again, err := encodeState(states)
		require.NoError(t, err)
		back, err := decodeState("again", again, 100)
		require.NoError(t, err)
		require.Equal(t, len(states), len(back))
	})
}

func mustStateF(body string) []byte {
	return append([]byte(fmt.Sprintf("%s %08x %d\n", stateMagic, crc32.ChecksumIEEE([]byte(body)), len(body))), body...)
}
