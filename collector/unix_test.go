//go:build linux

package collector

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/probe"
)

// The "unix" transport: the probe's IPFIX stream over a Unix socket of
// mode 0600 (all-in-one's hop), decoded as over TCP; the allow-list does
// not apply to it; a stale socket is replaced, another file is not.
func TestUnixSocketTransport(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "ipfix.sock")
	stale, err := net.Listen("unix", sock)
	require.NoError(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())

	sink := &memSink{}
	c, addrs := start(t, Config{Listen: []string{"unix"}, UnixSocket: sock,
		Allow: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}, sink)
	require.Equal(t, map[string]string{"unix": sock}, addrs)
	fi, err := os.Lstat(sock)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket|0o600, fi.Mode()&(os.ModeType|os.ModePerm))

	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "unix", Address: sock, ObservationDomainID: 3, Logger: zerolog.Nop()})
	require.NoError(t, err)
	in := records(500)
	for i := 0; i < len(in); i += 100 {
		require.NoError(t, exp.Export(in[i:i+100]))
		require.NoError(t, exp.Flush())
	}
	require.NoError(t, exp.Close())
	docs := sink.waitFor(t, len(in))
	require.Len(t, docs, len(in))
	for _, d := range docs {
		require.Equal(t, "127.0.0.1:0", d.ExporterAddress)
		require.EqualValues(t, 3, d.ObservationDomainID)
	}
	require.Zero(t, c.Stats().Denied)
	require.EqualValues(t, 1, c.TCPStats().Accepted)

	other := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	_, err = listenUnix(other)
	require.ErrorContains(t, err, "is not a socket")
}
