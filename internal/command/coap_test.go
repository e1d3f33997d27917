package command

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/store"
)

// coapCaseOption is the option testdata/coap.pcap carries its case keys
// in (testdata/README.md).
const coapCaseOption = "65000"

// coapLine is what the tests read back of a CoAP flow, as JSON lines
// (probe --stdout) or stored (query).
type coapLine struct {
	Protocol string  `json:"applicationProtocol"`
	SrcV4    string  `json:"sourceIPv4Address"`
	SrcV6    string  `json:"sourceIPv6Address"`
	SrcPort  int     `json:"sourceTransportPort"`
	DstV4    string  `json:"destinationIPv4Address"`
	DstV6    string  `json:"destinationIPv6Address"`
	DstPort  int     `json:"destinationTransportPort"`
	Type     string  `json:"coapType"`
	Code     string  `json:"coapCode"`
	MID      *int    `json:"coapMessageId"`
	Token    string  `json:"coapToken"`
	Path     string  `json:"coapUriPath"`
	Response string  `json:"coapResponseCode"`
	Observe  *uint32 `json:"coapObserve"`
	Case     string  `json:"mqttCorrelationData"`
	CaseSrc  string  `json:"mqttCorrelationSource"`
	Topic    *string `json:"mqttTopic"`
	CtlType  *string `json:"mqttControlTypeName"`
}

// recordKey is coapLine.key of a record.
func recordKey(r *flow.Record) string {
	mid := -1
	if r.CoAP != nil {
		mid = int(r.CoAP.MessageID)
	}
	return fmt.Sprintf("%s:%d>%s:%d mid=%d", r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort, mid)
}

// key names a flow by its initiating message: sender, receiver, message id.
func (l coapLine) key() string {
	mid := -1
	if l.MID != nil {
		mid = *l.MID
	}
	return fmt.Sprintf("%s:%d>%s:%d mid=%d", l.SrcV4+l.SrcV6, l.SrcPort, l.DstV4+l.DstV6, l.DstPort, mid)
}

func parseCoAPLines(t *testing.T, s string) []coapLine {
	t.Helper()
	var out []coapLine
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l coapLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		out = append(out, l)
	}
	return out
}

// tsharkCoAPExchanges is the reference from tshark's dissection of file
// (CoAP on port 5683) alone: one exchange per request that is not a
// retransmission, per Empty CON (ping) and per CON or NON response that no
// request names as its response (coap.response_in: an Observe
// notification). It returns each exchange's initiating message (sender,
// receiver, message id, as coapLine.key) with its case key: the value of
// option 65000 in the request, for a notification in the request that
// registered its token.
func tsharkCoAPExchanges(t *testing.T, file string) map[string]string {
	t.Helper()
	mqtttest.RequireTools(t, "tshark")
	fields := []string{"frame.number", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst", "udp.dstport",
		"coap.type", "coap.code", "coap.mid", "coap.token", "coap.response_in", "coap.retransmitted", "coap.opt.name", "coap.opt.unknown"}
	args := []string{"-2", "-r", file, "-Y", "coap", "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=;"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	require.NoError(t, err, "tshark %v", args)
	type frame map[string]string
	var frames []frame
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		vals := strings.Split(line, "\t")
		require.Len(t, vals, len(fields), line)
		f := frame{}
		for i, name := range fields {
			f[name] = vals[i]
		}
		frames = append(frames, f)
	}
	caseOf := func(f frame) string {
		// tshark names an unknown option by its position and number
		// (ending in "Unknown Option (65000)") and lists the values of
		// unknown options, in order, in coap.opt.unknown.
		values := strings.Split(f["coap.opt.unknown"], ";")
		for _, name := range strings.Split(f["coap.opt.name"], ";") {
			if !strings.Contains(name, "Unknown Option (") {
				continue
			}
			require.NotEmpty(t, values, f)
			v := values[0]
			values = values[1:]
			if strings.HasSuffix(name, "Unknown Option ("+coapCaseOption+")") {
				b, err := hex.DecodeString(v)
				require.NoError(t, err, name)
				return string(b)
			}
		}
		return ""
	}
	key := func(f frame) string {
		return f["ip.src"] + f["ipv6.src"] + ":" + f["udp.srcport"] + ">" + f["ip.dst"] + f["ipv6.dst"] + ":" + f["udp.dstport"] + " mid=" + f["coap.mid"]
	}
	code := func(f frame) coapparse.Code { v, _ := strconv.Atoi(f["coap.code"]); return coapparse.Code(v) }
	answered := map[string]bool{}
	registered := map[string]string{} // client>server token → case key of its last request
	want := map[string]string{}
	for _, f := range frames {
		ty, _ := strconv.Atoi(f["coap.type"])
		c := code(f)
		if f["coap.retransmitted"] != "" || ty > 1 {
			continue
		}
		switch {
		case c.IsEmpty() && ty == 0:
			want[key(f)] = ""
		case c.IsRequest():
			want[key(f)] = caseOf(f)
			registered[f["ip.src"]+f["ipv6.src"]+":"+f["udp.srcport"]+" "+f["coap.token"]] = caseOf(f)
			if r := f["coap.response_in"]; r != "" {
				answered[r] = true
			}
		}
	}
	for _, f := range frames {
		ty, _ := strconv.Atoi(f["coap.type"])
		if !code(f).IsResponse() || ty > 1 || answered[f["frame.number"]] || f["coap.retransmitted"] != "" {
			continue
		}
		want[key(f)] = registered[f["ip.dst"]+f["ipv6.dst"]+":"+f["udp.dstport"]+" "+f["coap.token"]]
	}
	return want
}

// TestProbeCoAPFixture: the probe over testdata/coap.pcap prints one JSON
// line per CoAP exchange tshark finds in it, each a CoAP document (no MQTT
// fields) with the case key tshark sees in its request when asked for
// one, and none when not.
func TestProbeCoAPFixture(t *testing.T) {
	file, err := filepath.Abs("../../testdata/coap.pcap")
	require.NoError(t, err)
	want := tsharkCoAPExchanges(t, file)
	require.GreaterOrEqual(t, len(want), 50, "the fixture's exchanges")

	for _, withCase := range []bool{false, true} {
		args := []string{"probe", "--read", file, "--stdout"}
		if withCase {
			args = append(args, "--coap-case-option", coapCaseOption)
		}
		lines := parseCoAPLines(t, run(t, args...))
		require.Len(t, lines, len(want), "one flow per exchange tshark finds (case option %v)", withCase)
		got := map[string]string{}
		kinds := map[string]int{}
		for _, l := range lines {
			require.Equal(t, "coap", l.Protocol)
			require.NotEmpty(t, l.Type)
			require.NotEmpty(t, l.Code)
			require.NotNil(t, l.MID)
			require.Nil(t, l.Topic, "no MQTT fields")
			require.Nil(t, l.CtlType, "no MQTT fields")
			got[l.key()] = l.Case
			if l.Case != "" {
				require.Equal(t, "coapOption", l.CaseSrc)
			} else {
				require.Empty(t, l.CaseSrc)
			}
			switch {
			case l.Code == "0.00":
				kinds["ping"]++
			case l.Observe != nil && l.Code == "2.05":
				kinds["notification"]++
			case l.SrcV6 != "":
				kinds["IPv6"]++
			}
			if l.Response == "4.04" {
				kinds["4.04"]++
			}
		}
		for _, k := range []string{"ping", "notification", "IPv6", "4.04"} {
			require.Positive(t, kinds[k], k)
		}
		if !withCase {
			noCase := map[string]string{}
			for k := range want {
				noCase[k] = "" // no case keys without the flag
			}
			require.Equal(t, noCase, got, "flows vs tshark")
			continue
		}
		require.Equal(t, want, got, "flows and their case keys vs tshark")
	}
}

// TestAllInOneCoAP: all-in-one over testdata/coap.pcap stores one document
// per exchange tshark finds, all CoAP; then over testdata/sample.pcap
// (MQTT) into the same store: both protocols in one collection, selected
// apart by query --protocol.
func TestAllInOneCoAP(t *testing.T) {
	coapFile, err := filepath.Abs("../../testdata/coap.pcap")
	require.NoError(t, err)
	mqttFile, err := filepath.Abs("../../testdata/sample.pcap")
	require.NoError(t, err)
	want := tsharkCoAPExchanges(t, coapFile)
	nCoAP := len(want)
	cases := map[string]int{}
	for _, c := range want {
		if c != "" {
			cases[c]++
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	count := func(args ...string) int {
		t.Helper()
		n, err := strconv.Atoi(strings.TrimSpace(run(t, append([]string{"query", "--data-dir", data, "--count"}, args...)...)))
		require.NoError(t, err)
		return n
	}

	summary := run(t, "all-in-one", "--read", coapFile, "--data-dir", data, "--coap-case-option", coapCaseOption)
	require.Contains(t, summary, "mission all-in-one: "+strconv.Itoa(nCoAP)+" flows from")

	// Field by field, what was stored (probe → IPFIX → collector → store)
	// is what the probe prints (JSON lines), but for the flow id (random
	// per run) and the collector's fields.
	direct := map[string]flow.Record{}
	require.NoError(t, flow.ReadJSONLines(strings.NewReader(run(t, "probe", "--read", coapFile, "--stdout", "--coap-case-option", coapCaseOption)),
		func(r *flow.Record) error { direct[recordKey(r)] = *r; return nil }))
	rd, err := store.OpenReader(context.Background(), store.ReaderConfig{DataDir: data}, zerolog.Nop())
	require.NoError(t, err)
	stored := map[string]flow.Record{}
	require.NoError(t, rd.Records(context.Background(), store.Query{Protocol: "coap"}, func(r *flow.Record) error {
		require.True(t, r.Exporter.IsValid())
		require.False(t, r.Received.IsZero())
		r.Exporter, r.Received, r.ObservationDomain = netip.AddrPort{}, time.Time{}, 0
		stored[recordKey(r)] = *r
		return nil
	}))
	require.NoError(t, rd.Close())
	require.Len(t, stored, nCoAP)
	require.Len(t, direct, nCoAP)
	for k, want := range direct {
		got, ok := stored[k]
		require.True(t, ok, k)
		require.NotZero(t, got.FlowID)
		want.FlowID, got.FlowID, want.ObservationDomain = 0, 0, 0
		require.Equal(t, want, got, k)
	}
	require.Equal(t, nCoAP, count())
	require.Equal(t, nCoAP, count("--protocol", "coap"))
	require.Equal(t, 0, count("--protocol", "mqtt"))
	for c, n := range cases {
		require.Equal(t, n, count("--protocol", "coap", `{"mqttCorrelationData": "`+c+`"}`), "case %s", c)
	}

	nMQTT := len(parseLines(t, run(t, "probe", "--read", mqttFile, "--stdout")))
	require.Positive(t, nMQTT)
	run(t, "all-in-one", "--read", mqttFile, "--data-dir", data)
	require.Equal(t, nCoAP+nMQTT, count(), "one collection")
	require.Equal(t, nCoAP, count("--protocol", "coap"))
	require.Equal(t, nMQTT, count("--protocol", "mqtt"))
	require.Equal(t, 0, count("--protocol", "coap", `{"mqttControlTypeName": "PUBLISH"}`))
	require.Equal(t, 0, count("--protocol", "mqtt", `{"coapUriPath": "/time"}`))

	byProto := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "query", "--data-dir", data, "--count-by", "applicationProtocol")), "\n") {
		var row struct {
			ID    string `json:"_id"`
			Count int    `json:"count"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &row), line)
		byProto[row.ID] = row.Count
	}
	require.Equal(t, map[string]int{"coap": nCoAP, "mqtt": nMQTT}, byProto)

	// The stored CoAP documents are the exchanges tshark finds, with their
	// case keys, and carry no MQTT field but those.
	queried := parseCoAPLines(t, run(t, "query", "--data-dir", data, "--protocol", "coap", "--limit", "0"))
	got := map[string]string{}
	for _, l := range queried {
		require.Equal(t, "coap", l.Protocol)
		require.Nil(t, l.Topic)
		got[l.key()] = l.Case
	}
	require.Equal(t, want, got)
	mqttOut := strings.TrimSpace(run(t, "query", "--data-dir", data, "--protocol", "mqtt", "--limit", "0"))
	mqttDocs := strings.Split(mqttOut, "\n")
	require.Len(t, mqttDocs, nMQTT)
	for _, line := range mqttDocs {
		var d storedLine
		require.NoError(t, json.Unmarshal([]byte(line), &d), line)
		require.NotEmpty(t, d.Type, "an MQTT document: %s", line)
		require.NotContains(t, line, `"coap`)
	}
}

// TestCoAPCaseOptionFlag: the environment variable sets the case option
// like the flag; option numbers above 65535 are refused.
func TestCoAPCaseOptionFlag(t *testing.T) {
	file, err := filepath.Abs("../../testdata/coap.pcap")
	require.NoError(t, err)
	t.Setenv("COAP_CASE_OPTION", coapCaseOption)
	keys := map[string]int{}
	for _, l := range parseCoAPLines(t, run(t, "probe", "--read", file, "--stdout")) {
		if l.Case != "" {
			keys[l.Case]++
		}
	}
	require.Equal(t, 2, keys["case-v4-dyn"], "the PUT and the DELETE of one case")
	require.Len(t, keys, 6)

	for _, v := range []string{"65536", "-1"} {
		_, err := runAll(t, "probe", "--read", file, "--stdout", "--coap-case-option", v)
		require.Error(t, err, v)
	}
	_, err = runAll(t, "probe", "--read", file, "--stdout", "--coap-case-option", "65536")
	require.ErrorIs(t, err, errOptionNumber)
}
