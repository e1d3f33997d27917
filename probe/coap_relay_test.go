package probe

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// lossyRelay forwards UDP datagrams between clients and a server like a
// NAT (one back socket per client address) and drops the datagrams its
// rule names by direction and number (counted per direction from 1): the
// same sequence of datagrams loses the same ones on every run.
type lossyRelay struct {
	front  *net.UDPConn
	server netip.AddrPort
	rule   func(dir, n int) bool

	mu      sync.Mutex
	backs   map[netip.AddrPort]*net.UDPConn
	seen    [2]int // to the server, to the clients
	dropped [2]int
	closed  bool
	wg      sync.WaitGroup
}

const (
	toServer = 0
	toClient = 1
)

// everyNth drops every n-th datagram in each direction.
func everyNth(n int) func(dir, i int) bool { return func(_, i int) bool { return i%n == 0 } }

func newLossyRelay(t *testing.T, server netip.AddrPort, rule func(dir, n int) bool) *lossyRelay {
	t.Helper()
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(server.Addr(), 0)))
	require.NoError(t, err)
	r := &lossyRelay{front: front, server: server, rule: rule, backs: map[netip.AddrPort]*net.UDPConn{}}
	r.wg.Add(1)
	go r.serveFront()
	t.Cleanup(r.close)
	return r
}

func (r *lossyRelay) port() int { return r.front.LocalAddr().(*net.UDPAddr).Port }

// drop counts a datagram in direction dir and says whether to drop it.
func (r *lossyRelay) drop(dir int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[dir]++
	if !r.rule(dir, r.seen[dir]) {
		return false
	}
	r.dropped[dir]++
	return true
}

func (r *lossyRelay) counts() (seen, dropped [2]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen, r.dropped
}

func (r *lossyRelay) serveFront() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, client, err := r.front.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if r.drop(toServer) {
			continue
		}
		if back := r.back(client); back != nil {
			_, _ = back.WriteToUDPAddrPort(buf[:n], r.server)
		}
	}
}

// back returns the socket that speaks to the server for client, opening
// it on first use.
func (r *lossyRelay) back(client netip.AddrPort) *net.UDPConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.backs[client]; b != nil || r.closed {
		return b
	}
	b, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.server.Addr(), 0)))
	if err != nil {
		return nil
	}
	r.backs[client] = b
	r.wg.Add(1)
	go r.serveBack(b, client)
	return b
}

func (r *lossyRelay) serveBack(b *net.UDPConn, client netip.AddrPort) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := b.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if r.drop(toClient) {
			continue
		}
		_, _ = r.front.WriteToUDPAddrPort(buf[:n], client)
	}
}

func (r *lossyRelay) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	_ = r.front.Close()
	for _, b := range r.backs {
		_ = b.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
