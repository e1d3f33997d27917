package bpf

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// TestKernelFilterOnLoopback attaches Raw() to a real AF_PACKET socket on lo
// and checks that the kernel passes exactly the matching UDP datagrams, and
// that Match agrees with the kernel on everything it passed.
func TestKernelFilterOnLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CAP_NET_RAW) to open an AF_PACKET socket: run the test command as root, see README")
	}
	listen := func(network, addr string) *net.UDPConn {
		c, err := net.ListenUDP(network, mustUDPAddr(t, network, addr))
		if err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b, c := listen("udp4", "127.0.0.1:0"), listen("udp4", "127.0.0.1:0"), listen("udp4", "127.0.0.1:0")
	port := func(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }
	pa, pb, pc := port(a), port(b), port(c)
	have6 := true
	if c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback, Port: pc}); err != nil {
		have6 = false
	} else {
		t.Cleanup(func() { c6.Close() })
	}

	expr := fmt.Sprintf("udp dst port %d or (ip6 and udp dst port %d) or (udp[8:4] = 0x6b742d21 and dst port %d)", pa, pc, pb)
	prog, err := Compile(expr, LinkTypeEthernet, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := pcapgo.NewEthernetHandle("lo")
	if err != nil {
		t.Fatalf("AF_PACKET on lo: %v", err)
	}
	defer h.Close()
	if err := h.SetBPF(prog.Raw()); err != nil {
		t.Fatalf("SetBPF (kernel rejected the program): %v\n%s", err, prog)
	}

	type rx struct {
		data []byte
		err  error
	}
	ch := make(chan rx, 64)
	go func() { // blocks in recvmsg until the process exits; Close does not wake it
		for {
			data, _, err := h.ReadPacketData()
			ch <- rx{append([]byte(nil), data...), err}
			if err != nil {
				return
			}
		}
	}()

	nonce := fmt.Sprintf("kt%d-", time.Now().UnixNano())
	send := func(network string, ip net.IP, p int, payload string) {
		conn, err := net.DialUDP(network, nil, &net.UDPAddr{IP: ip, Port: p})
		if err != nil {
			t.Fatalf("dial %v:%d: %v", ip, p, err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(payload)); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	lo4 := net.IPv4(127, 0, 0, 1)
	// received collects our payloads into got until marker arrives; when
	// filtered is set, everything the kernel passed must also pass Match.
	// On lo a packet socket sees every datagram twice (outgoing and
	// incoming; libpcap hides the outgoing copy), so got is a set.
	got := map[string]bool{}
	received := func(marker string, filtered bool) {
		deadline := time.After(5 * time.Second)
		for {
			select {
			case r := <-ch:
				if r.err != nil {
					t.Fatalf("read: %v", r.err)
				}
				if filtered && !prog.Match(r.data) {
					t.Errorf("kernel passed a packet Match rejects: % x", r.data)
				}
				pl := udpPayload(r.data)
				if !bytes.HasPrefix(pl, []byte(nonce)) && !bytes.HasPrefix(pl, []byte("kt-!")) {
					continue // someone else's traffic that matches the filter
				}
				got[string(pl)] = true
				if string(pl) == marker {
					return
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %q; got %v\nprogram:\n%s", marker, got, prog)
			}
		}
	}

	// Packets queued between opening the socket and SetBPF were not
	// filtered (other tests' traffic on lo lands there): skip past a marker
	// without judging them. The queue is FIFO, so everything after the
	// marker went through the program.
	send("udp4", lo4, pa, nonce+"start")
	received(nonce+"start", false)

	want := map[string]bool{nonce + "start": true}
	type probe struct {
		network string
		ip      net.IP
		port    int
		payload string
		match   bool
	}
	probes := []probe{
		{"udp4", lo4, pa, nonce + "v4-a", true},
		{"udp4", lo4, pb, nonce + "v4-b", false},
		{"udp4", lo4, pc, nonce + "v4-c", false},
		{"udp4", lo4, pb, "kt-!" + nonce + "v4-b-magic", true},
	}
	if have6 {
		probes = append(probes,
			probe{"udp6", net.IPv6loopback, pc, nonce + "v6-c", true},
			probe{"udp6", net.IPv6loopback, pb, nonce + "v6-b", false})
	}
	for _, p := range probes {
		send(p.network, p.ip, p.port, p.payload)
		if p.match {
			want[p.payload] = true
		}
	}
	send("udp4", lo4, pa, nonce+"end")
	want[nonce+"end"] = true
	received(nonce+"end", true)
	time.Sleep(50 * time.Millisecond) // let duplicates and strays arrive
	for len(ch) > 0 {
		r := <-ch
		if pl := udpPayload(r.data); bytes.HasPrefix(pl, []byte(nonce)) || bytes.HasPrefix(pl, []byte("kt-!")) {
			got[string(pl)] = true
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("kernel dropped matching datagram %q", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("kernel passed non-matching datagram %q", k)
		}
	}
	if !have6 {
		t.Log("no IPv6 on lo: IPv6 probes skipped")
	}
}

func mustUDPAddr(t *testing.T, network, addr string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func udpPayload(frame []byte) []byte {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	if u, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		return u.Payload
	}
	return nil
}
