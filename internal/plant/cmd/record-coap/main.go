// Command record-coap records the CoAP capture of the repository
// (testdata/coap.pcap): libcoap's coap-server-notls on 127.0.0.1 and ::1,
// port 5683, driven by coap-client-notls (GET, PUT, POST, DELETE, CON and
// NON, a 4.04, Observe, Block1 and Block2 transfers, pings, requests with
// a case-key option) and captured on the loopback interface by dumpcap.
//
//	go run ./internal/plant/cmd/record-coap -o testdata/coap.pcap
//
// It needs root, dumpcap (Debian: wireshark-common or tshark), libcoap
// (libcoap3-bin) and iproute2. By default it runs in a fresh network
// namespace, so the servers listen on the standard port 5683 (no
// --coap-ports when replaying) and nothing else is on the wire.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CaseOption is the CoAP option the recorded requests carry their case
// id in: 65000, the first experimental option number (RFC 7252 §12.2),
// elective, so the servers ignore it. Replay with --coap-case-option 65000.
const CaseOption = 65000

func main() {
	out := flag.String("o", "testdata/coap.pcap", "pcap file to write")
	port := flag.Int("port", 5683, "server port")
	netns := flag.Bool("netns", true, "run in a fresh network namespace (so port 5683 is free)")
	inner := flag.Bool("in-netns", false, "internal: already inside the namespace")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *netns && !*inner {
		err = inNamespace(ctx, *out)
	} else {
		err = record(ctx, *out, *port)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "record-coap:", err)
		os.Exit(1)
	}
}

// inNamespace runs this program again inside a new network namespace with
// only lo up, and removes the namespace afterwards.
func inNamespace(ctx context.Context, out string) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: it creates a network namespace and captures packets")
	}
	ns := "mission-coap-" + strconv.Itoa(os.Getpid())
	if b, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %w: %s (apt-get install iproute2)", ns, err, b)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	if b, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("lo up in %s: %w: %s", ns, err, b)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", ns, self, "-in-netns", "-o=" + abs}
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "o" && f.Name != "in-netns" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func record(ctx context.Context, out string, port int) error {
	for _, tool := range []string{"dumpcap", "coap-server-notls", "coap-client-notls"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: apt-get install libcoap3-bin tshark: %w", tool, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	var servers []*exec.Cmd
	defer func() {
		for _, s := range servers {
			_ = s.Process.Kill()
			_ = s.Wait()
		}
	}()
	for _, addr := range []string{"127.0.0.1", "::1"} {
		s := exec.CommandContext(ctx, "coap-server-notls", "-A", addr, "-p", strconv.Itoa(port), "-d", "8")
		if err := s.Start(); err != nil {
			return fmt.Errorf("coap-server-notls on %s: %w", addr, err)
		}
		servers = append(servers, s)
	}
	time.Sleep(300 * time.Millisecond) // the servers bind

	tmp, err := os.MkdirTemp("", "record-coap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// dumpcap writes to a temporary file first: the output may sit on a
	// directory dumpcap may not write to.
	capFile := filepath.Join(tmp, "coap.pcap")
	dump := exec.CommandContext(ctx, "dumpcap", "-i", "lo", "-f", fmt.Sprintf("udp port %d", port), "-w", capFile, "-P", "-q")
	var dumpLog bytes.Buffer
	dump.Stdout, dump.Stderr = &dumpLog, &dumpLog
	if err := dump.Start(); err != nil {
		return fmt.Errorf("dumpcap: %w", err)
	}
	stopDump := func() {
		_ = dump.Process.Signal(os.Interrupt)
		_ = dump.Wait()
	}
	if err := waitCapturing(capFile, port); err != nil {
		stopDump()
		return fmt.Errorf("%w: %s", err, dumpLog.String())
	}

	big := filepath.Join(tmp, "big.txt")
	if err := os.WriteFile(big, bytes.Repeat([]byte("0123456789abcdef"), 64), 0o644); err != nil { // 1 KiB
		return err
	}
	caseKey := func(id string) []string { return []string{"-O", fmt.Sprintf("%d,%s", CaseOption, id)} }
	v4 := fmt.Sprintf("coap://127.0.0.1:%d", port)
	v6 := fmt.Sprintf("coap://[::1]:%d", port)
	runs := [][]string{
		append(caseKey("case-v4-time"), v4+"/time"),
		{"-N", v4 + "/time"},
		append(caseKey("case-v4-dyn"), "-m", "put", "-e", "new", v4+"/dyn"),
		append(caseKey("case-v4-dyn"), "-m", "delete", v4+"/dyn"),
		{"-m", "post", "-e", "x", v4 + "/example_data"},
		{"-N", "-m", "put", "-e", "non", v4 + "/example_data"},
		{"-m", "put", "-b", "64", "-f", big, v4 + "/example_data"},       // Block1 upload
		append(caseKey("case-v4-block"), "-b", "64", v4+"/example_data"), // Block2 download
		{v4 + "/nothing/here"},                                           // 4.04
		append(caseKey("case-v4-observe"), "-s", "3", v4+"/time"),        // Observe
		append(caseKey("case-v6-time"), v6+"/time"),
		{"-N", "-m", "put", "-e", "v6", v6 + "/example_data"},
		{"-m", "post", "-e", "y", v6 + "/example_data"},
		{v6 + "/nothing/here"},
		append(caseKey("case-v6-observe"), "-s", "2", v6+"/time"),
	}
	var runErr error
	for _, args := range runs {
		c := exec.CommandContext(ctx, "coap-client-notls", append([]string{"-B", "3"}, args...)...)
		if b, err := c.CombinedOutput(); err != nil {
			runErr = fmt.Errorf("coap-client %s: %w: %s", strings.Join(args, " "), err, b)
			break
		}
	}
	if runErr == nil {
		for _, addr := range []string{"127.0.0.1", "::1"} {
			if err := ping(net.JoinHostPort(addr, strconv.Itoa(port)), uint16(0x7000+len(addr))); err != nil {
				runErr = err
				break
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // the last datagrams
	stopDump()
	if runErr != nil {
		return runErr
	}
	data, err := os.ReadFile(capFile)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: %d bytes; servers 127.0.0.1:%d and [::1]:%d; %d client runs and 2 pings; case option %d\n",
		out, len(data), port, port, len(runs), CaseOption)
	return nil
}

// waitCapturing sends empty UDP datagrams to the port (not CoAP: no
// flows) until dumpcap has written one; it announces itself before its
// socket sees packets.
func waitCapturing(file string, port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			_, _ = c.Write(nil)
			_ = c.Close()
		}
		if fi, err := os.Stat(file); err == nil && fi.Size() > 24 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("dumpcap wrote no packet within 10 s")
}

// ping sends a CoAP ping (an Empty CON, RFC 7252 §4.3) and waits for the
// server's RST.
func ping(addr string, mid uint16) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{0x40, 0x00, byte(mid >> 8), byte(mid)}); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 16)
	n, err := c.Read(b)
	if err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	if n != 4 || b[0]>>4 != 0x7 || b[2] != byte(mid>>8) || b[3] != byte(mid) { // version 1, RST
		return fmt.Errorf("ping %s: answer % x is not the RST", addr, b[:n])
	}
	return nil
}
