package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"

	"github.com/mission-ids/mission/flow"
)

func TestEmbeddedStoresDocuments(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	w, err := Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	require.True(t, w.Embedded())
	require.Regexp(t, `^mongodb://%2F.*%2Fmongodb\.sock/$`, w.URL())

	// A second writer over the same data directory fails clearly.
	_, err = Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.ErrorIs(t, err, ErrDirInUse)

	const n = 2500
	docs := testDocs(0, n)
	for i := 0; i < n; i += 100 {
		require.NoError(t, w.PutBatch(docs[i:i+100]))
	}
	waitFor(t, 60*time.Second, "all documents stored", settled(w, n))

	client := testClient(t, w.URL())
	coll := client.Database("mission").Collection("mqtt")
	stored, flowIDs := countStored(t, coll)
	require.EqualValues(t, n, stored)
	require.EqualValues(t, n, flowIDs)

	// Field names, dates and the nanosecond twin as stored.
	want := docs[17]
	var got flow.Document
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: DocumentID(&want)}}).Decode(&got))
	require.Equal(t, want.FlowStartNs, got.FlowStartNs)
	require.Equal(t, want.FlowStart.Truncate(time.Millisecond), got.FlowStart.UTC(), "a BSON date")
	require.Equal(t, want.MQTTTopic, got.MQTTTopic)
	require.Equal(t, want.MQTTCorrelationData, got.MQTTCorrelationData)
	require.Equal(t, "192.0.2.10:4739", got.ExporterAddress)
	require.EqualValues(t, 1, got.ObservationDomainID)
	require.NotNil(t, got.CollectorReceiveTime)
	var raw bson.M
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "mqttCorrelationData", Value: want.MQTTCorrelationData}}).Decode(&raw))
	for _, k := range []string{"flowStartNanoseconds", "flowEndNanoseconds", "collectorReceiveTime"} {
		require.IsType(t, primitive.DateTime(0), raw[k], k)
	}

	// The indexes exist.
	cur, err := coll.Indexes().List(ctx)
	require.NoError(t, err)
	var specs []struct {
		Key bson.D `bson:"key"`
	}
	require.NoError(t, cur.All(ctx, &specs))
	var keys []string
	for _, s := range specs {
		keys = append(keys, s.Key[0].Key)
	}
	require.Subset(t, keys, indexedFields)

	// Resending the same flows stores nothing new.
	require.NoError(t, w.PutBatch(docs[:500]))
	waitFor(t, 30*time.Second, "duplicates seen", func() bool { return w.Stats().Duplicates == 500 })
	st := w.Stats()
	require.EqualValues(t, n, st.Inserted)
	require.Zero(t, st.Dropped)
	require.Zero(t, st.Rejected)
	require.Positive(t, st.InsertBatches)
	require.EqualValues(t, st.InsertBatches, st.InsertLatency.Count)
	require.True(t, st.Healthy)

	// Disconnect first: FerretDB gives connected clients 3 s to leave.
	require.NoError(t, client.Disconnect(ctx))
	require.NoError(t, w.Close(ctx))
	require.ErrorIs(t, w.Put(docs[0]), ErrClosed)

	// The data directory is free again, and the data is still there.
	w, err = Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	defer w.Close(ctx)
	stored, _ = countStored(t, testClient(t, w.URL()).Database("mission").Collection("mqtt"))
	require.EqualValues(t, n, stored)
}

func TestEmbeddedRetentionUnsupported(t *testing.T) {
	_, err := Open(context.Background(), Config{DataDir: t.TempDir(), Retention: 24 * time.Hour}, testLogger(t))
	require.ErrorIs(t, err, ErrRetentionUnsupported)
}

func TestOpenFailsClearlyWhenDatabaseDown(t *testing.T) {
	start := time.Now()
	_, err := Open(context.Background(), Config{
		URL: "mongodb://" + freeAddr(t) + "/", DataDir: t.TempDir(), WriteTimeout: 3 * time.Second,
	}, testLogger(t))
	require.ErrorIs(t, err, ErrUnreachable)
	require.Contains(t, err.Error(), "cannot reach the database at mongodb://127.0.0.1:")
	require.Less(t, time.Since(start), 10*time.Second)
}

// A second process over the same data directory fails clearly.
func TestEmbeddedDirLockedAcrossProcesses(t *testing.T) {
	db := startFerretProc(t)
	_, err := StartEmbedded(db.dir, "127.0.0.1:0", testLogger(t))
	require.ErrorIs(t, err, ErrDirInUse)
	require.Contains(t, err.Error(), "used by another mission process")
	db.kill() // the kernel releases the lock of a killed process
	e, err := StartEmbedded(db.dir, "127.0.0.1:0", testLogger(t))
	require.NoError(t, err)
	require.NoError(t, e.Close())
}

// TestOpenBeforeDatabase: with StartUnreachable a Writer opens while its
// database is down, spools what it is given, and once a server starts at
// the URL creates the indexes and stores every flow once.
func TestOpenBeforeDatabase(t *testing.T) {
	const n = 3000
	db := &ferretProc{t: t, bin: buildFerretServer(t), dir: t.TempDir(), addr: freeAddr(t)}
	ctx := context.Background()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: t.TempDir(), WriteTimeout: 2 * time.Second, StartUnreachable: true}, testLogger(t))
	require.NoError(t, err)
	defer w.Close(ctx)
	require.False(t, w.Stats().Healthy)
	require.NoError(t, w.PutBatch(testDocs(0, n)))
	waitFor(t, 30*time.Second, "flows spooled while the database is down", func() bool { return w.Stats().Spooled > 0 })

	db.start()
	t.Cleanup(db.kill)
	waitFor(t, 120*time.Second, "spool replayed into the database", settled(w, n))
	st := w.Stats()
	require.Zero(t, st.Dropped)
	require.Positive(t, st.PingErrors)

	coll := testClient(t, db.url()).Database("mission").Collection("mqtt")
	stored, flowIDs := countStored(t, coll)
	require.EqualValues(t, n, stored)
	require.EqualValues(t, n, flowIDs)
	cur, err := coll.Indexes().List(ctx)
	require.NoError(t, err)
	var idx []bson.M
	require.NoError(t, cur.All(ctx, &idx))
	names := map[string]bool{}
	for _, i := range idx {
		names[fmt.Sprint(i["name"])] = true
	}
	for _, f := range indexedFields {
		require.True(t, names[f+"_1"], "index on %s created once the database answered: %v", f, names)
	}
}
