package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// indexedFields get one ascending index each: the query paths of the
// analyses (time ranges, request/response correlation, per-client and
// per-topic views).
var indexedFields = []string{
	"flowStartNanoseconds",
	"mqttCorrelationData",
	"mqttSrcClientId",
	"mqttDstClientId",
	"mqttTopic",
}

// compoundIndexes get one index each: CoAP flows share the collection
// with MQTT flows, told apart by applicationProtocol; per-resource views
// select by protocol and path.
var compoundIndexes = []bson.D{
	{{Key: "applicationProtocol", Value: 1}, {Key: "coapUriPath", Value: 1}},
}

// ttlIndexName names the retention index so it can be found and changed.
const ttlIndexName = "collectorReceiveTime_ttl"

// ensureIndexes creates the indexes (a no-op for those that exist) and
// creates, changes or drops the retention TTL index to match retention.
func ensureIndexes(ctx context.Context, coll *mongo.Collection, retention time.Duration, embedded bool, log zerolog.Logger) error {
	// One createIndexes per index: FerretDB v1.24.2 panics (and drops the
	// connection) on a createIndexes naming several indexes that all exist.
	for _, f := range indexedFields {
		if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: f, Value: 1}}}); err != nil {
			return fmt.Errorf("store: create index on %s in %s.%s: %w", f, coll.Database().Name(), coll.Name(), err)
		}
	}
	for _, keys := range compoundIndexes {
		if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys}); err != nil {
			return fmt.Errorf("store: create index on %v in %s.%s: %w", keys, coll.Database().Name(), coll.Name(), err)
		}
	}
	existing, err := ttlIndex(ctx, coll)
	if err != nil {
		return err
	}
	secs := int32(retention / time.Second)
	switch {
	case retention == 0 && existing == nil:
		return nil
	case retention == 0:
		if _, err := coll.Indexes().DropOne(ctx, ttlIndexName); err != nil {
			return fmt.Errorf("store: drop retention index %s (retention is now off): %w", ttlIndexName, err)
		}
		log.Info().Msg("store: retention off: TTL index dropped, documents are kept")
		return nil
	case existing != nil && *existing == secs:
		return nil
	case existing != nil:
		cmd := bson.D{
			{Key: "collMod", Value: coll.Name()},
			{Key: "index", Value: bson.D{{Key: "name", Value: ttlIndexName}, {Key: "expireAfterSeconds", Value: secs}}},
		}
		if err := coll.Database().RunCommand(ctx, cmd).Err(); err != nil {
			return fmt.Errorf("store: change retention to %s: %w", retention, err)
		}
		log.Info().Dur("retention", retention).Msg("store: retention changed")
		return nil
	}
	ttl := mongo.IndexModel{
		Keys:    bson.D{{Key: "collectorReceiveTime", Value: 1}},
		Options: options.Index().SetName(ttlIndexName).SetExpireAfterSeconds(secs),
	}
	if _, err := coll.Indexes().CreateOne(ctx, ttl); err != nil {
		var ce mongo.CommandError
		if errors.As(err, &ce) && ce.Code == 238 { // NotImplemented: FerretDB v1
			what := "this database"
			if embedded {
				what = "the embedded server (FerretDB)"
			}
			return fmt.Errorf("%w: %s cannot expire documents; unset the retention or use MongoDB: %w", ErrRetentionUnsupported, what, err)
		}
		return fmt.Errorf("store: create retention index: %w", err)
	}
	return nil
}

// ttlIndex returns the expireAfterSeconds of the retention index, or nil
// when there is none.
func ttlIndex(ctx context.Context, coll *mongo.Collection) (*int32, error) {
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: list indexes of %s: %w", coll.Name(), err)
	}
	var specs []struct {
		Name               string `bson:"name"`
		ExpireAfterSeconds *int32 `bson:"expireAfterSeconds"`
	}
	if err := cur.All(ctx, &specs); err != nil {
		return nil, fmt.Errorf("store: list indexes of %s: %w", coll.Name(), err)
	}
	for _, s := range specs {
		if s.Name == ttlIndexName {
			if s.ExpireAfterSeconds == nil {
				var zero int32
				return &zero, nil
			}
			return s.ExpireAfterSeconds, nil
		}
	}
	return nil, nil
}
