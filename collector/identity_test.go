package collector

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

var (
	probeA  = netip.MustParseAddrPort("192.0.2.1:40000")
	probeB  = netip.MustParseAddrPort("192.0.2.2:40000")
	client1 = netip.MustParseAddrPort("10.0.0.5:51000")
	broker  = netip.MustParseAddrPort("10.0.0.1:1883")
)

// rec is a flow of the connection client1 ↔ broker seen by exporter ex
// in domain 1; fromClient says which end initiated it.
func rec(ex netip.AddrPort, t flow.ControlType, fromClient bool, srcID, dstID string) flow.Record {
	r := flow.Record{Exporter: ex, ObservationDomain: 1, ControlType: t, Start: time.Unix(1000, 0),
		SrcClientID: srcID, DstClientID: dstID, IdentitySource: flow.IdentityNone, Protocol: 6}
	src, dst := client1, broker
	if !fromClient {
		src, dst = broker, client1
	}
	r.SrcAddr, r.SrcPort, r.DstAddr, r.DstPort = src.Addr(), src.Port(), dst.Addr(), dst.Port()
	return r
}

func TestIdentityTable(t *testing.T) {
	connect := rec(probeA, flow.Connect, true, "sensor-7", flow.BrokerClientID)
	connect.ProtocolVersion, connect.Username, connect.IdentitySource = 5, "plant", flow.IdentityConnect
	type step struct {
		r       flow.Record
		wantSrc string // client ids after observe
		wantDst string
		source  flow.IdentitySource
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"client's flow gets the id", []step{
			{connect, "sensor-7", flow.BrokerClientID, flow.IdentityConnect},
			{rec(probeA, flow.Publish, true, "", flow.BrokerClientID), "sensor-7", flow.BrokerClientID, flow.IdentityCollector},
		}},
		{"delivery to the client gets it on the destination side", []step{
			{connect, "sensor-7", flow.BrokerClientID, flow.IdentityConnect},
			{rec(probeA, flow.Publish, false, flow.BrokerClientID, ""), flow.BrokerClientID, "sensor-7", flow.IdentityCollector},
		}},
		{"another exporter's flow of the same 5-tuple is not filled", []step{
			{connect, "sensor-7", flow.BrokerClientID, flow.IdentityConnect},
			{rec(probeB, flow.Publish, true, "", flow.BrokerClientID), "", flow.BrokerClientID, flow.IdentityNone},
		}},
		{"DISCONNECT is filled, then the connection is forgotten", []step{
			{connect, "sensor-7", flow.BrokerClientID, flow.IdentityConnect},
			{rec(probeA, flow.Disconnect, true, "", flow.BrokerClientID), "sensor-7", flow.BrokerClientID, flow.IdentityCollector},
			{rec(probeA, flow.Publish, true, "", flow.BrokerClientID), "", flow.BrokerClientID, flow.IdentityNone},
		}},
		{"a flow with its own id is left alone", []step{
			{connect, "sensor-7", flow.BrokerClientID, flow.IdentityConnect},
			{rec(probeA, flow.Publish, true, "restored-id", flow.BrokerClientID), "restored-id", flow.BrokerClientID, flow.IdentityNone},
		}},
		{"unknown connection stays unknown", []step{
			{rec(probeA, flow.Publish, true, "", flow.BrokerClientID), "", flow.BrokerClientID, flow.IdentityNone},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newIdentityTable(10, nil)
			for i, st := range tt.steps {
				r := st.r
				tab.observe(&r)
				require.Equal(t, st.wantSrc, r.SrcClientID, "step %d", i)
				require.Equal(t, st.wantDst, r.DstClientID, "step %d", i)
				require.Equal(t, st.source, r.IdentitySource, "step %d", i)
				if st.source == flow.IdentityCollector {
					require.EqualValues(t, 5, r.ProtocolVersion)
					require.Equal(t, "plant", r.Username)
				}
			}
		})
	}
}

func TestIdentityTableBoundEvictsLeastRecentlyUsed(t *testing.T) {
	tab := newIdentityTable(2, nil)
	connectFrom := func(port uint16, id string) {
		r := rec(probeA, flow.Connect, true, id, flow.BrokerClientID)
		r.SrcPort = port
		tab.observe(&r)
	}
	lookup := func(port uint16) string {
		r := rec(probeA, flow.Publish, true, "", flow.BrokerClientID)
		r.SrcPort = port
		tab.observe(&r)
		return r.SrcClientID
	}
	connectFrom(1, "a")
	connectFrom(2, "b")
	require.Equal(t, "a", lookup(1)) // a is now the most recently used
	connectFrom(3, "c")              // evicts b
	require.Equal(t, "a", lookup(1))
	require.Equal(t, "", lookup(2))
	require.Equal(t, "c", lookup(3))
	require.EqualValues(t, 1, tab.evicted.Load())
	require.Len(t, tab.byKey, 2)
}

// memIdentities is an in-memory identity store, for the load path.
type memIdentities struct{ ids []flow.Identity }

func (m *memIdentities) LoadIdentities(_ context.Context, max int) ([]flow.Identity, error) {
	return m.ids[:min(max, len(m.ids))], nil
}
func (m *memIdentities) PutIdentity(id flow.Identity)    { m.ids = append(m.ids, id) }
func (m *memIdentities) DeleteIdentity(id flow.Identity) {}

func TestIdentityTablePersists(t *testing.T) {
	st := &memIdentities{}
	first := newIdentityTable(10, st)
	require.NoError(t, first.load(context.Background()))
	c := rec(probeA, flow.Connect, true, "sensor-7", flow.BrokerClientID)
	first.observe(&c)
	require.Len(t, st.ids, 1, "CONNECT persisted")

	second := newIdentityTable(10, st) // a collector restart
	require.NoError(t, second.load(context.Background()))
	r := rec(probeA, flow.Publish, true, "", flow.BrokerClientID)
	second.observe(&r)
	require.Equal(t, "sensor-7", r.SrcClientID)
	require.Equal(t, flow.IdentityCollector, r.IdentitySource)
}
