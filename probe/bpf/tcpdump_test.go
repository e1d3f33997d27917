package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket/pcapgo"
)

// Differential test: for every link type and expression, Match must select
// exactly the packets tcpdump (libpcap) selects from the same pcap file.

var diffExprs = []string{
	"",
	"ip", "ip6", "arp", "rarp", "tcp", "udp", "icmp", "icmp6", "igmp", "sctp",
	"host 10.0.0.1",
	"src host 10.0.0.1",
	"dst host 10.0.0.2",
	"src and dst host 10.0.0.1",
	"src and dst net 10.0.0.0/8",
	"src or dst host 10.0.0.9",
	"host 10.0.0.1 and host 10.0.0.2",
	"host 10.0.0.1 or 192.168.1.5",
	"ip host 10.0.0.1",
	"arp host 10.0.0.1",
	"host 2001:db8::1",
	"ip6 src host 2001:db8::1",
	"ip6 dst host 2001:db8::2 and udp",
	"net 10.0.0.0/8",
	"net 192.168.0.0/16 or net 2001:db8::/32",
	"src net 10.0.0.0 mask 255.255.255.0",
	"net 10",
	"dst net 2001:db8:0:1::/64 or src net fe80::/10",
	"host 10.1",
	"port 1883",
	"port 1883 or 8883",
	"tcp port 1883",
	"udp port 1883",
	"sctp port 1883",
	"src port 1883",
	"dst port 1883 and tcp",
	"tcp port 1883 and not host 10.0.0.1",
	"portrange 1000-2000",
	"tcp dst portrange 8000-9000",
	"udp portrange 9000-50",
	"port 53 or port 1883 and ip6",
	"host (10.0.0.1 or 10.0.0.9) and port (1883 or 53)",
	"ether host 00:11:22:33:44:55",
	"ether src 00:11:22:33:44:55",
	"ether dst ff:ff:ff:ff:ff:ff",
	"ether proto 0x88cc",
	"ether proto 0x86dd or ether proto 0x806",
	"proto 17",
	"ip proto 6",
	"ip6 proto 6",
	"ip6 proto 17",
	"ip proto \\udp",
	"vlan",
	"vlan 100",
	"vlan and ip",
	"vlan 100 and tcp port 1883",
	"vlan 200 and vlan 100 and udp",
	"vlan or ip",
	"ip or vlan",
	"vlan 200 and ip6",
	"less 100",
	"greater 500",
	"len > 1000",
	"len - 14 >= 100",
	"tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
	"tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack = 0",
	"tcp[13] = 0x12",
	"ip[0] & 0xf > 5",
	"ip[6:2] & 0x1fff != 0",
	"ip[2:2] > 100",
	"udp[0:2] = 1883",
	"icmp[icmptype] = icmp-echo",
	"icmp6[icmp6type] = icmp6-echo",
	"ether[0] & 1 != 0",
	"tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x10",
	"ip6[6] = 58",
	"arp[7] = 2",
	"not tcp",
	"not (port 1883 or icmp)",
	"!ip && !ip6",
	"(tcp or udp) and not port 53",
	"host 10.0.0.1 and (port 1883 or port 8883)",
	"not host 10.0.0.1 or 10.0.0.2",
	"1 = 1",
	"2 > 3",
	"udp[4:2] - 8 > 10",
	"ip[2:2] / 4 * 4 = ip[2:2]",
	"len % 2 = 0",
	"ip[16] ^ 10 = 0",
	"ip[8] << 1 > 100",
	"-ip[8] > 0xffffff00",
	"tcp dst port 1883 or tcp src port 1883",
	"link[12:2] = 0x800",
}

var diffLinkTypes = []LinkType{
	LinkTypeEthernet, LinkTypeLinuxSLL, LinkTypeLinuxSLL2, LinkTypeNull, LinkTypeLoop,
	LinkTypeRaw, LinkTypeRawDLT12, LinkTypeIPv4, LinkTypeIPv6,
}

func requireTcpdump(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Fatalf("tcpdump not found in PATH: the differential test needs it; install the Debian package: apt-get install tcpdump")
	}
	return path
}

// tcpdumpSelect runs tcpdump on in and returns the data of the packets it
// writes out, or its error output.
func tcpdumpSelect(tcpdump, dir, in, expr string) ([][]byte, string, error) {
	out := filepath.Join(dir, "out.pcap")
	args := []string{"-Z", "root", "-r", in, "-w", out}
	if expr != "" {
		args = append(args, "--", expr)
	}
	cmd := exec.Command(tcpdump, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, stderr.String(), err
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, "", err
	}
	var pkts [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return pkts, "", nil
		}
		if err != nil {
			return nil, "", err
		}
		pkts = append(pkts, data)
	}
}

func TestDifferentialTcpdump(t *testing.T) {
	tcpdump := requireTcpdump(t)
	for _, lt := range diffLinkTypes {
		t.Run(fmt.Sprintf("%s_%d", lt, uint32(lt)), func(t *testing.T) {
			dir := t.TempDir()
			fs := frames(t, lt)
			in := filepath.Join(dir, "in.pcap")
			if err := os.WriteFile(in, writePcap(t, lt, fs), 0o644); err != nil {
				t.Fatal(err)
			}
			agreedErrors := 0
			for _, expr := range diffExprs {
				theirs, stderr, terr := tcpdumpSelect(tcpdump, dir, in, expr)
				prog, err := Compile(expr, lt, 0)
				if terr != nil {
					if strings.Contains(stderr, "expression rejects all packets") && err == nil {
						theirs = nil // libpcap refuses a filter that matches nothing
					} else if err != nil {
						agreedErrors++
						continue
					} else {
						t.Errorf("%q: tcpdump rejects it (%s) but Compile accepted it", expr, strings.TrimSpace(stderr))
						continue
					}
				}
				if err != nil {
					t.Errorf("%q: tcpdump accepts it but Compile failed: %v", expr, err)
					continue
				}
				var ours [][]byte
				var names []string
				for _, f := range fs {
					if prog.MatchLen(f.data, f.wireLen) {
						ours = append(ours, f.data)
						names = append(names, f.name)
					}
				}
				if !sameSequence(ours, theirs) {
					t.Errorf("%q: we select %d packets %q, tcpdump selects %d:\n%s\nprogram:\n%s",
						expr, len(ours), names, len(theirs), describe(fs, theirs), prog)
				}
			}
			t.Logf("%d expressions, %d rejected by both tcpdump and Compile", len(diffExprs), agreedErrors)
		})
	}
}

func sameSequence(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// describe names tcpdump's selection by matching it against the corpus in order.
func describe(fs []frame, sel [][]byte) string {
	var names []string
	j := 0
	for _, f := range fs {
		if j < len(sel) && bytes.Equal(f.data, sel[j]) {
			names = append(names, f.name)
			j++
		}
	}
	return fmt.Sprintf("%q", names)
}
