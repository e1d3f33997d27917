package store

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

// TestSessionWriterPersistsIdentities: identities put and deleted by one
// writer are what a later writer (a restarted collector) loads, in order
// of the operations, newest CONNECT first.
func TestSessionWriterPersistsIdentities(t *testing.T) {
	dir := t.TempDir()
	emb, err := StartEmbedded(dir, "127.0.0.1:0", testLogger(t))
	require.NoError(t, err)
	defer emb.Close()
	ctx := context.Background()
	base := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	id := func(port uint16, name string, age time.Duration) flow.Identity {
		return flow.Identity{Exporter: netip.MustParseAddr("192.0.2.1"), Domain: 3,
			Client: netip.AddrPortFrom(netip.MustParseAddr("fd00::5"), port), Broker: netip.MustParseAddrPort("[fd00::1]:1883"),
			ClientID: name, Username: "plant", Version: 5, Seen: base.Add(-age)}
	}
	w, err := OpenSessions(ctx, emb.URL(), "mission", testLogger(t))
	require.NoError(t, err)
	w.PutIdentity(id(1, "old", time.Hour))
	w.PutIdentity(id(2, "gone", time.Minute))
	w.PutIdentity(id(3, "new", time.Second))
	w.PutIdentity(id(1, "reconnected", 0)) // same connection key: replaced
	w.DeleteIdentity(id(2, "gone", time.Minute))
	require.NoError(t, w.Close(ctx))
	require.Positive(t, w.Written()) // operations on one connection may coalesce
	require.Zero(t, w.Dropped())
	w.PutIdentity(id(9, "late", 0)) // after Close: counted, never a panic
	require.EqualValues(t, 1, w.Dropped())

	r, err := OpenSessions(ctx, emb.URL(), "mission", testLogger(t))
	require.NoError(t, err)
	defer r.Close(ctx)
	got, err := r.LoadIdentities(ctx, 10)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "reconnected", got[0].ClientID, "newest CONNECT first")
	require.Equal(t, id(1, "reconnected", 0).Key(), got[0].Key())
	require.True(t, got[0].Seen.Equal(base))
	require.Equal(t, "new", got[1].ClientID)
	require.Equal(t, id(3, "new", time.Second).Client, got[1].Client)
	require.EqualValues(t, 5, got[1].Version)
	fileID := id(7, "from-a-file", -time.Second) // the newest
	fileID.Exporter = netip.Addr{}               // flows read from an IPFIX file have no exporter address
	r.PutIdentity(fileID)
	require.NoError(t, r.Close(ctx))
	r, err = OpenSessions(ctx, emb.URL(), "mission", testLogger(t))
	require.NoError(t, err)
	got, err = r.LoadIdentities(ctx, 10)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, fileID, got[0])
	limited, err := r.LoadIdentities(ctx, 1)
	require.NoError(t, err)
	require.Len(t, limited, 1, "bounded by the table size")
}
