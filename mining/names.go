package mining

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Names maps network endpoints to device names: an exact ADDRESS:PORT, an
// ADDRESS, or a network (CIDR, the longest prefix wins), looked up in that
// order. It is read from a hosts-file-like text (ParseNames) and recorded
// in the model it was mined with (Model.Names). Read-only once built.
//
// A names entry names an endpoint that has no name of its own: every CoAP
// endpoint, and an MQTT client without client id. The name "broker"
// declares the endpoint a broker, like an endpoint that received a CONNECT.
type Names struct {
	ports    map[netip.AddrPort]string
	addrs    map[netip.Addr]string
	prefixes []namedPrefix // longest first
}

type namedPrefix struct {
	p    netip.Prefix
	name string
}

// NameEntry is one entry of a names table as a model stores it: the
// address (ADDRESS, ADDRESS:PORT or CIDR, canonical form) and the name.
type NameEntry struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

// ErrNamesSyntax is wrapped by the errors of ParseNames and
// NamesFromEntries for a line or entry that is not ADDRESS NAME.
var ErrNamesSyntax = errors.New("not ADDRESS NAME")

// ErrNameTaken is wrapped when an address is named twice.
var ErrNameTaken = errors.New("address named twice")

// NamesError is an error of a names file: its file and line (1-based;
// 0 when the error is not of one line).
type NamesError struct {
	File string
	Line int
	Err  error
}

func (e *NamesError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("names file %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("names file %s line %d: %v", e.File, e.Line, e.Err)
}

func (e *NamesError) Unwrap() error { return e.Err }

// ParseNames reads a names table: one "ADDRESS NAME" per line, ADDRESS an
// IP address (v4 or v6), ADDRESS:PORT ([v6]:port) or a network in CIDR
// notation; "#" starts a comment; blank lines are skipped. Further fields
// after NAME are aliases, ignored as hosts(5) does, so /etc/hosts-style
// files read unchanged. file names the source in errors (*NamesError).
func ParseNames(r io.Reader, file string) (*Names, error) {
	n := newNames()
	lines := map[string]int{} // canonical address → line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 {
			return nil, &NamesError{File: file, Line: line, Err: fmt.Errorf("%w: %q has no name", ErrNamesSyntax, fields[0])}
		}
		addr, err := n.add(fields[0], fields[1])
		if errors.Is(err, ErrNameTaken) {
			err = fmt.Errorf("%w: %s (also on line %d)", ErrNameTaken, addr, lines[addr])
		}
		if err != nil {
			return nil, &NamesError{File: file, Line: line, Err: err}
		}
		lines[addr] = line
	}
	if err := sc.Err(); err != nil {
		return nil, &NamesError{File: file, Err: err}
	}
	return n, nil
}

// ReadNamesFile reads a names file (ParseNames).
func ReadNamesFile(path string) (*Names, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &NamesError{File: path, Err: err}
	}
	defer f.Close()
	return ParseNames(f, path)
}

// NamesFromEntries builds a names table from a model's entries.
func NamesFromEntries(entries []NameEntry) (*Names, error) {
	n := newNames()
	for i, e := range entries {
		if _, err := n.add(e.Address, e.Name); err != nil {
			return nil, fmt.Errorf("mining: names entry %d: %w", i, err)
		}
	}
	return n, nil
}

func newNames() *Names {
	return &Names{ports: map[netip.AddrPort]string{}, addrs: map[netip.Addr]string{}}
}

// add parses one entry and returns its canonical address.
func (n *Names) add(address, name string) (string, error) {
	if name == TotalClient || strings.Contains(name, strings.TrimSpace(ActivitySep)) {
		return address, fmt.Errorf("%w: name %q is reserved", ErrNamesSyntax, name)
	}
	switch {
	case strings.Contains(address, "/"):
		p, err := netip.ParsePrefix(address)
		if err != nil || p.Addr().Zone() != "" {
			return address, fmt.Errorf("%w: %q is no network", ErrNamesSyntax, address)
		}
		p = unmapPrefix(p).Masked()
		key := p.String()
		for _, q := range n.prefixes {
			if q.p == p {
				return key, ErrNameTaken
			}
		}
		n.prefixes = append(n.prefixes, namedPrefix{p, name})
		slices.SortStableFunc(n.prefixes, func(a, b namedPrefix) int { return cmp.Compare(b.p.Bits(), a.p.Bits()) })
		return key, nil
	default:
		if a, err := netip.ParseAddr(address); err == nil && a.Zone() == "" {
			a = a.Unmap()
			if _, ok := n.addrs[a]; ok {
				return a.String(), ErrNameTaken
			}
			n.addrs[a] = name
			return a.String(), nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil || ap.Addr().Zone() != "" {
			return address, fmt.Errorf("%w: %q is no address, address:port or network", ErrNamesSyntax, address)
		}
		ap = unmap(ap)
		if _, ok := n.ports[ap]; ok {
			return ap.String(), ErrNameTaken
		}
		n.ports[ap] = name
		return ap.String(), nil
	}
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// Lookup returns the name of endpoint ap: its ADDRESS:PORT entry, else
// its ADDRESS entry, else the longest network containing it.
func (n *Names) Lookup(ap netip.AddrPort) (string, bool) {
	if n == nil || !ap.Addr().IsValid() {
		return "", false
	}
	ap = unmap(ap)
	if name, ok := n.ports[ap]; ok {
		return name, true
	}
	if name, ok := n.addrs[ap.Addr()]; ok {
		return name, true
	}
	for _, p := range n.prefixes {
		if p.p.Contains(ap.Addr()) {
			return p.name, true
		}
	}
	return "", false
}

// Len is the number of entries.
func (n *Names) Len() int {
	if n == nil {
		return 0
	}
	return len(n.ports) + len(n.addrs) + len(n.prefixes)
}

// Entries returns the table's entries sorted by address, as a model
// records them.
func (n *Names) Entries() []NameEntry {
	if n.Len() == 0 {
		return nil
	}
	out := make([]NameEntry, 0, n.Len())
	for ap, name := range n.ports {
		out = append(out, NameEntry{ap.String(), name})
	}
	for a, name := range n.addrs {
		out = append(out, NameEntry{a.String(), name})
	}
	for _, p := range n.prefixes {
		out = append(out, NameEntry{p.p.String(), p.name})
	}
	slices.SortFunc(out, func(a, b NameEntry) int { return strings.Compare(a.Address, b.Address) })
	return out
}
