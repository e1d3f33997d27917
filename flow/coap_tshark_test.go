package flow

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/ipfix"
)

// writeIPFIXPcap writes each message as one UDP datagram from
// 127.0.0.1:40000 to 127.0.0.1:4739 into a pcap file.
func writeIPFIXPcap(t *testing.T, path string, msgs [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	w := pcapgo.NewWriter(f)
	require.NoError(t, w.WriteFileHeader(65535, layers.LinkTypeEthernet))
	ts := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	for i, m := range msgs {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1), Id: uint16(i)}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 4739}
		require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
		buf := gopacket.NewSerializeBuffer()
		require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, udp, gopacket.Payload(m)))
		data := buf.Bytes()
		require.NoError(t, w.WritePacket(gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond),
			CaptureLength: len(data), Length: len(data)}, data))
	}
}

// tsharkFrames runs tshark's IPFIX (cflow) dissector over file and returns,
// per frame, every occurrence of each field.
func tsharkFrames(t *testing.T, file string, fields []string) []map[string][]string {
	t.Helper()
	args := []string{"-r", file, "-d", "udp.port==4739,cflow", "-T", "fields",
		"-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=\t"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	require.NoError(t, err, "tshark %v: %s", args, out)
	var frames []map[string][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		cols := strings.Split(line, "\t")
		require.Len(t, cols, len(fields), line)
		m := map[string][]string{}
		for i, f := range fields {
			if cols[i] != "" {
				m[f] = strings.Split(cols[i], "|")
			}
		}
		frames = append(frames, m)
	}
	return frames
}

// TestTsharkDecodesCoAPExport: tshark, an independent IPFIX decoder, reads
// the probe's CoAP export (templates 258 and 259, MQTT flows between) as
// well-formed: the template ids, every field's element id, enterprise
// number and length as we define them, and the standard fields of every
// data record with our values. (tshark shows our enterprise elements as
// raw bytes; their values are checked by TestCoAPIPFIXRoundTrip.)
func TestTsharkDecodesCoAPExport(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark not found in PATH: install it (Debian: apt-get install tshark)")
	}
	var recs []Record
	for _, c := range coapRecords() {
		recs = append(recs, c.rec)
	}
	recs = append(recs, sampleRecords()[:2]...) // an MQTT IPv4 and IPv6 flow
	msgs := exportMessages(t, ipfix.UDP, recs)
	file := filepath.Join(t.TempDir(), "coap-ipfix.pcap")
	writeIPFIXPcap(t, file, msgs)

	fields := []string{"frame.number", "_ws.malformed", "_ws.expert.severity", "cflow.len", "cflow.od_id",
		"cflow.template_id", "cflow.template_field_count", "cflow.template_ipfix_pen_provided", "cflow.template_ipfix_field_type", "cflow.template_ipfix_field_type_enterprise",
		"cflow.template_ipfix_field_pen",
		"cflow.template_field_length", "cflow.flowset_id",
		"cflow.srcaddr", "cflow.dstaddr", "cflow.srcaddrv6", "cflow.dstaddrv6", "cflow.srcport", "cflow.dstport",
		"cflow.protocol", "cflow.packets", "cflow.octets", "cflow.flow_end_reason", "cflow.flow_id"}
	frames := tsharkFrames(t, file, fields)
	require.Len(t, frames, len(msgs), "one frame per message")
	all := map[string][]string{}
	for i, fr := range frames {
		require.Empty(t, fr["_ws.malformed"], "frame %d malformed: %v", i+1, fr)
		for _, sev := range fr["_ws.expert.severity"] {
			// 8388608 is PI_ERROR, 6291456 PI_WARN (epan/proto.h).
			require.NotContains(t, []string{"8388608", "6291456"}, sev, "frame %d: expert error or warning %v", i+1, fr)
		}
		require.Equal(t, []string{strconv.Itoa(len(msgs[i]))}, fr["cflow.len"], "message length")
		require.Equal(t, []string{"1"}, fr["cflow.od_id"])
		for k, v := range fr {
			all[k] = append(all[k], v...)
		}
	}

	// The templates as we define them, in each frame in the order tshark
	// lists them: ids, field count, element ids (tshark shows the type
	// without the enterprise bit), PENs of the enterprise fields, lengths
	// (65535: variable).
	enc, err := NewEncoder(ipfix.DefaultMQTTPEN)
	require.NoError(t, err)
	ours := map[string]*ipfix.Template{}
	for _, tm := range enc.Templates() {
		ours[strconv.Itoa(int(tm.ID))] = tm
	}
	seen := map[string]bool{}
	for i, fr := range frames {
		var counts, types, pens, lengths []string
		for _, id := range fr["cflow.template_id"] {
			tm := ours[id]
			require.NotNil(t, tm, "frame %d: template %s is not ours", i+1, id)
			seen[id] = true
			counts = append(counts, strconv.Itoa(len(tm.Fields)))
			for _, f := range tm.Fields {
				types = append(types, strconv.Itoa(int(f.ID)))
				lengths = append(lengths, strconv.Itoa(int(f.Length)))
				if f.PEN != 0 {
					pens = append(pens, strconv.Itoa(int(f.PEN)))
				}
			}
		}
		require.Equal(t, counts, fr["cflow.template_field_count"], "frame %d", i+1)
		// tshark lists standard and enterprise element ids apart; merge
		// them in template order by its pen-provided bit.
		var theirs []string
		std, ent := fr["cflow.template_ipfix_field_type"], fr["cflow.template_ipfix_field_type_enterprise"]
		for _, p := range fr["cflow.template_ipfix_pen_provided"] {
			if p == "1" {
				require.NotEmpty(t, ent)
				theirs, ent = append(theirs, ent[0]), ent[1:]
			} else {
				require.NotEmpty(t, std)
				theirs, std = append(theirs, std[0]), std[1:]
			}
		}
		require.Empty(t, std)
		require.Empty(t, ent)
		require.Equal(t, types, theirs, "frame %d", i+1)
		require.Equal(t, pens, fr["cflow.template_ipfix_field_pen"], "frame %d", i+1)
		require.Equal(t, lengths, fr["cflow.template_field_length"], "frame %d", i+1)
	}
	require.Equal(t, map[string]bool{"256": true, "257": true, "258": true, "259": true}, seen, "every template sent and read")
	ids := len(seen)

	// Every data record, in order, with our standard fields.
	var v4src, v4dst, v6src, v6dst, sport, dport, proto, pkts, octs, reason, flowID, sets []string
	for i := range recs {
		r := &recs[i]
		tm, _, err := enc.Encode(r)
		require.NoError(t, err)
		sets = append(sets, strconv.Itoa(int(tm.ID)))
		if r.SrcAddr.Is4() {
			v4src, v4dst = append(v4src, r.SrcAddr.String()), append(v4dst, r.DstAddr.String())
		} else {
			v6src, v6dst = append(v6src, r.SrcAddr.String()), append(v6dst, r.DstAddr.String())
		}
		sport = append(sport, strconv.Itoa(int(r.SrcPort)))
		dport = append(dport, strconv.Itoa(int(r.DstPort)))
		proto = append(proto, strconv.Itoa(int(r.Protocol)))
		pkts = append(pkts, strconv.FormatUint(r.Packets, 10))
		octs = append(octs, strconv.FormatUint(r.Octets, 10))
		reason = append(reason, strconv.Itoa(int(r.EndReason)))
		flowID = append(flowID, strconv.FormatUint(r.FlowID, 10))
	}
	var dataSets []string
	for _, s := range all["cflow.flowset_id"] {
		if s != "2" { // template sets
			dataSets = append(dataSets, s)
		}
	}
	require.Equal(t, compact(sets), dataSets, "one data set per run of records of a template")
	require.Equal(t, v4src, all["cflow.srcaddr"])
	require.Equal(t, v4dst, all["cflow.dstaddr"])
	require.Equal(t, v6src, all["cflow.srcaddrv6"])
	require.Equal(t, v6dst, all["cflow.dstaddrv6"])
	require.Equal(t, sport, all["cflow.srcport"])
	require.Equal(t, dport, all["cflow.dstport"])
	require.Equal(t, proto, all["cflow.protocol"])
	require.Equal(t, pkts, all["cflow.packets"])
	require.Equal(t, octs, all["cflow.octets"])
	require.Equal(t, reason, all["cflow.flow_end_reason"])
	require.Equal(t, flowID, all["cflow.flow_id"])
	t.Logf("tshark read %d messages, %d templates, %d records", len(frames), ids, len(recs))
}

// compact drops consecutive repeats.
func compact(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
