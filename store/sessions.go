package store

import (
	"context"
	"fmt"
	"net/netip"
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
// in order. It is the collector's identity store
// (collector.IdentityStore). What cannot be queued or written is counted
// and logged: the table in memory still works, only its persistence is
// lost.
type SessionWriter struct{ w *bgWriter }

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
	w, err := openBackground(ctx, url, database, SessionCollection, "sessions", true, log)
	if err != nil {
		return nil, err
	}
	return &SessionWriter{w}, nil
}

// LoadIdentities reads up to max stored identities, most recent CONNECT
// first.
func (s *SessionWriter) LoadIdentities(ctx context.Context, max int) ([]flow.Identity, error) {
	cur, err := s.w.coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "connectTime", Value: -1}}).SetLimit(int64(max)))
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
			s.w.log.Warn().Err(err).Str("id", d.ID).Msg("sessions: stored identity not usable; ignored")
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
func (s *SessionWriter) PutIdentity(id flow.Identity) {
	key := id.Key()
	s.w.put(upsertByID(key, sessionDoc{ID: key, Exporter: addrText(id.Exporter), Domain: id.Domain, Client: id.Client.String(),
		Broker: id.Broker.String(), ClientID: id.ClientID, Username: id.Username, Version: id.Version, Seen: id.Seen}))
}

// DeleteIdentity queues a delete; it never blocks.
func (s *SessionWriter) DeleteIdentity(id flow.Identity) {
	key := id.Key()
	s.w.put(bgOp{key: key, model: mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: key}})})
}

// Written and Dropped count identity operations.
func (s *SessionWriter) Written() uint64 { return s.w.written.Load() }
func (s *SessionWriter) Dropped() uint64 { return s.w.dropped.Load() }

// Close writes what is queued and disconnects.
func (s *SessionWriter) Close(ctx context.Context) error { return s.w.close(ctx) }

// addrText is an address as text, empty for none.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
