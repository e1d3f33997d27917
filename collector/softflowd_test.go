package collector

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

// TestSoftflowdInterop has softflowd (a third-party exporter) read a pcap
// and export IPFIX to the collector: every record must decode with no
// template miss and be stored with its standard fields.
func TestSoftflowdInterop(t *testing.T) {
	bin, err := exec.LookPath("softflowd")
	require.NoError(t, err, "softflowd is needed: apt-get install softflowd")
	dir := t.TempDir()
	pcap := filepath.Join(dir, "in.pcap")
	f, err := os.Create(pcap)
	require.NoError(t, err)
	w := pcapgo.NewWriter(f)
	require.NoError(t, w.WriteFileHeader(65535, layers.LinkTypeEthernet))
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	type conv struct {
		src, dst     string
		sport, dport uint16
		tcp          bool
		packets      int
	}
	convs := []conv{
		{"10.1.0.1", "10.1.0.2", 40001, 1883, true, 5},
		{"10.1.0.3", "10.1.0.2", 40002, 1883, true, 3},
		{"10.1.0.4", "10.1.0.9", 5353, 53, false, 2},
	}
	n := 0
	for _, c := range convs {
		for i := 0; i < c.packets; i++ {
			eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.ParseIP(c.src).To4(), DstIP: net.ParseIP(c.dst).To4()}
			var l4 gopacket.SerializableLayer
			if c.tcp {
				ip.Protocol = layers.IPProtocolTCP
				tcp := &layers.TCP{SrcPort: layers.TCPPort(c.sport), DstPort: layers.TCPPort(c.dport), Seq: uint32(1000 + i*10), ACK: i > 0, SYN: i == 0, PSH: i > 0, Window: 100}
				_ = tcp.SetNetworkLayerForChecksum(ip)
				l4 = tcp
			} else {
				ip.Protocol = layers.IPProtocolUDP
				udp := &layers.UDP{SrcPort: layers.UDPPort(c.sport), DstPort: layers.UDPPort(c.dport)}
				_ = udp.SetNetworkLayerForChecksum(ip)
				l4 = udp
			}
			buf := gopacket.NewSerializeBuffer()
			require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
				eth, ip, l4, gopacket.Payload("0123456789")))
			n++
			ts := base.Add(time.Duration(n) * 10 * time.Millisecond)
			require.NoError(t, w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes()))
		}
	}
	require.NoError(t, f.Close())

	sink := &memSink{}
	c, addrs := start(t, Config{}, sink)
	// softflowd 1.1.0 truncates the -r path to 16 bytes and does not exit
	// after a file in foreground mode: run it in dir with short relative
	// paths (-D: foreground, debug) and stop it once the flows arrived.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-r", "in.pcap", "-n", addrs["udp"], "-v", "10", "-D", "-p", "pid", "-c", "ctl")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start(), "start softflowd")
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(20 * time.Second)
	for len(sink.snapshot()) < len(convs) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // nothing more may come
	docs := sink.snapshot()
	require.Len(t, docs, len(convs), "one flow per conversation; softflowd said: %s", out.String())
	require.Len(t, docs, len(convs), "one flow per conversation (softflowd is unidirectional; replies absent)")
	ex := c.Exporters()[netip.MustParseAddr("127.0.0.1")]
	require.Zero(t, ex.TemplateMisses)
	require.Zero(t, ex.Malformed)
	require.Equal(t, uint64(len(convs)), ex.OtherFlows)
	for _, cv := range convs {
		found := false
		for _, d := range docs {
			if d.SourceIPv4Address == cv.src && d.SourceTransportPort == cv.sport {
				found = true
				require.Equal(t, cv.dst, d.DestinationIPv4Address)
				require.Equal(t, cv.dport, d.DestinationTransportPort)
				require.Equal(t, uint64(cv.packets), d.PacketDeltaCount)
				require.NotEmpty(t, d.IPFIXFields, "the exporter's fields are kept")
				require.Empty(t, d.MQTTControlTypeName)
				require.False(t, d.FlowStart.IsZero(), "%v", d.IPFIXFields)
			}
		}
		require.True(t, found, "flow %v stored", cv)
	}
}
