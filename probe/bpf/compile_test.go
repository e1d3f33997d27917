package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	netbpf "golang.org/x/net/bpf"
)

func TestCompileAccepts(t *testing.T) {
	good := []string{
		"", "  \t", "tcp",
		"host 10.0.0.1 && port 1883",
		"host 10.0.0.1 || ! port 1883",
		"src or dst port 1883",
		"dst and src host 10.0.0.1",
		"tcp src port 1883 or 8883 or 1884",
		"port 010",       // octal, like libpcap: port 8
		"port 0x75b",     // hexadecimal
		"(((tcp)))",      // nested parentheses
		"(len + 1) > 10", // parenthesised arithmetic at the start of a term
		"tcp[13:1] & 2 = 2",
		"ip[0:4] = 0x45000054",
		"ether proto \\ip6",
		"ip6 proto \\icmp6",
		"net 10.0.0.0/8 and not net 10.1.0.0/16",
		"host ::ffff:10.0.0.1",
		"host ::1/128",
		"net ::/0",
		"less 64 or greater 1400",
		"vlan 4095",
		"ip[ip[0] & 0xf] = 0",
		"tcp[tcp[0]] = tcp[1]",
		"ether[0:4] + ether[4:2] > ip[2:2] * 2 - len % 7",
		"portrange 1883-1883",
		"host 10.0.0.1 and not 10.0.0.2",
		"port 1 or (2 or 3)",
	}
	for _, expr := range good {
		p, err := Compile(expr, LinkTypeEthernet, 0)
		if err != nil {
			t.Errorf("%q: %v", expr, err)
			continue
		}
		if _, err := netbpf.NewVM(p.Instructions()); err != nil {
			t.Errorf("%q: x/net/bpf rejects the program: %v", expr, err)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		expr  string
		kind  error
		token string // expected Error.Token, when not empty
	}{
		{"host", ErrSyntax, ""},
		{"tcp port", ErrSyntax, ""},
		{"host 10.0.0.1 and", ErrSyntax, ""},
		{"(tcp", ErrSyntax, ""},
		{"tcp)", ErrSyntax, ")"},
		{"10.0.0.1", ErrSyntax, ""},         // bare id with nothing to inherit
		{"tcp or 80", ErrSyntax, ""},        // "tcp" has no qualifiers to inherit
		{"vlan 100 or 200", ErrSyntax, ""},  // nor has vlan
		{"len-1 > 10", ErrSyntax, ""},       // like libpcap, "len-1" is one word
		{"tcp[13] &", ErrSyntax, ""},        // incomplete arithmetic
		{"tcp[13]", ErrSyntax, ""},          // a value is not a test
		{"host 10.0.0.1 $", ErrSyntax, "$"}, // unknown character
		{"ip proto tcp", ErrSyntax, ""},     // names after proto need a backslash
		{"host example.com", ErrUnsupported, "example.com"},
		{"src host mqtt-broker", ErrUnsupported, "mqtt-broker"},
		{"port mqtt", ErrUnsupported, "mqtt"},
		{"tcp portrange http-https", ErrUnsupported, "http-https"},
		{"gateway 10.0.0.1", ErrUnsupported, "gateway"},
		{"decnet host 10.15", ErrUnsupported, "decnet"},
		{"atalk", ErrUnsupported, "atalk"},
		{"ip broadcast", ErrUnsupported, "broadcast"},
		{"ether multicast", ErrUnsupported, "multicast"},
		{"inbound", ErrUnsupported, "inbound"},
		{"mpls 10", ErrUnsupported, "mpls"},
		{"ip proto \\ospfigp", ErrUnsupported, "ospfigp"},
		{"ether proto 100", ErrUnsupported, "100"}, // 802.3 length/LLC
		{"port 70000", ErrInvalid, "70000"},
		{"portrange 1-70000", ErrInvalid, ""},
		{"ip port 80", ErrInvalid, "80"},
		{"icmp port 80", ErrInvalid, "80"},
		{"tcp host 10.0.0.1", ErrInvalid, "10.0.0.1"},
		{"ip host 2001:db8::1", ErrInvalid, "2001:db8::1"},
		{"ip6 host 10.0.0.1", ErrInvalid, "10.0.0.1"},
		{"ether host 10.0.0.1", ErrInvalid, "10.0.0.1"},
		{"host 00:11:22:33:44:55", ErrInvalid, "00:11:22:33:44:55"},
		{"net 10.0.0.1/8", ErrInvalid, "10.0.0.1"},
		{"net 10.0.0.0/33", ErrInvalid, "33"},
		{"host 10.0.0.0/8", ErrInvalid, "10.0.0.0"},
		{"src 10.0.0.0/8", ErrInvalid, "10.0.0.0"},
		{"net 2001:db8::1/32", ErrInvalid, "2001:db8::1"},
		{"host 2001:db8::/32", ErrInvalid, "2001:db8::"},
		{"proto 300", ErrInvalid, "300"},
		{"tcp proto 6", ErrInvalid, "proto"},
		{"vlan 5000", ErrInvalid, "5000"},
		{"tcp[13:3] = 1", ErrInvalid, "3"},
		{"ip[1/0] = 1", ErrInvalid, ""},
		{"len % 0 = 1", ErrInvalid, ""},
		{"ip[1 << 32] = 1", ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := Compile(tt.expr, LinkTypeEthernet, 0)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Compile(%q) = %v, want %v", tt.expr, err, tt.kind)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not an *Error", err)
			}
			if fe.Expr != tt.expr {
				t.Errorf("Error.Expr = %q, want %q", fe.Expr, tt.expr)
			}
			if tt.token != "" && fe.Token != tt.token {
				t.Errorf("Error.Token = %q, want %q (%v)", fe.Token, tt.token, err)
			}
			if tt.kind == ErrUnsupported && !strings.Contains(err.Error(), "supported primitive") {
				t.Errorf("unsupported error does not point to the alternatives: %v", err)
			}
		})
	}
}

func TestLinkTypeErrors(t *testing.T) {
	if _, err := Compile("tcp", LinkType(105), 0); !errors.Is(err, ErrLinkType) {
		t.Errorf("802.11: got %v, want ErrLinkType", err)
	}
	for _, lt := range []LinkType{LinkTypeLinuxSLL, LinkTypeLinuxSLL2, LinkTypeNull, LinkTypeRaw, LinkTypeIPv4} {
		for _, expr := range []string{"vlan", "ether host 00:11:22:33:44:55", "tcp or vlan 10"} {
			_, err := Compile(expr, lt, 0)
			var fe *Error
			if !errors.Is(err, ErrLinkType) || !errors.As(err, &fe) || fe.Token == "" {
				t.Errorf("%v %q: got %v, want ErrLinkType naming the token", lt, expr, err)
			}
		}
	}
}

func TestSnaplen(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, DefaultSnaplen}, {-1, DefaultSnaplen}, {96, 96}, {65535, 65535}} {
		p, err := Compile("ip", LinkTypeEthernet, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		raw := p.Raw()
		if got := int(raw[len(raw)-2].K); got != tc.want {
			t.Errorf("snaplen %d: accept returns %d, want %d", tc.in, got, tc.want)
		}
	}
	p, _ := Compile("", LinkTypeEthernet, 128)
	if raw := p.Raw(); len(raw) != 1 || raw[0].K != 128 {
		t.Errorf("empty expression: %v", raw)
	}
}

// longExpr ors n host primitives: about 36 instructions each.
func longExpr(n int) string {
	var parts []string
	for i := 0; i < n; i++ {
		parts = append(parts, fmt.Sprintf("host 10.0.%d.%d", i/250, i%250+1))
	}
	return strings.Join(parts, " or ")
}

func TestLongProgramUsesTrampolines(t *testing.T) {
	expr := longExpr(60) + " or tcp port 1883"
	p, err := Compile(expr, LinkTypeEthernet, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() < 1000 {
		t.Fatalf("program has only %d instructions; test needs a long one", p.Len())
	}
	ja := 0
	for _, r := range p.Raw() {
		if r.Op == clsJMP|opJA {
			ja++
		}
	}
	if ja == 0 {
		t.Fatalf("no trampolines in a %d-instruction program", p.Len())
	}
	vm, err := netbpf.NewVM(p.Instructions())
	if err != nil {
		t.Fatalf("x/net/bpf rejects the program: %v", err)
	}
	// The last host, the port at the very end and a miss.
	for _, f := range frames(t, LinkTypeEthernet) {
		n, err := vm.Run(f.data)
		if err != nil {
			t.Fatal(err)
		}
		if f.wireLen == len(f.data) && (n != 0) != p.Match(f.data) {
			t.Errorf("%s: x/net VM says %v, Match says %v", f.name, n != 0, p.Match(f.data))
		}
	}
	check := func(src string, want bool) {
		pkt := frames(t, LinkTypeEthernet)[5].data // UDP 10.0.0.3 -> 8.8.8.8
		pkt = append([]byte(nil), pkt...)
		var a [4]byte
		fmt.Sscanf(src, "%d.%d.%d.%d", &a[0], &a[1], &a[2], &a[3])
		copy(pkt[26:30], a[:])
		if got := p.Match(pkt); got != want {
			t.Errorf("src %s: Match = %v, want %v", src, got, want)
		}
	}
	check("10.0.0.60", true)
	check("10.0.0.1", true)
	check("10.0.0.61", false)
}

func TestLongProgramAgreesWithTcpdump(t *testing.T) {
	tcpdump := requireTcpdump(t)
	dir := t.TempDir()
	fs := frames(t, LinkTypeEthernet)
	in := filepath.Join(dir, "in.pcap")
	if err := os.WriteFile(in, writePcap(t, LinkTypeEthernet, fs), 0o644); err != nil {
		t.Fatal(err)
	}
	expr := "(" + longExpr(40) + ") and not (tcp port 1883 or " + strings.ReplaceAll(longExpr(20), "host", "dst host") + ") or icmp6"
	theirs, stderr, err := tcpdumpSelect(tcpdump, dir, in, expr)
	if err != nil {
		t.Fatalf("tcpdump: %v: %s", err, stderr)
	}
	p, err := Compile(expr, LinkTypeEthernet, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ours [][]byte
	for _, f := range fs {
		if p.MatchLen(f.data, f.wireLen) {
			ours = append(ours, f.data)
		}
	}
	if !sameSequence(ours, theirs) {
		t.Errorf("long program (%d instructions) selects %d packets, tcpdump %d", p.Len(), len(ours), len(theirs))
	}
}

func TestTooLong(t *testing.T) {
	_, err := Compile(longExpr(400), LinkTypeEthernet, 0)
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("got %v, want ErrTooLong", err)
	}
}

// TestMatchAgreesWithXNetVM runs every differential expression through both
// our interpreter and x/net/bpf's VM.
func TestMatchAgreesWithXNetVM(t *testing.T) {
	for _, lt := range diffLinkTypes {
		fs := frames(t, lt)
		for _, expr := range diffExprs {
			p, err := Compile(expr, lt, 0)
			if err != nil {
				continue
			}
			vm, err := netbpf.NewVM(p.Instructions())
			if err != nil {
				t.Fatalf("%v %q: NewVM: %v", lt, expr, err)
			}
			for _, f := range fs {
				n, err := vm.Run(f.data)
				if err != nil {
					t.Fatalf("%v %q: Run: %v", lt, expr, err)
				}
				if got := p.Match(f.data); got != (n != 0) {
					t.Errorf("%v %q %s: Match %v, x/net VM %v", lt, expr, f.name, got, n != 0)
				}
			}
		}
	}
}

// TestDeepNesting: a term starting with '(' is tried as arithmetic first;
// nested parentheses must not make parsing quadratic (it took 0.7 s for
// 5000 levels before failed arithmetic parses were remembered).
func TestDeepNesting(t *testing.T) {
	deep := strings.Repeat("(", 5000) + "tcp" + strings.Repeat(")", 5000)
	start := time.Now()
	if _, err := Compile(deep, LinkTypeEthernet, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(strings.Repeat("(", 5000)+"1"+strings.Repeat(")", 5000)+" = 1", LinkTypeEthernet, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(strings.Repeat("not ", 5000)+"udp", LinkTypeEthernet, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("deeply nested expressions took %v", d)
	}
}
