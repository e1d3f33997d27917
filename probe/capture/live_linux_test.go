//go:build linux

package capture

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("live capture tests need root (CAP_NET_RAW): run the test command as root, see README")
	}
}

// tcpPortFilter is a hand-assembled classic BPF program for
// "ether proto ip and tcp dst port <port>" (no fragments check needed on lo).
func tcpPortFilter(port uint16) []bpf.RawInstruction {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0x0800, SkipTrue: 5},
		bpf.LoadAbsolute{Off: 23, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 6, SkipTrue: 3},
		bpf.LoadMemShift{Off: 14},
		bpf.LoadIndirect{Off: 16, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(port), SkipFalse: 1},
		bpf.RetConstant{Val: 262144},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err)
	}
	return prog
}

// TestLiveLoopbackSeesEachSegmentOnce sends distinct messages over a
// loopback TCP connection and checks the capture sees each payload exactly
// once (loopback passes every packet through the tap twice), that the
// kernel filter keeps other traffic out, and that timestamps are real.
func TestLiveLoopbackSeesEachSegmentOnce(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	live, err := OpenLive(LiveConfig{Interface: "lo", Filter: tcpPortFilter(port), PollTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer live.Close()

	// Traffic on another port must be filtered out in the kernel.
	other, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer other.Close()
	go func() {
		c, err := other.Accept()
		if err == nil {
			_, _ = c.Read(make([]byte, 100))
			c.Close()
		}
	}()
	oc, err := net.Dial("tcp4", other.Addr().String())
	require.NoError(t, err)
	_, _ = oc.Write([]byte("noise-noise-noise"))
	oc.Close()

	got := make(chan []byte, 100)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 1000)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	const n = 20
	for i := 0; i < n; i++ {
		_, err := fmt.Fprintf(c, "msg-%02d;", i)
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond) // one segment each
	}
	c.Close()

	start := time.Now()
	go func() {
		defer close(got)
		for time.Since(start) < 2*time.Second {
			var p Packet
			err := live.ReadPacket(&p)
			if errors.Is(err, ErrTimeout) {
				continue
			}
			if err != nil {
				return
			}
			var seg Segment
			if DecodeTCP(p.LinkType, p.Data, &seg) != nil || len(seg.Payload) == 0 {
				continue
			}
			if time.Since(p.Timestamp) > time.Minute {
				t.Errorf("timestamp %v is not the capture time", p.Timestamp)
			}
			got <- append([]byte(nil), seg.Payload...)
		}
	}()
	var all bytes.Buffer
	for b := range got {
		all.Write(b)
	}
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("msg-%02d;", i)
		require.Equal(t, 1, bytes.Count(all.Bytes(), []byte(msg)), "payload %q seen once", msg)
	}
	require.NotContains(t, all.String(), "noise", "kernel filter lets only the filtered port through")
	st, err := live.Stats()
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.Received, uint64(n))
	require.NoError(t, live.Close())
	var p Packet
	require.ErrorIs(t, live.ReadPacket(&p), ErrClosed)
}

func TestLiveUnknownInterface(t *testing.T) {
	_, err := OpenLive(LiveConfig{Interface: "does-not-exist0"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "ip link")
	require.ErrorIs(t, err, ErrNoInterface)
	require.Contains(t, err.Error(), "does-not-exist0")

	_, err = OpenLive(LiveConfig{Interface: AnyInterface, Filter: make([]bpf.RawInstruction, 1)})
	require.ErrorIs(t, err, ErrKernelFilterOnAny)
}

// TestLiveAnyInterface captures on every interface (tcpdump -i any):
// frames arrive as Linux cooked frames that decode to the TCP payloads,
// loopback packets once each.
func TestLiveAnyInterface(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	live, err := OpenLive(LiveConfig{Interface: AnyInterface, PollTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer live.Close()
	require.Equal(t, LinkLinuxSLL, live.LinkType())
	_, err = OpenLive(LiveConfig{Interface: AnyInterface, Filter: tcpPortFilter(port)})
	require.Error(t, err, "no kernel filter on a cooked capture")

	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Read(make([]byte, 100))
			c.Close()
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	_, err = c.Write([]byte("cooked-hello"))
	require.NoError(t, err)
	c.Close()

	seen := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var p Packet
		err := live.ReadPacket(&p)
		if errors.Is(err, ErrTimeout) {
			continue
		}
		require.NoError(t, err)
		var seg Segment
		if DecodeTCP(p.LinkType, p.Data, &seg) != nil || (seg.DstPort != port && seg.SrcPort != port) {
			continue
		}
		if bytes.Contains(seg.Payload, []byte("cooked-hello")) {
			seen++
		}
	}
	require.Equal(t, 1, seen, "the payload is seen once on loopback")
}
