package ipfix

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

// pcapFlow is one unidirectional flow the test pcap contains.
type pcapFlow struct {
	src, dst         netip.Addr
	proto            uint8
	srcPort, dstPort uint16 // ICMP: 0, and type<<8|code in dstPort as softflowd reports
	packets, octets  uint64 // octets: IP length (header + payload)
	first, last      time.Time
	convFirst        time.Time // first and last packet of the conversation
	convLast         time.Time
}

func (f pcapFlow) key() string {
	return fmt.Sprintf("%s:%d>%s:%d/%d", f.src, f.srcPort, f.dst, f.dstPort, f.proto)
}

// writeTestPcap writes TCP, UDP and ICMP packets over IPv4 and IPv6 and
// returns the flows they form.
func writeTestPcap(t *testing.T, path string, t0 time.Time) map[string]*pcapFlow {
	t.Helper()
	fh, err := os.Create(path)
	require.NoError(t, err)
	defer fh.Close()
	w := pcapgo.NewWriter(fh)
	require.NoError(t, w.WriteFileHeader(65535, layers.LinkTypeEthernet))
	flows := map[string]*pcapFlow{}
	at := t0
	eth := func(v6 bool) *layers.Ethernet {
		e := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		if v6 {
			e.EthernetType = layers.EthernetTypeIPv6
		}
		return e
	}
	write := func(src, dst string, proto uint8, sp, dp uint16, payload int, icmpType uint8) {
		s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
		v6 := s.Is6()
		var ls []gopacket.SerializableLayer
		var ip4 *layers.IPv4
		var ip6 *layers.IPv6
		ls = append(ls, eth(v6))
		if v6 {
			ip6 = &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: s.AsSlice(), DstIP: d.AsSlice(), NextHeader: layers.IPProtocol(proto)}
			ls = append(ls, ip6)
		} else {
			ip4 = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, SrcIP: s.AsSlice(), DstIP: d.AsSlice(), Protocol: layers.IPProtocol(proto)}
			ls = append(ls, ip4)
		}
		var nl gopacket.NetworkLayer = ip4
		if v6 {
			nl = ip6
		}
		switch proto {
		case 6:
			tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: 1, Ack: 1, PSH: true, ACK: true, Window: 512}
			require.NoError(t, tcp.SetNetworkLayerForChecksum(nl))
			ls = append(ls, tcp)
		case 17:
			udp := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
			require.NoError(t, udp.SetNetworkLayerForChecksum(nl))
			ls = append(ls, udp)
		case 1:
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(icmpType, 0), Id: 1, Seq: 1})
		case 58:
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(icmpType, 0)}
			require.NoError(t, icmp.SetNetworkLayerForChecksum(nl))
			ls = append(ls, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
		}
		ls = append(ls, gopacket.Payload(bytes.Repeat([]byte{'x'}, payload)))
		buf := gopacket.NewSerializeBuffer()
		require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
		data := buf.Bytes()
		require.NoError(t, w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(data), Length: len(data)}, data))

		f := pcapFlow{src: s, dst: d, proto: proto, srcPort: sp, dstPort: dp}
		if proto == 1 || proto == 58 {
			f.srcPort, f.dstPort = 0, uint16(icmpType)<<8
		}
		k := f.key()
		if flows[k] == nil {
			f.first = at
			flows[k] = &f
		}
		flows[k].packets++
		flows[k].octets += uint64(len(data) - 14)
		flows[k].last = at
		at = at.Add(10 * time.Millisecond)
	}
	for i := range 3 {
		write("10.1.1.1", "10.1.1.2", 6, 40000, 1883, 10+i, 0)
	}
	write("10.1.1.2", "10.1.1.1", 6, 1883, 40000, 4, 0)
	write("10.1.1.3", "10.1.1.4", 17, 5353, 53, 20, 0)
	write("10.1.1.3", "10.1.1.4", 17, 5353, 53, 30, 0)
	write("10.1.1.5", "10.1.1.6", 1, 0, 0, 8, 8)
	write("2001:db8::1", "2001:db8::2", 6, 40001, 8883, 100, 0)
	write("2001:db8::1", "2001:db8::2", 6, 40001, 8883, 0, 0)
	write("2001:db8::3", "2001:db8::4", 17, 123, 123, 48, 0)
	write("2001:db8::5", "2001:db8::6", 58, 0, 0, 16, 128)
	// softflowd tracks a conversation (both directions) and stamps both of
	// its records with the conversation's first and last packet.
	for _, f := range flows {
		f.convFirst, f.convLast = f.first, f.last
		r := pcapFlow{src: f.dst, dst: f.src, proto: f.proto, srcPort: f.dstPort, dstPort: f.srcPort}
		if rev, ok := flows[r.key()]; ok {
			if rev.first.Before(f.convFirst) {
				f.convFirst = rev.first
			}
			if rev.last.After(f.convLast) {
				f.convLast = rev.last
			}
		}
	}
	return flows
}

// TestSoftflowdExportsToOurDecoder: softflowd reads a pcap and exports
// IPFIX to our decoder over UDP; every record decodes with no template
// miss and matches the pcap. softflowd's default templates use sysUpTime
// timestamps and an options template with systemInitTimeMilliseconds;
// with -A milli / -A nano it sends flowStart/EndMilli/Nanoseconds.
func TestSoftflowdExportsToOurDecoder(t *testing.T) {
	softflowd := requireTool(t, "softflowd", "softflowd")
	for _, timeFormat := range []string{"", "milli", "nano"} {
		t.Run("time="+timeFormat, func(t *testing.T) {
			dir := t.TempDir()
			pcap := filepath.Join(dir, "flows.pcap")
			t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
			want := writeTestPcap(t, pcap, t0)

			sink := udpSink(t)
			port := sink.LocalAddr().(*net.UDPAddr).Port
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// softflowd truncates the -r path to 16 bytes: pass it relative.
			// -D: foreground and debug (with -d it does not exit after -r).
			args := []string{"-r", filepath.Base(pcap), "-n", fmt.Sprintf("127.0.0.1:%d", port), "-v", "10", "-D", "-p", "pid", "-c", "ctl"}
			if timeFormat != "" {
				args = append(args, "-A", timeFormat)
			}
			cmd := exec.CommandContext(ctx, softflowd, args...)
			cmd.Dir = dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}()

			dec := NewDecoder(Config{})
			got := map[string]map[string]any{}
			buf := make([]byte, 65535)
			require.NoError(t, sink.SetReadDeadline(time.Now().Add(20*time.Second)))
			for len(got) < len(want) {
				n, from, err := sink.ReadFromUDPAddrPort(buf)
				require.NoError(t, err, "waiting for softflowd's export (%d of %d flows); its output:\n%s", len(got), len(want), out.String())
				err = dec.Decode(SessionKey{Exporter: from, Transport: UDP}, buf[:n], func(r Record) error {
					m := r.Map()
					if r.Template.IsOptions() {
						require.Contains(t, m, "systemInitTimeMilliseconds")
						return nil
					}
					for _, f := range r.Template.Fields {
						_, known := (*Registry)(nil).Lookup(f.PEN, f.ID)
						require.True(t, known, "softflowd element %d/%d missing from the registry", f.PEN, f.ID)
					}
					f := pcapFlow{proto: uint8(m["protocolIdentifier"].(uint64))}
					if v, ok := m["sourceIPv4Address"]; ok {
						f.src, f.dst = v.(netip.Addr), m["destinationIPv4Address"].(netip.Addr)
					} else {
						f.src, f.dst = m["sourceIPv6Address"].(netip.Addr), m["destinationIPv6Address"].(netip.Addr)
					}
					if v, ok := m["sourceTransportPort"]; ok {
						f.srcPort, f.dstPort = uint16(v.(uint64)), uint16(m["destinationTransportPort"].(uint64))
					}
					if v, ok := m["icmpTypeCodeIPv4"]; ok {
						f.dstPort = uint16(v.(uint64))
					}
					if v, ok := m["icmpTypeCodeIPv6"]; ok {
						f.dstPort = uint16(v.(uint64))
					}
					require.NotContains(t, got, f.key())
					got[f.key()] = m
					return nil
				})
				require.NoError(t, err)
			}
			c := dec.Counters()
			require.Zero(t, c.DataSetsBuffered, "template misses")
			require.Zero(t, c.DataSetsDropped)
			require.Zero(t, c.MessagesMalformed)
			require.Zero(t, c.RecordsLost)

			var base time.Time // start of the earliest flow, in the exporter's clock
			for k, w := range want {
				m, ok := got[k]
				require.True(t, ok, "flow %s not exported; got %v", k, keys(got))
				require.Equal(t, w.packets, m["packetDeltaCount"], k)
				require.Equal(t, w.octets, m["octetDeltaCount"], k)
				if w.proto == 6 {
					require.Equal(t, uint64(0x18), m["tcpControlBits"], k) // PSH|ACK
				}
				var start, end time.Time
				switch timeFormat {
				case "":
					start = time.UnixMilli(int64(m["flowStartSysUpTime"].(uint64)))
					end = time.UnixMilli(int64(m["flowEndSysUpTime"].(uint64)))
				case "milli":
					start, end = m["flowStartMilliseconds"].(time.Time), m["flowEndMilliseconds"].(time.Time)
				case "nano":
					start, end = m["flowStartNanoseconds"].(time.Time), m["flowEndNanoseconds"].(time.Time)
				}
				require.Equal(t, w.convLast.Sub(w.convFirst), end.Sub(start), "duration of %s", k)
				// The exporter's clock may be offset from the pcap's; the
				// offset must be the same for every flow.
				if base.IsZero() {
					base = start.Add(-w.convFirst.Sub(t0))
				}
				require.Equal(t, w.convFirst.Sub(t0), start.Sub(base), "start of %s", k)
			}
			require.Len(t, got, len(want))
		})
	}
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
