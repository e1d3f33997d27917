package store

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
)

// SessionCollection holds the collector's identity table: per exporter,
// observation domain and connection, the client id its CONNECT gave.
const SessionCollection = "sessions"

// SessionWriter persists MQTT connection identities in the sessions
// collection (one document per connection, _id = flow.Identity.Key),
// off the caller's goroutine: upserts at CONNECT, deletes at DISCONNECT,
// applied in order in batches. It is the collector's identity store
// (collector.IdentityStore). What cannot be queued or written is counted
// and logged: the table in memory still works, only its persistence is
// lost.
type SessionWriter struct {
	client  *mongo.Client
	coll    *mongo.Collection
	mu      sync.RWMutex // guards closed against queueing while Close runs
	closed  bool
	ch      chan sessionOp
	wg      sync.WaitGroup
	log     zerolog.Logger
	written atomic.Uint64
	dropped atomic.Uint64
}

type sessionOp struct {
	id     flow.Identity
	delete bool
}

// sessionDoc is the stored form of a flow.Identity.
type sessionDoc struct {
	ID       string    `bson:"_id"`
	Exporter string    `bson:"exporter"`
	Domain   uint32    `bson:"observationDomainId"`
	Client   string    `bson:"client"`
	Broker   string    `bson:"broker"`
	ClientID string    `bson:"mqttClientId"`
	Username string    `bson:"mqttUsername,omitempty"`
	Version  uint8     `bson:"mqttProtocolVersion"`
	Seen     time.Time `bson:"connectTime"`
}

// OpenSessions connects to url and writes to database.sessions.
func OpenSessions(ctx context.Context, url, database string, log zerolog.Logger) (*SessionWriter, error) {
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
	if err != nil {
		return nil, fmt.Errorf("sessions: connect: %w", err)
	}
	s := &SessionWriter{client: client, coll: client.Database(database).Collection(SessionCollection),
		ch: make(chan sessionOp, 10000), log: log}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// LoadIdentities reads up to max stored identities, most recent CONNECT
// first.
func (s *SessionWriter) LoadIdentities(ctx context.Context, max int) ([]flow.Identity, error) {
	cur, err := s.coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "connectTime", Value: -1}}).SetLimit(int64(max)))
	if err != nil {
		return nil, fmt.Errorf("sessions: read: %w", err)
	}
	defer cur.Close(ctx)
	var out []flow.Identity
	for cur.Next(ctx) {
		var d sessionDoc
		if err := cur.Decode(&d); err != nil {
			return out, fmt.Errorf("sessions: stored document: %w", err)
		}
		id, err := d.identity()
		if err != nil {
			s.log.Warn().Err(err).Str("id", d.ID).Msg("sessions: stored identity not usable; ignored")
			continue
		}
		out = append(out, id)
	}
	return out, cur.Err()
}

func (d *sessionDoc) identity() (flow.Identity, error) {
	var exp netip.Addr // none: flows read from an IPFIX file
	if d.Exporter != "" {
		var err error
		if exp, err = netip.ParseAddr(d.Exporter); err != nil {
			return flow.Identity{}, fmt.Errorf("exporter: %w", err)
		}
	}
	client, err := netip.ParseAddrPort(d.Client)
	if err != nil {
		return flow.Identity{}, fmt.Errorf("client: %w", err)
	}
	broker, err := netip.ParseAddrPort(d.Broker)
	if err != nil {
		return flow.Identity{}, fmt.Errorf("broker: %w", err)
	}
	return flow.Identity{Exporter: exp, Domain: d.Domain, Client: client, Broker: broker,
		ClientID: d.ClientID, Username: d.Username, Version: d.Version, Seen: d.Seen}, nil
}

// PutIdentity queues an upsert; it never blocks.
func (s *SessionWriter) PutIdentity(id flow.Identity) { s.queue(sessionOp{id: id}) }

// DeleteIdentity queues a delete; it never blocks.
func (s *SessionWriter) DeleteIdentity(id flow.Identity) { s.queue(sessionOp{id: id, delete: true}) }

func (s *SessionWriter) queue(op sessionOp) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.dropped.Add(1)
		return
	}
	select {
	case s.ch <- op:
	default:
		if s.dropped.Add(1)%1000 == 1 {
			s.log.Warn().Uint64("dropped", s.dropped.Load()).Msg("sessions: queue full; identities not persisted (still used in memory)")
		}
	}
}

// Written and Dropped count identity operations.
func (s *SessionWriter) Written() uint64 { return s.written.Load() }
func (s *SessionWriter) Dropped() uint64 { return s.dropped.Load() }

func (s *SessionWriter) run() {
	defer s.wg.Done()
	batch := make([]mongo.WriteModel, 0, 512)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.coll.BulkWrite(ctx, batch, options.BulkWrite().SetOrdered(true))
		cancel()
		if err != nil {
			s.dropped.Add(uint64(len(batch)))
			s.log.Warn().Err(err).Int("operations", len(batch)).Msg("sessions: cannot persist identities (still used in memory)")
		} else {
			s.written.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	for {
		select {
		case op, ok := <-s.ch:
			if !ok {
				flush()
				return
			}
			key := op.id.Key()
			if op.delete {
				batch = append(batch, mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: key}}))
			} else {
				d := sessionDoc{ID: key, Exporter: addrText(op.id.Exporter), Domain: op.id.Domain, Client: op.id.Client.String(),
					Broker: op.id.Broker.String(), ClientID: op.id.ClientID, Username: op.id.Username, Version: op.id.Version, Seen: op.id.Seen}
				batch = append(batch, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: key}}).SetReplacement(d).SetUpsert(true))
			}
			if len(batch) == cap(batch) {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// Close writes what is queued and disconnects.
func (s *SessionWriter) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.ch)
	s.mu.Unlock()
	s.wg.Wait()
	return s.client.Disconnect(ctx)
}

// addrText is an address as text, empty for none.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
