package collector

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/lru"
	"github.com/mission-ids/mission/internal/metrics"
)

// IdentityStore persists the identity table (the store's sessions
// collection), so it survives collector restarts and is shared by the
// collectors writing to one database. Put and Delete must not block.
type IdentityStore interface {
	LoadIdentities(ctx context.Context, max int) ([]flow.Identity, error)
	PutIdentity(id flow.Identity)
	DeleteIdentity(id flow.Identity)
}

// DefaultMaxIdentities bounds the identity table (as the probe bounds its
// connections).
const DefaultMaxIdentities = 200_000

// identityTable remembers, per exporter, observation domain and
// connection, the client id, username and version of the connection's
// CONNECT flow, until its DISCONNECT. A flow of a known connection that
// arrives without a client id gets them (IdentitySource "collector").
// Least recently used connections are evicted beyond the bound.
type identityTable struct {
	mu     sync.Mutex
	max    int
	byKey  map[identityKey]*identityEntry
	order  lru.List[identityEntry]
	store  IdentityStore
	loaded bool

	learned, filled, ended, evicted atomic.Uint64
}

type identityKey struct {
	exporter [16]byte
	domain   uint32
	client   [18]byte // address and port
	broker   [18]byte
}

type identityEntry struct {
	key  identityKey
	id   flow.Identity
	node lru.Node[identityEntry]
}

func newIdentityTable(max int, st IdentityStore) *identityTable {
	if max <= 0 {
		max = DefaultMaxIdentities
	}
	return &identityTable{max: max, byKey: make(map[identityKey]*identityEntry), store: st}
}

func identityKeyOf(id *flow.Identity) identityKey {
	var k identityKey
	k.exporter = id.Exporter.As16()
	k.domain = id.Domain
	copyAddrPort(k.client[:], id.Client.Addr().As16(), id.Client.Port())
	copyAddrPort(k.broker[:], id.Broker.Addr().As16(), id.Broker.Port())
	return k
}

func copyAddrPort(dst []byte, a [16]byte, port uint16) {
	copy(dst, a[:])
	dst[16], dst[17] = byte(port>>8), byte(port)
}

// load reads the persisted table once (the first flow of a run waits for
// it, bounded by ctx).
func (t *identityTable) load(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.loaded || t.store == nil {
		t.loaded = true
		return nil
	}
	t.loaded = true
	ids, err := t.store.LoadIdentities(ctx, t.max)
	for i := range ids {
		t.putLocked(ids[i], false)
	}
	return err
}

// observe learns from CONNECT and DISCONNECT flows and fills the identity
// of other flows of known connections. r.Exporter and
// r.ObservationDomain must be set.
func (t *identityTable) observe(r *flow.Record) {
	client, broker, idField := r.ClientSide()
	id := flow.Identity{Exporter: r.Exporter.Addr().Unmap(), Domain: r.ObservationDomain, Client: client, Broker: broker}
	switch {
	case r.ControlType == flow.Connect && r.SrcClientID != "" && r.SrcClientID != flow.BrokerClientID:
		// The initiator of a CONNECT is the client.
		id.Client, id.Broker = netip.AddrPortFrom(r.SrcAddr, r.SrcPort), netip.AddrPortFrom(r.DstAddr, r.DstPort)
		id.ClientID, id.Username, id.Version, id.Seen = r.SrcClientID, r.Username, r.ProtocolVersion, r.Start
		t.mu.Lock()
		t.putLocked(id, true)
		t.mu.Unlock()
		t.learned.Add(1)
		return
	case *idField != "":
		if r.ControlType == flow.Disconnect {
			t.forget(&id)
		}
		return
	}
	t.mu.Lock()
	e := t.byKey[identityKeyOf(&id)]
	if e != nil {
		*idField = e.id.ClientID
		if r.Username == "" {
			r.Username = e.id.Username
		}
		if r.ProtocolVersion == 0 {
			r.ProtocolVersion = e.id.Version
		}
		r.IdentitySource = flow.IdentityCollector
		t.order.MoveToBack(&e.node)
	}
	t.mu.Unlock()
	if e != nil {
		t.filled.Add(1)
		if r.ControlType == flow.Disconnect {
			t.forget(&id)
		}
	}
}

func (t *identityTable) forget(id *flow.Identity) {
	t.mu.Lock()
	e := t.byKey[identityKeyOf(id)]
	if e != nil {
		t.removeLocked(e)
	}
	t.mu.Unlock()
	if e != nil {
		t.ended.Add(1)
		if t.store != nil {
			t.store.DeleteIdentity(e.id)
		}
	}
}

func (t *identityTable) putLocked(id flow.Identity, persist bool) {
	k := identityKeyOf(&id)
	if e := t.byKey[k]; e != nil {
		e.id = id
		t.order.MoveToBack(&e.node)
	} else {
		for len(t.byKey) >= t.max {
			old := t.order.Front()
			t.removeLocked(old)
			t.evicted.Add(1)
		}
		e := &identityEntry{key: k, id: id}
		t.byKey[k] = e
		t.order.PushBack(&e.node, e)
	}
	if persist && t.store != nil {
		t.store.PutIdentity(id)
	}
}

func (t *identityTable) removeLocked(e *identityEntry) {
	delete(t.byKey, e.key)
	t.order.Remove(&e.node)
}

func (t *identityTable) metrics(e metrics.Emitter) {
	t.mu.Lock()
	n := len(t.byKey)
	t.mu.Unlock()
	e.Gauge("mission_collector_identities", "MQTT connections whose CONNECT identity the collector holds.", float64(n))
	e.Gauge("mission_collector_identities_max", "Bound on the identity table.", float64(t.max))
	e.Counter("mission_collector_identities_learned_total", "CONNECT flows whose identity was recorded.", float64(t.learned.Load()))
	e.Counter("mission_collector_identities_filled_total", "Flows without a client id given one by the identity table.", float64(t.filled.Load()))
	e.Counter("mission_collector_identities_ended_total", "Identities forgotten at DISCONNECT.", float64(t.ended.Load()))
	e.Counter("mission_collector_identities_evicted_total", "Identities evicted because the table was full.", float64(t.evicted.Load()))
}
