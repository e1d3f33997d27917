package ipfix

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tsharkFields are the cflow dissector fields the test compares.
var tsharkFields = []string{
	"cflow.od_id", "cflow.sequence",
	"cflow.srcaddr", "cflow.dstaddr", "cflow.srcaddrv6", "cflow.dstaddrv6",
	"cflow.srcport", "cflow.dstport", "cflow.protocol", "cflow.tos", "cflow.tcpflags",
	"cflow.packets", "cflow.octets", "cflow.flow_end_reason",
	"cflow.abstimestart", "cflow.abstimeend", "cflow.timedelta",
	"cflow.srcmac", "cflow.vlanid", "cflow.ip_version", "cflow.if_name",
	"cflow.template_ipfix_field_pen", "cflow.enterprise_private_entry",
}

type tsharkV4 struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
	tos, flags       uint8
	packets, octets  uint64
	start, end       time.Time
	reason           uint8
	mac              [6]byte
	vlan             uint16
	ifName           string
	qos              uint16
	topic            string
	retain           bool
}

type tsharkV6 struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
	packets, octets  uint64
	start, end       time.Time
	reason           uint8
	filters          []string
	corrRaw          []byte
	version          uint8
}

// TestTsharkDecodesOurMessages sends our messages over loopback UDP while
// tshark captures them, then checks that tshark's IPFIX (cflow) dissector
// reads every standard field with the same value and shows the MQTT
// fields as enterprise entries.
func TestTsharkDecodesOurMessages(t *testing.T) {
	requireTool(t, "tshark", "tshark")
	reg := NewRegistry(DefaultMQTTPEN)
	pen := reg.MQTTPEN()
	t4, err := NewTemplate(reg, 256,
		FieldSpec{ID: 8, Length: 4}, FieldSpec{ID: 12, Length: 4}, // IPv4 addresses
		FieldSpec{ID: 7, Length: 2}, FieldSpec{ID: 11, Length: 2}, // ports
		FieldSpec{ID: 4, Length: 1}, FieldSpec{ID: 5, Length: 1}, // protocol, ToS
		FieldSpec{ID: 6, Length: 1},                              // tcpControlBits, reduced to 1 byte
		FieldSpec{ID: 2, Length: 8}, FieldSpec{ID: 1, Length: 4}, // packets, octets (reduced)
		FieldSpec{ID: 152, Length: 8}, FieldSpec{ID: 153, Length: 8}, // flowStart/EndMilliseconds
		FieldSpec{ID: 136, Length: 1}, FieldSpec{ID: 56, Length: 6}, // flowEndReason, sourceMacAddress
		FieldSpec{ID: 58, Length: 2}, FieldSpec{ID: 60, Length: 1}, // vlanId, ipVersion
		FieldSpec{ID: 82, Length: VarLen}, // interfaceName
		FieldSpec{PEN: pen, ID: MQTTQoS, Length: 2},
		FieldSpec{PEN: pen, ID: MQTTTopic, Length: VarLen},
		FieldSpec{PEN: pen, ID: MQTTRetain, Length: 1},
	)
	require.NoError(t, err)
	t6, err := NewTemplate(reg, 257,
		FieldSpec{ID: 27, Length: 16}, FieldSpec{ID: 28, Length: 16}, // IPv6 addresses
		FieldSpec{ID: 7, Length: 2}, FieldSpec{ID: 11, Length: 2}, FieldSpec{ID: 4, Length: 1},
		FieldSpec{ID: 2, Length: 8}, FieldSpec{ID: 1, Length: 8},
		FieldSpec{ID: 156, Length: 8}, FieldSpec{ID: 157, Length: 8}, // flowStart/EndNanoseconds
		FieldSpec{ID: 162, Length: 4}, // flowDurationMicroseconds
		FieldSpec{ID: 136, Length: 1},
		FieldSpec{PEN: pen, ID: MQTTTopicFilters, Length: VarLen},
		FieldSpec{PEN: pen, ID: MQTTCorrelationDataRaw, Length: VarLen},
		FieldSpec{PEN: pen, ID: MQTTProtocolVersion, Length: 1},
	)
	require.NoError(t, err)

	t0 := time.Date(2025, 7, 8, 9, 10, 11, 123456789, time.UTC)
	var v4 []tsharkV4
	for i := range 3 {
		v4 = append(v4, tsharkV4{
			src: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), dst: netip.MustParseAddr("198.51.100.1"),
			srcPort: uint16(50000 + i), dstPort: 1883, tos: uint8(i * 4), flags: 0x18,
			packets: uint64(2 + i), octets: uint64(1000 * (i + 1)),
			start: t0.Add(time.Duration(i) * time.Second).Truncate(time.Millisecond), end: t0.Add(time.Duration(i)*time.Second + 1500*time.Millisecond).Truncate(time.Millisecond),
			reason: uint8(1 + i), mac: [6]byte{0x02, 0x42, 0xac, 0x11, 0x00, byte(i)}, vlan: uint16(100 + i),
			ifName: fmt.Sprintf("eth%d", i), qos: uint16(i % 3), topic: fmt.Sprintf("plant/%d/temp", i), retain: i == 1,
		})
	}
	var v6 []tsharkV6
	for i := range 2 {
		v6 = append(v6, tsharkV6{
			src: netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", 10+i)), dst: netip.MustParseAddr("2001:db8:ffff::1"),
			srcPort: uint16(60000 + i), dstPort: 8883, packets: 4, octets: uint64(1 << (33 + i)),
			start: t0.Add(time.Duration(i) * time.Minute), end: t0.Add(time.Duration(i)*time.Minute + 2500*time.Microsecond),
			reason: 3, filters: []string{"a/+/c", fmt.Sprintf("dev/%d/#", i)}, corrRaw: []byte{0xde, 0xad, byte(i)}, version: 5,
		})
	}

	sink := udpSink(t)
	port := sink.LocalAddr().(*net.UDPAddr).Port
	file := filepath.Join(t.TempDir(), "ipfix.pcapng")
	stop := startCapture(t, fmt.Sprintf("udp port %d", port), file)
	conn, err := net.DialUDP("udp", nil, sink.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer conn.Close()
	var sent [][]byte
	b := NewBuilder(BuilderConfig{ObservationDomainID: 42}, func(m []byte) error {
		sent = append(sent, append([]byte(nil), m...))
		_, err := conn.Write(m)
		return err
	})
	enc := NewRecordEncoder(t4)
	for _, r := range v4 {
		enc.Reset(t4)
		enc.PutIP(r.src)
		enc.PutIP(r.dst)
		enc.PutUint(uint64(r.srcPort))
		enc.PutUint(uint64(r.dstPort))
		enc.PutUint(6)
		enc.PutUint(uint64(r.tos))
		enc.PutUint(uint64(r.flags))
		enc.PutUint(r.packets)
		enc.PutUint(r.octets)
		enc.PutTime(r.start)
		enc.PutTime(r.end)
		enc.PutUint(uint64(r.reason))
		enc.PutMAC(r.mac)
		enc.PutUint(uint64(r.vlan))
		enc.PutUint(4)
		enc.PutString(r.ifName)
		enc.PutUint(uint64(r.qos))
		enc.PutString(r.topic)
		enc.PutBool(r.retain)
		require.NoError(t, b.Add(t4, mustBytes(t, enc)))
	}
	for _, r := range v6 {
		enc.Reset(t6)
		enc.PutIP(r.src)
		enc.PutIP(r.dst)
		enc.PutUint(uint64(r.srcPort))
		enc.PutUint(uint64(r.dstPort))
		enc.PutUint(6)
		enc.PutUint(r.packets)
		enc.PutUint(r.octets)
		enc.PutTime(r.start)
		enc.PutTime(r.end)
		enc.PutUint(uint64(r.end.Sub(r.start).Microseconds()))
		enc.PutUint(uint64(r.reason))
		enc.PutStringList(SemanticAllOf, pen, MQTTTopicFilter, r.filters)
		enc.PutBytes(r.corrRaw)
		enc.PutUint(uint64(r.version))
		require.NoError(t, b.Add(t6, mustBytes(t, enc)))
	}
	require.NoError(t, b.Flush())
	require.Len(t, sent, 1)
	stop()

	args := []string{"-r", file, "-d", fmt.Sprintf("udp.port==%d,cflow", port), "-T", "fields",
		"-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=\t"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	require.NoError(t, err, "tshark -r: %s", out)
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	require.Len(t, lines, 1, "one captured message: %q", out)
	cols := strings.Split(lines[0], "\t")
	require.Len(t, cols, len(tsharkFields))
	got := map[string][]string{}
	for i, f := range tsharkFields {
		if cols[i] != "" {
			got[f] = strings.Split(cols[i], "|")
		}
	}
	t.Logf("tshark: %v", got)

	col := func(name string, f func(i int) string, n int) {
		t.Helper()
		var want []string
		for i := range n {
			want = append(want, f(i))
		}
		require.Equal(t, want, got[name], name)
	}
	n4, n6 := len(v4), len(v6)
	require.Equal(t, []string{"42"}, got["cflow.od_id"])
	require.Equal(t, []string{"0"}, got["cflow.sequence"])
	col("cflow.srcaddr", func(i int) string { return v4[i].src.String() }, n4)
	col("cflow.dstaddr", func(i int) string { return v4[i].dst.String() }, n4)
	col("cflow.srcaddrv6", func(i int) string { return v6[i].src.String() }, n6)
	col("cflow.dstaddrv6", func(i int) string { return v6[i].dst.String() }, n6)
	col("cflow.srcport", func(i int) string {
		if i < n4 {
			return strconv.Itoa(int(v4[i].srcPort))
		}
		return strconv.Itoa(int(v6[i-n4].srcPort))
	}, n4+n6)
	col("cflow.dstport", func(i int) string {
		if i < n4 {
			return strconv.Itoa(int(v4[i].dstPort))
		}
		return strconv.Itoa(int(v6[i-n4].dstPort))
	}, n4+n6)
	col("cflow.protocol", func(int) string { return "6" }, n4+n6)
	col("cflow.packets", func(i int) string {
		if i < n4 {
			return strconv.FormatUint(v4[i].packets, 10)
		}
		return strconv.FormatUint(v6[i-n4].packets, 10)
	}, n4+n6)
	col("cflow.octets", func(i int) string {
		if i < n4 {
			return strconv.FormatUint(v4[i].octets, 10)
		}
		return strconv.FormatUint(v6[i-n4].octets, 10)
	}, n4+n6)
	col("cflow.flow_end_reason", func(i int) string {
		if i < n4 {
			return strconv.Itoa(int(v4[i].reason))
		}
		return strconv.Itoa(int(v6[i-n4].reason))
	}, n4+n6)
	col("cflow.srcmac", func(i int) string { return net.HardwareAddr(v4[i].mac[:]).String() }, n4)
	col("cflow.vlanid", func(i int) string { return strconv.Itoa(int(v4[i].vlan)) }, n4)
	col("cflow.ip_version", func(int) string { return "4" }, n4)
	col("cflow.if_name", func(i int) string { return v4[i].ifName }, n4)
	require.Len(t, got["cflow.tos"], n4)
	require.Len(t, got["cflow.tcpflags"], n4)
	for i := range n4 {
		tos, err := strconv.ParseUint(got["cflow.tos"][i], 0, 8)
		require.NoError(t, err)
		require.Equal(t, uint64(v4[i].tos), tos)
		flags, err := strconv.ParseUint(got["cflow.tcpflags"][i], 0, 16)
		require.NoError(t, err)
		require.Equal(t, uint64(v4[i].flags), flags)
	}

	// Times: milliseconds exactly; nanoseconds within the 1 ns tshark loses
	// by truncating the NTP fraction.
	parse := func(s string) time.Time {
		tm, err := time.Parse("Jan _2, 2006 15:04:05.999999999 MST", s)
		require.NoError(t, err, s)
		return tm
	}
	require.Len(t, got["cflow.abstimestart"], n4+n6)
	require.Len(t, got["cflow.abstimeend"], n4+n6)
	for i := range n4 + n6 {
		start, end := parse(got["cflow.abstimestart"][i]), parse(got["cflow.abstimeend"][i])
		if i < n4 {
			require.Equal(t, v4[i].start, start)
			require.Equal(t, v4[i].end, end)
		} else {
			require.InDelta(t, 0, v6[i-n4].start.Sub(start), 1, "start %d", i)
			require.InDelta(t, 0, v6[i-n4].end.Sub(end), 1, "end %d", i)
		}
	}
	durations := map[string]bool{}
	for _, r := range v4 {
		durations[fmt.Sprintf("%.9f", r.end.Sub(r.start).Seconds())] = true
	}
	for _, r := range v6 {
		durations[fmt.Sprintf("%.9f", r.end.Sub(r.start).Seconds())] = true
	}
	require.NotEmpty(t, got["cflow.timedelta"])
	for _, d := range got["cflow.timedelta"] {
		require.True(t, durations[d], "duration %s", d)
	}

	// Enterprise fields: tshark shows them as private entries under PEN
	// 9999, with the bytes our decoder reads for them.
	for _, p := range got["cflow.template_ipfix_field_pen"] {
		require.Equal(t, "9999", p)
	}
	require.Len(t, got["cflow.template_ipfix_field_pen"], 6)
	var want []string
	s := NewSession(Config{Registry: reg}, testKey)
	require.NoError(t, s.Decode(sent[0], func(r Record) error {
		for i := range r.NumFields() {
			if r.Field(i).PEN != 0 {
				want = append(want, hex.EncodeToString(r.Value(i).Raw))
			}
		}
		return nil
	}))
	var entries []string
	for _, e := range got["cflow.enterprise_private_entry"] {
		entries = append(entries, strings.ReplaceAll(e, ":", ""))
	}
	require.Equal(t, want, entries)

	// No malformed-packet or error expert items.
	out, err = exec.Command("tshark", "-r", file, "-d", fmt.Sprintf("udp.port==%d,cflow", port),
		"-Y", "_ws.malformed || _ws.expert.severity >= error").Output()
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(string(out)), "tshark reports problems")
}
