//go:build unix

package probe

import (
	"errors"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// peekPeer looks, without blocking and without consuming anything, at
// what the collector sent on a TCP socket: nothing (peerQuiet), bytes
// (peerData: a TLS alert or post-handshake message, or noise), or the end
// of the connection (peerClosed with io.EOF for a FIN, or the socket
// error, e.g. ECONNRESET for an RST).
func peekPeer(sc syscall.Conn) (peerState, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return peerClosed, err
	}
	var (
		n     int
		rerr  error
		buf   [1]byte
		state peerState
	)
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true // never wait for readiness
	})
	switch {
	case err != nil:
		return peerClosed, err
	case errors.Is(rerr, unix.EAGAIN), errors.Is(rerr, unix.EWOULDBLOCK), errors.Is(rerr, unix.EINTR):
		state = peerQuiet
	case rerr != nil:
		return peerClosed, rerr
	case n == 0:
		return peerClosed, io.EOF
	default:
		state = peerData
	}
	return state, nil
}
