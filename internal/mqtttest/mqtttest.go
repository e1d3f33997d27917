// Package mqtttest is test support for real MQTT traffic: it starts a real
// mosquitto broker on a free port with a generated configuration, runs
// mosquitto_pub/mosquitto_sub, captures with dumpcap, builds a pair of
// network namespaces joined by a veth (a real MTU-1500 path), and computes
// reference flows from tshark's dissection of a capture, independently of
// the probe's tracker (reference.go).
//
// Every helper fails the test loudly, naming the Debian package, when a
// tool or root is missing: these tests never skip.
package mqtttest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// packages names the Debian package of each tool.
var packages = map[string]string{
	"mosquitto":     "mosquitto",
	"mosquitto_pub": "mosquitto-clients",
	"mosquitto_sub": "mosquitto-clients",
	"tshark":        "tshark",
	"dumpcap":       "tshark (it brings wireshark-common's dumpcap)",
	"editcap":       "tshark (it brings wireshark-common's editcap)",
	"ip":            "iproute2",
}

// RequireTools fails the test if a tool is missing, naming its package.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := packages[tool]
			if pkg == "" {
				pkg = tool
			}
			t.Fatalf("%s not found: apt-get install %s (%v)", tool, pkg, err)
		}
	}
}

// RequireRoot fails the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test captures packets and creates network namespaces: run it as root (see scripts/test.sh)")
	}
}

// FreePort returns a TCP port that was free on the loopback interface.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Command builds a command, run inside network namespace ns if ns is set.
func Command(ctx context.Context, ns string, args ...string) *exec.Cmd {
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs a command to completion and fails the test on error.
func Run(t testing.TB, ctx context.Context, ns string, args ...string) string {
	t.Helper()
	out, err := Command(ctx, ns, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Broker is a running mosquitto.
type Broker struct {
	Port int
	NS   string
	cmd  *exec.Cmd
	log  *lineLog
}

// BrokerOptions configures StartBroker.
type BrokerOptions struct {
	Port    int    // default: FreePort
	Address string // bind address; "" binds every address (IPv4 and IPv6)
	NS      string // network namespace to run in
	Extra   string // more configuration lines
}

// StartBroker starts mosquitto with a generated configuration and waits
// until it listens. It is stopped at the end of the test.
func StartBroker(t testing.TB, opt BrokerOptions) *Broker {
	t.Helper()
	RequireTools(t, "mosquitto")
	if opt.Port == 0 {
		opt.Port = FreePort(t)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	listener := fmt.Sprintf("listener %d", opt.Port)
	if opt.Address != "" {
		listener += " " + opt.Address
	}
	cfg := listener + "\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n" + opt.Extra + "\n"
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := Command(context.Background(), opt.NS, "mosquitto", "-c", conf)
	b := &Broker{Port: opt.Port, NS: opt.NS, cmd: cmd, log: newLineLog()}
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() { b.Stop() })
	if !b.log.wait("running", 10*time.Second) {
		b.Stop()
		t.Fatalf("mosquitto did not start on port %d:\n%s", opt.Port, b.log.String())
	}
	return b
}

// Stop stops the broker (idempotent).
func (b *Broker) Stop() {
	if b.cmd.ProcessState != nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}

// WaitLog waits until the broker's log contains s (log_type all: e.g.
// "Sending SUBACK to sub5"), failing the test after d.
func (b *Broker) WaitLog(t testing.TB, s string, d time.Duration) {
	t.Helper()
	if !b.log.wait(s, d) {
		t.Fatalf("mosquitto never logged %q:\n%s", s, b.log.String())
	}
}

// Log returns what the broker logged so far.
func (b *Broker) Log() string { return b.log.String() }

// Capture is a running dumpcap writing a pcap file.
type Capture struct {
	File string
	cmd  *exec.Cmd
	log  *lineLog
	once sync.Once
}

// StartCapture runs dumpcap on iface (in ns if set) with a capture filter,
// writing libpcap format to file, and waits until it captures.
func StartCapture(t testing.TB, ns, iface, filter, file string) *Capture {
	t.Helper()
	RequireTools(t, "dumpcap")
	cmd := Command(context.Background(), ns, "dumpcap", "-i", iface, "-f", filter, "-w", file, "-P", "-q")
	c := &Capture{File: file, cmd: cmd, log: newLineLog()}
	cmd.Stderr, cmd.Stdout = c.log, c.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dumpcap: %v", err)
	}
	t.Cleanup(func() { c.stop() })
	if !c.log.wait("Capturing on", 10*time.Second) {
		c.stop()
		t.Fatalf("dumpcap did not start on %s:\n%s", iface, c.log.String())
	}
	return c
}

// WaitCapturing calls poke (which should make a packet the capture filter
// matches, e.g. a connection attempt to the broker port) until dumpcap has
// written a packet to the file. dumpcap announces "Capturing on" before its
// socket sees packets, so traffic sent right after StartCapture may be
// missed; a test that needs the whole of its traffic waits here first.
// Poked packets should carry no payload so they make no MQTT messages.
func (c *Capture) WaitCapturing(t testing.TB, poke func()) {
	t.Helper()
	const pcapHeader = 24
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		poke()
		if fi, err := os.Stat(c.File); err == nil && fi.Size() > pcapHeader {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("dumpcap wrote no packet to %s within 10 s:\n%s", c.File, c.log.String())
}

// Stop waits a moment for the last packets, then stops dumpcap so the file
// is complete.
func (c *Capture) Stop(t testing.TB) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	c.stop()
	if fi, err := os.Stat(c.File); err != nil || fi.Size() == 0 {
		t.Fatalf("capture %s is empty (%v):\n%s", c.File, err, c.log.String())
	}
}

func (c *Capture) stop() {
	c.once.Do(func() {
		if c.cmd.Process == nil {
			return
		}
		_ = c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	})
}

// NetnsPair is two network namespaces joined by a veth pair: the broker's
// and the clients'. Addresses come from the benchmarking range
// 198.18.0.0/15 (RFC 2544) and a unique local IPv6 prefix; the traffic
// never leaves the namespaces.
type NetnsPair struct {
	BrokerNS, ClientNS string
	BrokerIf, ClientIf string
	BrokerV4, ClientV4 string
	BrokerV6, ClientV6 string
}

var nsSeq atomic.Uint32

// NewNetnsPair creates the namespaces and the veth with the given MTU; they
// are removed at the end of the test.
func NewNetnsPair(t testing.TB, mtu int) *NetnsPair {
	t.Helper()
	RequireRoot(t)
	RequireTools(t, "ip")
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, nsSeq.Add(1))
	n := &NetnsPair{
		BrokerNS: "mqtb" + id, ClientNS: "mqtc" + id,
		BrokerIf: "vb" + id, ClientIf: "vc" + id,
		BrokerV4: "198.18.0.1", ClientV4: "198.18.0.2",
		BrokerV6: "fd4d:5154:5454::1", ClientV6: "fd4d:5154:5454::2",
	}
	ctx := context.Background()
	t.Cleanup(func() {
		// Deleting a namespace deletes the veth in it too.
		_ = exec.Command("ip", "netns", "del", n.BrokerNS).Run()
		_ = exec.Command("ip", "netns", "del", n.ClientNS).Run()
	})
	m := strconv.Itoa(mtu)
	for _, args := range [][]string{
		{"ip", "netns", "add", n.BrokerNS},
		{"ip", "netns", "add", n.ClientNS},
		{"ip", "link", "add", n.BrokerIf, "mtu", m, "netns", n.BrokerNS, "type", "veth", "peer", "name", n.ClientIf, "mtu", m, "netns", n.ClientNS},
	} {
		Run(t, ctx, "", args...)
	}
	for _, side := range []struct{ ns, ifc, v4, v6 string }{
		{n.BrokerNS, n.BrokerIf, n.BrokerV4, n.BrokerV6},
		{n.ClientNS, n.ClientIf, n.ClientV4, n.ClientV6},
	} {
		Run(t, ctx, side.ns, "ip", "link", "set", "lo", "up")
		Run(t, ctx, side.ns, "ip", "addr", "add", side.v4+"/24", "dev", side.ifc)
		Run(t, ctx, side.ns, "ip", "-6", "addr", "add", side.v6+"/64", "dev", side.ifc, "nodad")
		Run(t, ctx, side.ns, "ip", "link", "set", side.ifc, "up")
		// No segmentation offloads (veth passes GSO super-packets on
		// unsegmented): the capture sees segments of at most one MTU, as
		// on a wire. gso_max_segs 1 does what `ethtool -K tso off gso off`
		// would, with iproute2 alone.
		Run(t, ctx, side.ns, "ip", "link", "set", side.ifc, "gso_max_segs", "1", "gso_max_size", m)
	}
	return n
}

// lineLog collects a process's output and lets a test wait for a line.
type lineLog struct {
	mu  sync.Mutex
	buf strings.Builder
	ch  chan struct{}
}

func newLineLog() *lineLog { return &lineLog{ch: make(chan struct{}, 1)} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *lineLog) wait(s string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		if strings.Contains(l.String(), s) {
			return true
		}
		select {
		case <-l.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
}

// Lines returns a reader of n lines "prefix-i".
func Lines(prefix string, n int) io.Reader {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	for i := range n {
		fmt.Fprintf(w, "%s-%d\n", prefix, i)
	}
	_ = w.Flush()
	return strings.NewReader(b.String())
}
