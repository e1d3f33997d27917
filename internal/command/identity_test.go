package command

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// splitPcap writes the first n packets of a classic pcap file to a and the
// rest to b, both with the original file header.
func splitPcap(t *testing.T, src, a, b string, n int) int {
	t.Helper()
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.Greater(t, len(data), 24)
	magic := binary.LittleEndian.Uint32(data)
	var order binary.ByteOrder = binary.LittleEndian
	if magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1 {
		order = binary.BigEndian
	}
	hdr := data[:24]
	off, i, cut := 24, 0, -1
	for off+16 <= len(data) {
		if i == n {
			cut = off
		}
		incl := int(order.Uint32(data[off+8:]))
		off += 16 + incl
		i++
	}
	require.Positive(t, cut, "fewer than %d packets", n)
	require.NoError(t, os.WriteFile(a, data[:cut], 0o644))
	require.NoError(t, os.WriteFile(b, append(append([]byte{}, hdr...), data[cut:]...), 0o644))
	return i
}

type idLine struct {
	SrcAddr string `json:"sourceIPv4Address"`
	DstAddr string `json:"destinationIPv4Address"`
	SrcPort int    `json:"sourceTransportPort"`
	DstPort int    `json:"destinationTransportPort"`
	Type    string `json:"mqttControlTypeName"`
	PID     int    `json:"mqttPacketId"`
	Start   int64  `json:"flowStartNs"`
	Src     string `json:"mqttSrcClientId"`
	Dst     string `json:"mqttDstClientId"`
	Source  string `json:"mqttIdentitySource"`
}

func (l idLine) key() string {
	return fmt.Sprintf("%s:%d>%s:%d %s %d %d", l.SrcAddr, l.SrcPort, l.DstAddr, l.DstPort, l.Type, l.PID, l.Start)
}

func idLines(t *testing.T, out string) []idLine {
	t.Helper()
	var ls []idLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var l idLine
		require.NoError(t, json.Unmarshal([]byte(line), &l), line)
		ls = append(ls, l)
	}
	return ls
}

// TestCollectorIdentityAcrossFiles: a capture is split in two; each part
// is turned into IPFIX by a probe without state (the second probe never
// sees the CONNECTs), and both files are collected, one after the other,
// into one data directory. The second part's flows get their client ids
// from the identity table the first run persisted, and every id equals
// the uncut capture's.
func TestCollectorIdentityAcrossFiles(t *testing.T) {
	sample, err := filepath.Abs("../../testdata/sample.pcap")
	require.NoError(t, err)
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "p1.pcap"), filepath.Join(dir, "p2.pcap")
	total := splitPcap(t, sample, p1, p2, 0)
	splitPcap(t, sample, p1, p2, total/3)

	uncut := map[string]idLine{}
	for _, l := range idLines(t, run(t, "probe", "--read", sample, "--stdout")) {
		uncut[l.key()] = l
	}
	x1, x2 := filepath.Join(dir, "p1.ipfix"), filepath.Join(dir, "p2.ipfix")
	run(t, "probe", "--read", p1, "--ipfix-file", x1)
	second := idLines(t, run(t, "probe", "--read", p2, "--ipfix-file", x2, "--stdout"))
	unnamed := 0
	for _, l := range second {
		if l.Src == "" || l.Dst == "" {
			unnamed++
		}
	}
	require.Positive(t, unnamed, "the second probe run lacks client ids (otherwise this test proves nothing)")

	data := filepath.Join(dir, "data")
	run(t, "collect", "--read", x1, "--data-dir", data)
	run(t, "collect", "--read", x2, "--data-dir", data)
	stored := idLines(t, run(t, "query", "--data-dir", data, "--limit", "0"))
	fromCollector, compared := 0, 0
	for _, l := range stored {
		want, ok := uncut[l.key()]
		if !ok {
			continue // a flow the cut changed (it started in part 1)
		}
		compared++
		require.Equal(t, want.Src, l.Src, "%s", l.key())
		require.Equal(t, want.Dst, l.Dst, "%s", l.key())
		if l.Source == "collector" {
			fromCollector++
		}
	}
	require.GreaterOrEqual(t, compared, len(uncut)*9/10)
	require.Equal(t, unnamed, fromCollector, "every flow the second probe could not name was named by the collector")
}
