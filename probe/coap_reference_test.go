package probe

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/coaptrack"
)

// The reference for the CoAP flow tests: tshark's two-pass JSON
// dissection of a capture, grouped into exchanges by the rules of
// docs/coap.md ("Flows"). Nothing here uses the probe's decoders: every
// value comes from a tshark field, and where tshark pairs messages itself
// (coap.response_to, coap.retransmitted) the grouping must agree with it.

// tsharkCoAP is one CoAP message as tshark dissects it.
type tsharkCoAP struct {
	num        int
	ns         int64 // frame.time_epoch
	src, dst   netip.AddrPort
	size       uint64 // udp.length − 8: the CoAP message's bytes
	typ        int    // 0 CON, 1 NON, 2 ACK, 3 RST
	code       int
	mid        int
	token      string // hex
	responseTo int    // coap.response_to: the request tshark pairs this response with
	firstIn    int    // a copy: the frame tshark says it repeats
	hasObs     bool
	obs        uint64
	block1     string // "num/m/szx", "" absent
	block2     string
	hasCF      bool
	cf         uint64
	payload    uint64 // coap.block_length (a block tshark reassembles), else coap.payload_length
	host       string
	path       string // "/a/b"
	query      string // "a&b"
}

func (f *tsharkCoAP) isRequest() bool  { return f.code>>5 == 0 && f.code != 0 }
func (f *tsharkCoAP) isResponse() bool { c := f.code >> 5; return c >= 2 && c <= 5 }

// tsharkCoAPFrames dissects file with tshark, the given UDP ports decoded
// as CoAP, and returns its CoAP messages in capture order.
func tsharkCoAPFrames(t *testing.T, ctx context.Context, file string, ports ...int) []tsharkCoAP {
	t.Helper()
	args := []string{"-2", "-r", file, "-Y", "coap", "-T", "json", "-x", "--no-duplicate-keys", "-J", "frame ip ipv6 udp coap"}
	for _, p := range ports {
		args = append(args, "-d", fmt.Sprintf("udp.port==%d,coap", p))
	}
	out, err := exec.CommandContext(ctx, "tshark", args...).Output()
	require.NoError(t, err, "tshark %v", args)
	var pkts []struct {
		Source struct {
			Layers map[string]json.RawMessage `json:"layers"`
		} `json:"_source"`
	}
	require.NoError(t, json.Unmarshal(out, &pkts))
	frames := make([]tsharkCoAP, 0, len(pkts))
	for _, p := range pkts {
		layer := func(name string) map[string]any {
			var m map[string]any
			if raw, ok := p.Source.Layers[name]; ok {
				require.NoError(t, json.Unmarshal(raw, &m), name)
			}
			return m
		}
		fr, udp, c := layer("frame"), layer("udp"), layer("coap")
		ipl, ipv := layer("ip"), "ip"
		if ipl == nil {
			ipl, ipv = layer("ipv6"), "ipv6"
		}
		require.NotNil(t, c, "frame %v: no coap layer", fr["frame.number"])
		f := tsharkCoAP{
			num:        atoiField(t, fr, "frame.number"),
			ns:         epochNS(t, field(fr, "frame.time_epoch")),
			src:        addrPort(t, field(ipl, ipv+".src"), field(udp, "udp.srcport")),
			dst:        addrPort(t, field(ipl, ipv+".dst"), field(udp, "udp.dstport")),
			size:       uint64(atoiField(t, udp, "udp.length") - 8),
			typ:        atoiField(t, c, "coap.type"),
			code:       atoiField(t, c, "coap.code"),
			mid:        atoiField(t, c, "coap.mid"),
			token:      strings.ReplaceAll(field(c, "coap.token"), ":", ""),
			responseTo: atoiOr0(t, field(c, "coap.response_to")),
		}
		// tshark marks a copy by naming the first: coap.request_first_in,
		// coap.response_first_in (coap.retransmitted sits under them).
		f.firstIn = atoiOr0(t, field(c, "coap.request_first_in")) + atoiOr0(t, field(c, "coap.response_first_in"))
		if s := field(c, "coap.block_length"); s != "" {
			f.payload = uint64(atoiOr0(t, s))
		} else if pt, ok := c["coap.payload_tree"].(map[string]any); ok {
			f.payload = uint64(atoiOr0(t, field(pt, "coap.payload_length")))
		}
		names, trees := fieldList(c["coap.opt.name"]), objList(c["coap.opt.name_tree"])
		require.Len(t, trees, len(names), "frame %d: options", f.num)
		var path, query []string
		for i, name := range names {
			_, name, _ = strings.Cut(name, ": ") // tshark: the option's index, ": ", its name
			o := trees[i]
			switch name {
			case "Uri-Host":
				f.host = field(o, "coap.opt.uri_host")
			case "Uri-Path":
				path = append(path, field(o, "coap.opt.uri_path"))
			case "Uri-Query":
				query = append(query, field(o, "coap.opt.uri_query"))
			case "Observe":
				f.hasObs, f.obs = true, uint64(atoiOr0(t, field(o, "coap.opt.observe")))
			case "Content-Format":
				// The number is the option's raw value (tshark shows the
				// name); absent for the zero-length encoding of 0.
				f.hasCF, f.cf = true, hexUint(t, field(o, "coap.opt.ctype_raw"))
			case "Block1", "Block2":
				b := field(o, "coap.opt.block_number") + "/" + field(o, "coap.opt.block_mflag") + "/" + field(o, "coap.opt.block_size")
				if name == "Block1" {
					f.block1 = b
				} else {
					f.block2 = b
				}
			}
		}
		if len(path) > 0 {
			f.path = "/" + strings.Join(path, "/")
		}
		f.query = strings.Join(query, "&")
		frames = append(frames, f)
	}
	return frames
}

// field is a tshark JSON field's value (the first, if repeated).
func field(m map[string]any, name string) string {
	if l := fieldList(m[name]); len(l) > 0 {
		return l[0]
	}
	return ""
}

func fieldList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var l []string // a list of values, or one *_raw field: [hex, offset, length, bitmask, type]
		for _, e := range v {
			switch e := e.(type) {
			case string:
				l = append(l, e)
			case []any: // one of several *_raw fields
				if len(e) > 0 {
					s, _ := e[0].(string)
					l = append(l, s)
				}
			}
		}
		return l
	}
	return nil
}

func objList(v any) []map[string]any {
	switch v := v.(type) {
	case map[string]any:
		return []map[string]any{v}
	case []any:
		var l []map[string]any
		for _, e := range v {
			m, _ := e.(map[string]any)
			l = append(l, m)
		}
		return l
	}
	return nil
}

func atoiField(t *testing.T, m map[string]any, name string) int {
	t.Helper()
	s := field(m, name)
	n, err := strconv.Atoi(s)
	require.NoError(t, err, "tshark field %s = %q", name, s)
	return n
}

func atoiOr0(t *testing.T, s string) int {
	t.Helper()
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	require.NoError(t, err, "%q", s)
	return n
}

func hexUint(t *testing.T, s string) uint64 {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err, "%q", s)
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// epochNS parses frame.time_epoch ("1796194515.321630000") exactly.
func epochNS(t *testing.T, s string) int64 {
	t.Helper()
	sec, frac, _ := strings.Cut(s, ".")
	frac = (frac + "000000000")[:9]
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(frac, 10, 64)
	require.NoError(t, err1, s)
	require.NoError(t, err2, s)
	return a*1e9 + b
}

func addrPort(t *testing.T, ip, port string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	require.NoError(t, err, ip)
	p, err := strconv.ParseUint(port, 10, 16)
	require.NoError(t, err, port)
	return netip.AddrPortFrom(a, uint16(p))
}

// coapRefFlow is one exchange of the reference.
type coapRefFlow struct {
	kind     string // "request", "ping", "notification"
	first    *tsharkCoAP
	src, dst netip.AddrPort // of the initiating message
	tok      string
	method   int
	host     string
	path     string
	query    string
	hasObs   bool
	obs      uint64
	hasCF    bool
	cf       uint64
	block    string // "B1:num/m/szx", "B2:…" or "-"
	resp     int    // response code, 0 none
	hasResp  bool
	respMid  *coapMidKey // a CON response (separate, or a notification): the ACK of this id ends the exchange
	register bool        // Observe 0 request
	retrans  int
	payload  uint64
	packets  int
	octets   uint64
	start    int64
	end      int64
	done     bool
	reason   flow.EndReason
	msgs     []*tsharkCoAP // the messages counted in packets
}

type coapMidKey struct {
	from, to netip.AddrPort
	mid      int
}

type coapTokKey struct {
	client, server netip.AddrPort
	tok            string
}

type coapRegistration struct {
	method            int
	host, path, query string
}

// coapRefStats are the reference's counts of messages that join no flow.
type coapRefStats struct {
	Retransmissions int // repeated CON/NON joined to their open exchange
	Duplicates      int // messages of an exchange that had completed
	Unmatched       int // ACK, RST or response with nothing to join
	Ignored         int // NON Empty
}

// coapReference groups tshark's messages into exchanges (docs/coap.md,
// "Flows"): a request with its response (by message id for a piggybacked
// one, by endpoint pair and token for a separate or NON one; wherever
// tshark pairs a response with its request, coap.response_to, the two must
// agree; it does not pair separate CON responses), ended by the response,
// or by the client's ACK of a CON response, or by a RST; a ping ended by
// its RST; an
// Observe notification (a response on the token of a registration that
// got a 2.xx with Observe) ended by its ACK or RST, or at once when NON.
// A CON or NON with the sender, receiver, message id and token of one
// already seen joins its exchange while it is open (a retransmission) and
// is a duplicate after. Every message up to the one that completes the
// exchange counts in packets, octets and the end time. Open exchanges end
// "forced end" (the capture is shorter than the probe's idle timeout).
func coapReference(t *testing.T, frames []tsharkCoAP) ([]*coapRefFlow, coapRefStats) {
	t.Helper()
	var (
		flows  []*coapRefFlow
		st     coapRefStats
		byMid  = map[coapMidKey]*coapRefFlow{}
		open   = map[coapTokKey]*coapRefFlow{}
		regs   = map[coapTokKey]*coapRegistration{}
		reqOf  = map[int]*coapRefFlow{} // request frame number (and its retransmissions) → exchange
		repeat = map[int]bool{}         // frames the reference takes for copies of a CON/NON
		alone  = map[int]bool{}         // CON/NON responses that join nothing
	)
	add := func(x *coapRefFlow, f *tsharkCoAP) {
		x.packets++
		x.msgs = append(x.msgs, f)
		x.octets += f.size
		x.end = max(x.end, f.ns)
	}
	complete := func(x *coapRefFlow, reason flow.EndReason) {
		x.done, x.reason = true, reason
		k := coapTokKey{x.src, x.dst, x.tok}
		if open[k] == x {
			delete(open, k)
		}
	}
	answer := func(x *coapRefFlow, f *tsharkCoAP) {
		x.hasResp, x.resp = true, f.code
		x.payload += f.payload
		if !x.hasCF && f.hasCF {
			x.hasCF, x.cf = true, f.cf
		}
		if !strings.HasPrefix(x.block, "B1") {
			switch {
			case f.block2 != "":
				x.block = "B2:" + f.block2
			case x.block == "-" && f.block1 != "":
				x.block = "B1:" + f.block1
			}
		}
		if x.register && f.hasObs && f.code>>5 == 2 {
			regs[coapTokKey{x.src, x.dst, x.tok}] = &coapRegistration{x.method, x.host, x.path, x.query}
		}
	}
	begin := func(kind string, f *tsharkCoAP) *coapRefFlow {
		x := &coapRefFlow{kind: kind, first: f, src: f.src, dst: f.dst, tok: f.token, block: "-", start: f.ns, end: f.ns,
			hasCF: f.hasCF, cf: f.cf, payload: f.payload}
		add(x, f)
		flows = append(flows, x)
		return x
	}
	for i := range frames {
		f := &frames[i]
		if f.typ <= 1 { // CON, NON
			k := coapMidKey{f.src, f.dst, f.mid}
			if x := byMid[k]; x != nil && (x.tok == f.token || x.kind == "ping" && f.code == 0) {
				if x.kind == "request" && x.first.src == f.src {
					reqOf[f.num] = x
				}
				repeat[f.num] = true
				if x.done {
					st.Duplicates++
				} else {
					x.retrans++
					st.Retransmissions++
					add(x, f)
				}
				continue
			}
			switch {
			case f.code == 0:
				if f.typ != 0 {
					st.Ignored++
					continue
				}
				byMid[k] = begin("ping", f)
			case f.isRequest():
				tk := coapTokKey{f.src, f.dst, f.token}
				if old := open[tk]; old != nil {
					complete(old, flow.EndForced) // superseded
				}
				if f.hasObs && f.obs == 1 {
					delete(regs, tk) // deregistration
				}
				x := begin("request", f)
				x.method, x.host, x.path, x.query = f.code, f.host, f.path, f.query
				x.hasObs, x.obs = f.hasObs, f.obs
				x.register = f.hasObs && f.obs == 0
				if f.block1 != "" {
					x.block = "B1:" + f.block1
				} else if f.block2 != "" {
					x.block = "B2:" + f.block2
				}
				open[tk], byMid[k], reqOf[f.num] = x, x, x
			case f.isResponse():
				tk := coapTokKey{f.dst, f.src, f.token}
				if x := open[tk]; x != nil && !x.hasResp {
					if f.responseTo != 0 {
						require.Same(t, x, reqOf[f.responseTo], "frame %d: tshark pairs it with frame %d", f.num, f.responseTo)
					}
					add(x, f)
					answer(x, f)
					byMid[k] = x
					if f.typ == 0 {
						x.respMid = &k
					} else {
						complete(x, flow.EndOfFlow)
					}
					continue
				}
				reg := regs[tk]
				if reg == nil {
					require.Zero(t, f.responseTo, "frame %d: tshark pairs a response the reference does not", f.num)
					alone[f.num] = true
					st.Unmatched++
					continue
				}
				x := begin("notification", f)
				x.tok, x.src, x.dst = f.token, f.dst, f.src // the registration's pair; rendered server → client
				x.method, x.host, x.path, x.query = reg.method, reg.host, reg.path, reg.query
				x.hasCF, x.cf, x.payload = false, 0, 0
				x.hasObs, x.obs = f.hasObs, f.obs
				answer(x, f)
				byMid[k] = x
				if f.typ == 1 {
					complete(x, flow.EndOfFlow)
				} else {
					x.respMid = &k
				}
			default:
				st.Ignored++
			}
			continue
		}
		// ACK, RST: answers the CON/NON with its message id sent the other way.
		k := coapMidKey{f.dst, f.src, f.mid}
		x := byMid[k]
		switch {
		case x == nil:
			st.Unmatched++
		case x.done:
			st.Duplicates++
		case f.typ == 3:
			add(x, f)
			if x.kind == "notification" {
				delete(regs, coapTokKey{x.src, x.dst, x.tok})
			}
			complete(x, flow.EndOfFlow)
		case x.respMid != nil:
			add(x, f)
			if *x.respMid == k {
				complete(x, flow.EndOfFlow)
			}
		case x.kind != "request":
			add(x, f)
			complete(x, flow.EndOfFlow)
		case f.isResponse():
			require.Same(t, x, reqOf[f.responseTo], "frame %d: piggybacked response, tshark pairs it with frame %d", f.num, f.responseTo)
			add(x, f)
			answer(x, f)
			complete(x, flow.EndOfFlow)
		default:
			add(x, f) // empty ACK: the response comes separately
		}
	}
	for _, x := range flows {
		if !x.done {
			x.reason = flow.EndForced
		}
	}
	// tshark's own retransmission mark: each frame it marks is one the
	// reference takes for a copy, or a copy of a response that joins
	// nothing.
	marked := 0
	for i := range frames {
		if f := &frames[i]; f.firstIn != 0 && f.typ <= 1 {
			require.True(t, repeat[f.num] || alone[f.firstIn] && alone[f.num],
				"frame %d: tshark marks it a copy of frame %d, the reference does not", f.num, f.firstIn)
			marked++
		}
	}
	t.Logf("reference: %d CoAP messages, %d exchanges, %d copies (%d of them marked retransmitted by tshark)", len(frames), len(flows), len(repeat), marked)
	return flows, st
}

// ackedCopyAfterResponse says whether x has the server's ACK of a copy of
// the request after a separate CON response, before the exchange ended.
func (x *coapRefFlow) ackedCopyAfterResponse() bool {
	resp := false
	for _, f := range x.msgs {
		switch {
		case f.typ == 0 && f.code>>5 == 2 && f.src == x.dst:
			resp = true
		case resp && f.typ == 2 && f.src == x.dst && f.mid == x.first.mid:
			return true
		}
	}
	return false
}

// line renders what the probe and the reference both know of a flow.
func (x *coapRefFlow) line() string {
	src, dst := x.src, x.dst
	if x.kind == "notification" {
		src, dst = dst, src
	}
	typ := [...]string{"CON", "NON", "ACK", "RST"}[x.first.typ]
	return coapFlowLine(src, dst, typ, x.first.code, x.first.mid, x.tok, x.method, x.host, x.path, x.query, x.hasResp, x.resp,
		x.hasObs, x.obs, x.hasCF, x.cf, x.block, x.retrans, x.payload, x.packets, x.octets, x.start, x.end, x.reason)
}

// coapRecordLine renders a probe flow like coapRefFlow.line.
func coapRecordLine(r *flow.Record) string {
	c := r.CoAP
	block := "-"
	if c.BlockOption != flow.BlockNone {
		block = fmt.Sprintf("B%d:%d/%d/%d", c.BlockOption, c.Block>>4, c.Block>>3&1, c.Block&7)
	}
	typ := "?"
	if c.Type < 4 {
		typ = [...]string{"CON", "NON", "ACK", "RST"}[c.Type]
	}
	return coapFlowLine(netip.AddrPortFrom(r.SrcAddr, r.SrcPort), netip.AddrPortFrom(r.DstAddr, r.DstPort), typ, int(c.Code),
		int(c.MessageID), hex.EncodeToString(c.Token), int(c.Method), c.URIHost, c.URIPath, c.URIQuery, c.ResponseCode != 0,
		int(c.ResponseCode), c.HasObserve, uint64(c.Observe), c.HasContentFormat, uint64(c.ContentFormat), block,
		int(c.Retransmissions), uint64(c.PayloadLength), int(r.Packets), r.Octets, r.Start.UnixNano(), r.End.UnixNano(), r.EndReason)
}

func coapFlowLine(src, dst netip.AddrPort, typ string, code, mid int, tok string, method int, host, path, query string,
	hasResp bool, resp int, hasObs bool, obs uint64, hasCF bool, cf uint64, block string, retrans int, payload uint64,
	packets int, octets uint64, start, end int64, reason flow.EndReason) string {
	codeStr := func(c int) string { return fmt.Sprintf("%d.%02d", c>>5, c&31) }
	opt := func(has bool, v uint64) string {
		if !has {
			return "-"
		}
		return strconv.FormatUint(v, 10)
	}
	r := "-"
	if hasResp {
		r = codeStr(resp)
	}
	return fmt.Sprintf("%s>%s %s %s mid=%d tok=%s method=%s host=%q path=%q query=%q resp=%s obs=%s cf=%s block=%s "+
		"retrans=%d payload=%d packets=%d octets=%d start=%d end=%d reason=%q",
		src, dst, typ, codeStr(code), mid, tok, codeStr(method), host, path, query, r, opt(hasObs, obs), opt(hasCF, cf), block,
		retrans, payload, packets, octets, start, end, reason)
}

// requireSameCoAPFlows compares the probe's flows with the reference,
// line by line, reporting only the lines that differ.
func requireSameCoAPFlows(t *testing.T, want []*coapRefFlow, got []flow.Record) {
	t.Helper()
	var w, g []string
	for _, x := range want {
		w = append(w, x.line())
	}
	for i := range got {
		require.Equal(t, flow.AppCoAP, got[i].ApplicationProtocol)
		require.NotNil(t, got[i].CoAP)
		g = append(g, coapRecordLine(&got[i]))
	}
	slices.Sort(w)
	slices.Sort(g)
	var missing, extra []string
	for i, j := 0, 0; i < len(w) || j < len(g); {
		switch {
		case j == len(g) || i < len(w) && w[i] < g[j]:
			missing = append(missing, w[i])
			i++
		case i == len(w) || g[j] < w[i]:
			extra = append(extra, g[j])
			j++
		default:
			i++
			j++
		}
	}
	if len(missing)+len(extra) > 0 {
		t.Fatalf("%d of %d reference flows differ from the probe's (%d flows)\nreference only:\n%s\nprobe only:\n%s",
			len(missing), len(w), len(g), firstLines(missing), firstLines(extra))
	}
}

func firstLines(l []string) string {
	const n = 12
	s := strings.Join(l[:min(n, len(l))], "\n")
	if len(l) > n {
		s += fmt.Sprintf("\n… %d more", len(l)-n)
	}
	return s
}

// requireCoAPAccounting checks that the probe decoded as many CoAP
// messages as tshark dissected, and that each is in a flow's packets or
// in one of the counters of messages that join none.
func requireCoAPAccounting(t *testing.T, tsharkMessages int, st coaptrack.Stats, flows []flow.Record) {
	t.Helper()
	require.Equal(t, uint64(tsharkMessages), st.Datagrams-st.Malformed, "CoAP messages: tshark vs probe (%+v)", st)
	var packets uint64
	for _, f := range flows {
		packets += f.Packets
	}
	require.Equal(t, st.Datagrams-st.Malformed, packets+st.Duplicates+st.Unmatched+st.Ignored,
		"messages in flows and counted apart (%+v)", st)
}
