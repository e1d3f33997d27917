package ipfix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestNfcapdReadsOurMessages sends our messages to nfcapd (nfdump 1.7)
// and checks with nfdump that it stores the standard fields correctly:
// addresses, ports, protocol, packets, bytes, and times. nfdump 1.7.1 does
// not read flowStart/EndNanoseconds (156/157; it stores 1970-01-01), so
// times are checked on a template with flowStart/EndMilliseconds (152/153);
// an exporter that must feed nfdump should add those. The MQTT template's
// enterprise fields are skipped by nfcapd without harm.
func TestNfcapdReadsOurMessages(t *testing.T) {
	nfcapd := requireTool(t, "nfcapd", "nfdump")
	nfdump := requireTool(t, "nfdump", "nfdump")
	dir := t.TempDir()
	port := freeUDPPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nfcapd, "-b", "127.0.0.1", "-p", fmt.Sprint(port), "-w", dir, "-P", filepath.Join(dir, "pid"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	time.Sleep(500 * time.Millisecond) // let nfcapd bind

	reg := NewRegistry(DefaultMQTTPEN)
	tms, err := NewTemplate(reg, 300,
		FieldSpec{ID: 8, Length: 4}, FieldSpec{ID: 12, Length: 4},
		FieldSpec{ID: 7, Length: 2}, FieldSpec{ID: 11, Length: 2}, FieldSpec{ID: 4, Length: 1},
		FieldSpec{ID: 2, Length: 8}, FieldSpec{ID: 1, Length: 8},
		FieldSpec{ID: 152, Length: 8}, FieldSpec{ID: 153, Length: 8},
	)
	require.NoError(t, err)
	tm := mqttTemplate(t, reg, 301)

	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)
	defer conn.Close()
	b := NewBuilder(BuilderConfig{ObservationDomainID: 1}, func(m []byte) error { _, err := conn.Write(m); return err })
	enc := NewRecordEncoder(tms)
	t0 := time.Date(2025, 7, 8, 9, 10, 11, 123000000, time.UTC)
	enc.PutIP(netip.MustParseAddr("192.0.2.1"))
	enc.PutIP(netip.MustParseAddr("198.51.100.2"))
	enc.PutUint(40000)
	enc.PutUint(1883)
	enc.PutUint(6)
	enc.PutUint(3)
	enc.PutUint(456)
	enc.PutTime(t0)
	enc.PutTime(t0.Add(2 * time.Second))
	require.NoError(t, b.Add(tms, mustBytes(t, enc)))
	f := sampleFlow(5)
	encodeFlow(enc, tm, &f)
	require.NoError(t, b.Add(tm, mustBytes(t, enc)))
	require.NoError(t, b.Flush())

	time.Sleep(time.Second)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	_ = cmd.Wait()
	files, _ := filepath.Glob(filepath.Join(dir, "nfcapd.*"))
	require.Len(t, files, 1, "nfcapd output:\n%s", out.String())
	dump := exec.Command(nfdump, "-r", files[0], "-o", "json")
	dump.Env = append(os.Environ(), "TZ=UTC")
	js, err := dump.Output()
	require.NoError(t, err, "%s", js)
	var recs []map[string]any
	require.NoError(t, json.Unmarshal(js, &recs), "%s", js)
	require.Len(t, recs, 2, "%s", js)
	byPort := map[float64]map[string]any{}
	for _, r := range recs {
		byPort[r["src_port"].(float64)] = r
	}
	ms, ok := byPort[40000]
	require.True(t, ok, "%s", js)
	require.Equal(t, "192.0.2.1", ms["src4_addr"])
	require.Equal(t, "198.51.100.2", ms["dst4_addr"])
	require.Equal(t, 1883.0, ms["dst_port"])
	require.Equal(t, 6.0, ms["proto"])
	require.Equal(t, 3.0, ms["in_packets"])
	require.Equal(t, 456.0, ms["in_bytes"])
	require.Equal(t, "2025-07-08T09:10:11.123", ms["first"])
	require.Equal(t, "2025-07-08T09:10:13.123", ms["last"])

	mq, ok := byPort[float64(f.SrcPort)]
	require.True(t, ok, "%s", js)
	require.Equal(t, f.Src.String(), mq["src4_addr"])
	require.Equal(t, f.Dst.String(), mq["dst4_addr"])
	require.Equal(t, float64(f.DstPort), mq["dst_port"])
	require.Equal(t, 6.0, mq["proto"])
	require.Equal(t, float64(f.Packets), mq["in_packets"])
	require.Equal(t, float64(f.Octets), mq["in_bytes"])
}
