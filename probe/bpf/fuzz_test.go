package bpf

import (
	"testing"

	netbpf "golang.org/x/net/bpf"
)

var fuzzLinkTypes = []LinkType{
	LinkTypeEthernet, LinkTypeLinuxSLL, LinkTypeLinuxSLL2, LinkTypeNull,
	LinkTypeLoop, LinkTypeRaw, LinkTypeIPv4, LinkTypeIPv6,
}

// FuzzCompile: Compile never panics, returns either an *Error or a program
// that x/net/bpf accepts, fits the kernel limit, and runs the same in our
// interpreter and in x/net/bpf's VM.
func FuzzCompile(f *testing.F) {
	for i, e := range diffExprs {
		f.Add(e, uint8(i))
	}
	pkts := frames(f, LinkTypeEthernet)
	f.Fuzz(func(t *testing.T, expr string, lt uint8) {
		linkType := fuzzLinkTypes[int(lt)%len(fuzzLinkTypes)]
		p, err := Compile(expr, linkType, 0)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Compile(%q) returned %T, want *Error: %v", expr, err, err)
			}
			return
		}
		if p.Len() == 0 || p.Len() > MaxInstructions {
			t.Fatalf("Compile(%q): %d instructions", expr, p.Len())
		}
		vm, err := netbpf.NewVM(p.Instructions())
		if err != nil {
			t.Fatalf("Compile(%q): x/net/bpf rejects the program: %v\n%s", expr, err, p)
		}
		for _, f := range pkts {
			n, err := vm.Run(f.data)
			if err != nil {
				t.Fatalf("Compile(%q): x/net VM: %v", expr, err)
			}
			if got := p.Match(f.data); got != (n != 0) {
				t.Fatalf("Compile(%q) on %s: Match %v, x/net VM %v\n%s", expr, f.name, got, n != 0, p)
			}
		}
	})
}
