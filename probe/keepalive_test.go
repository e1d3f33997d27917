package probe

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/ipfix"
)

// TestTCPKeepAlive: an idle TCP exporter sends an empty IPFIX message
// after KeepAlive, once per interval, and nothing before.
func TestTCPKeepAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	exp, err := NewIPFIXExporter(IPFIXConfig{Transport: "tcp", Address: ln.Addr().String(), ObservationDomainID: 7, KeepAlive: 100 * time.Millisecond})
	require.NoError(t, err)
	defer exp.Close()
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()

	require.NoError(t, exp.Flush())
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	require.Error(t, err, "nothing sent before the keep-alive interval")

	time.Sleep(120 * time.Millisecond)
	require.NoError(t, exp.Flush())
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	msg := make([]byte, ipfix.HeaderLen)
	_, err = io.ReadFull(conn, msg)
	require.NoError(t, err)
	h, err := ipfix.ParseHeader(msg)
	require.NoError(t, err)
	require.EqualValues(t, ipfix.HeaderLen, h.Length, "an empty message: a header, no sets")
	require.EqualValues(t, 7, h.ObservationDomainID)
	require.Zero(t, binary.BigEndian.Uint32(msg[8:]), "sequence number: no data records yet")

	require.NoError(t, exp.Flush())
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	require.Error(t, err, "one keep-alive per interval")
}
