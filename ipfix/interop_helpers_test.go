package ipfix

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireTool fails the test (never skips) if an external tool is missing.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: install it (Debian: apt-get install %s)", name, pkg)
	}
	return p
}

// requireRoot fails the test if it cannot capture packets.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test captures on the loopback interface and must run as root")
	}
}

// udpSink listens on a free loopback UDP port and returns the socket.
func udpSink(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startCapture starts tshark on lo with a capture filter and waits until it
// captures. stop ends the capture and waits for tshark to write the file.
func startCapture(t *testing.T, filter, file string) (stop func()) {
	t.Helper()
	tshark := requireTool(t, "tshark", "tshark")
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := exec.CommandContext(ctx, tshark, "-i", "lo", "-f", filter, "-w", file)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tshark: %v", err)
	}
	ready := make(chan struct{})
	var lines []string
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "Capturing on") {
				close(ready)
				signalled = true
			}
		}
		if !signalled {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("tshark did not start capturing: %v", lines)
	}
	time.Sleep(500 * time.Millisecond) // the filter is attached just after the message
	return func() {
		time.Sleep(500 * time.Millisecond)
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		cancel()
	}
}
