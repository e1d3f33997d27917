package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mission-ids/mission/ipfix"
)

// serveTCP accepts exporters on ln (TCP or TLS); each connection is one
// transport session whose templates live as long as the connection.
func (c *Collector) serveTCP(ctx context.Context, ln net.Listener, transport string) error {
	var wg sync.WaitGroup
	conns := make(map[net.Conn]struct{})
	var mu sync.Mutex
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for conn := range conns {
			conn.Close()
		}
		mu.Unlock()
	}()
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept %s: %w", transport, err)
		}
		from := addrPortOf(conn.RemoteAddr())
		if !c.allowed(from.Addr()) {
			c.deny(from, transport+" connection")
			conn.Close()
			continue
		}
		mu.Lock()
		conns[conn] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serveConn(conn, from, transport)
			mu.Lock()
			delete(conns, conn)
			mu.Unlock()
			conn.Close()
		}()
	}
}

// serveConn reads messages framed by their length field (RFC 7011 §10.4);
// a framing error closes the connection, as the stream cannot resync.
func (c *Collector) serveConn(conn net.Conn, from netip.AddrPort, transport string) {
	log := c.log.With().Str("exporter", from.String()).Str("transport", transport).Logger()
	log.Info().Msg("exporter connected")
	sess := ipfix.NewSession(c.cfg.IPFIX, ipfix.SessionKey{Exporter: from, Transport: ipfix.TCP})
	h := c.newHandler()
	h.from = from
	buf := make([]byte, 65536)
	for {
		if _, err := io.ReadFull(conn, buf[:4]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Warn().Err(err).Msg("exporter connection ended")
			} else {
				log.Info().Msg("exporter disconnected")
			}
			return
		}
		version := binary.BigEndian.Uint16(buf[0:2])
		length := int(binary.BigEndian.Uint16(buf[2:4]))
		if version != ipfix.Version || length < 16 {
			c.totals.malformed.Add(1)
			c.mu.Lock()
			c.exporter(from.Addr()).Malformed++
			c.mu.Unlock()
			log.Warn().Uint16("version", version).Int("length", length).
				Msg("not an IPFIX message stream (bad version or length); closing the connection")
			return
		}
		if _, err := io.ReadFull(conn, buf[4:length]); err != nil {
			log.Warn().Err(err).Msg("exporter connection ended inside a message")
			return
		}
		_ = h.message(sess, buf[:length])
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.TCPAddr:
		ap = v.AddrPort()
	case *net.UDPAddr:
		ap = v.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return unmap(ap)
}

// unmap turns ::ffff:a.b.c.d (dual-stack sockets) into a.b.c.d.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
