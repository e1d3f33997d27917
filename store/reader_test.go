package store

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/mission-ids/mission/flow"
)

// readerDocs are the documents the Reader tests store: testDoc(0…9) on
// three topics (4, 3, 3 documents), plus two flows in the same millisecond
// as testDoc(5), stored in reverse time order, and one document of the
// original prototype (no nanosecond twin) between testDoc(2) and (3).
func readerDocs() []flow.Document {
	docs := testDocs(0, 10)
	topics := []string{"plant/a", "plant/b", "plant/c"}
	for i := range docs {
		docs[i].MQTTTopic = topics[i%3]
	}
	ms := docs[5].FlowStart.Truncate(time.Millisecond)
	for _, off := range []time.Duration{900 * time.Microsecond, 100 * time.Microsecond} {
		d := testDoc(100 + int(off/time.Microsecond))
		d.FlowStart = ms.Add(off)
		d.FlowStartNs = d.FlowStart.UnixNano()
		d.MQTTTopic = "plant/tie"
		docs = append(docs, d)
	}
	old := testDoc(2000)
	old.FlowStart = docs[2].FlowStart.Add(500 * time.Microsecond).Truncate(time.Millisecond)
	old.FlowStartNs, old.FlowEndNs, old.MQTTCorrelationDataRaw = 0, 0, nil
	old.MQTTTopic = "plant/original"
	return append(docs, old)
}

// storeDocs writes docs with an embedded Writer over dataDir and closes it.
func storeDocs(t *testing.T, dataDir string, docs []flow.Document) {
	t.Helper()
	ctx := context.Background()
	w, err := Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	require.NoError(t, w.PutBatch(docs))
	waitFor(t, 30*time.Second, "documents stored", settled(w, uint64(len(docs))))
	require.NoError(t, w.Close(ctx))
}

func TestReader(t *testing.T) {
	dataDir := t.TempDir()
	docs := readerDocs()
	storeDocs(t, dataDir, docs)
	ctx := context.Background()

	// The records in time order, to the nanosecond.
	want := make([]flow.Record, len(docs))
	for i := range docs {
		var err error
		want[i], err = docs[i].Record()
		require.NoError(t, err)
		want[i].Received = want[i].Received.Truncate(time.Millisecond) // a BSON date
		if docs[i].FlowStartNs == 0 {
			want[i].Start, want[i].End = docs[i].FlowStart, docs[i].FlowEnd.Truncate(time.Millisecond)
		}
	}
	slices.SortStableFunc(want, func(a, b flow.Record) int { return a.Start.Compare(b.Start) })
	start := func(i int) time.Time { return docs[i].FlowStart } // of testDoc(i), i < 10
	topics := func(recs []flow.Record) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Topic)
		}
		return out
	}

	r, err := OpenReader(ctx, ReaderConfig{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	require.True(t, r.Embedded())

	// The directory is locked while the Reader serves it.
	_, err = Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.ErrorIs(t, err, ErrDirInUse)
	// A second Reader reads through the first one's socket.
	r2, err := OpenReader(ctx, ReaderConfig{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	require.False(t, r2.Embedded())
	n, err := r2.Count(ctx, Query{})
	require.NoError(t, err)
	require.EqualValues(t, len(docs), n)
	require.NoError(t, r2.Close())

	t.Run("Find", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			q    Query
			want []uint64 // flowIds in order
		}{
			{"filter", Query{Filter: bson.D{{Key: "mqttTopic", Value: "plant/b"}}}, []uint64{2, 5, 8}},
			{"filter and limit", Query{Filter: bson.D{{Key: "mqttTopic", Value: "plant/a"}}, Limit: 2}, []uint64{1, 4}},
			{"filter and time range", Query{Filter: bson.D{{Key: "mqttTopic", Value: "plant/a"}}, From: start(3), To: start(9)},
				[]uint64{4, 7}},
			{"from only", Query{From: start(8)}, []uint64{9, 10}},
			{"to only", Query{To: start(2), Limit: 5}, []uint64{1, 2}},
			{"from and to", Query{From: start(6), To: start(9)}, []uint64{7, 8, 9}},
			{"empty range", Query{From: start(6), To: start(6)}, nil},
			{"to the nanosecond", Query{From: start(5).Add(-time.Nanosecond), To: start(5).Add(time.Nanosecond)}, []uint64{6}},
			{"from and to in the same millisecond", Query{From: start(5), To: start(5).Truncate(time.Millisecond).Add(900 * time.Microsecond)},
				[]uint64{6}},
			{"nothing matches", Query{Filter: bson.D{{Key: "mqttTopic", Value: "nope"}}}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var got []uint64
				require.NoError(t, r.Find(ctx, tc.q, func(raw bson.Raw) error {
					got = append(got, uint64(raw.Lookup("flowId").Int64()))
					return nil
				}))
				require.Equal(t, tc.want, got)
			})
		}
		stop := errors.New("stop")
		require.Same(t, stop, r.Find(ctx, Query{}, func(bson.Raw) error { return stop }))
	})

	t.Run("Count", func(t *testing.T) {
		for _, tc := range []struct {
			q    Query
			want int64
		}{
			{Query{}, int64(len(docs))},
			{Query{Filter: bson.D{{Key: "mqttTopic", Value: "plant/a"}}, Limit: 1}, 4},
			{Query{From: start(6), To: start(9)}, 3},
			{Query{From: start(9)}, 1},
			{Query{To: start(0)}, 0},
			{Query{From: start(5), To: start(5).Add(time.Nanosecond)}, 1},
			{Query{From: start(2), To: start(3)}, 1}, // the original prototype's document has no nanosecond twin
		} {
			n, err := r.Count(ctx, tc.q)
			require.NoError(t, err)
			require.Equal(t, tc.want, n, "%+v", tc.q)
		}
	})

	t.Run("CountBy", func(t *testing.T) {
		got, err := r.CountBy(ctx, Query{}, "mqttTopic")
		require.NoError(t, err)
		require.Equal(t, []FieldCount{{"plant/a", 4}, {"plant/b", 3}, {"plant/c", 3}, {"plant/tie", 2}, {"plant/original", 1}}, got)

		got, err = r.CountBy(ctx, Query{Filter: bson.D{{Key: "mqttTopic", Value: bson.D{{Key: "$in", Value: bson.A{"plant/a", "plant/b"}}}}},
			From: start(4)}, "mqttTopic")
		require.NoError(t, err)
		require.Equal(t, []FieldCount{{"plant/a", 2}, {"plant/b", 2}}, got, "ties by value")

		got, err = r.CountBy(ctx, Query{}, "mqttQoS")
		require.NoError(t, err)
		require.Equal(t, []FieldCount{{int32(1), int64(len(docs))}}, got)

		got, err = r.CountBy(ctx, Query{}, "ipfixFields.nope")
		require.NoError(t, err)
		require.Equal(t, []FieldCount{{nil, int64(len(docs))}}, got)

		_, err = r.CountBy(ctx, Query{}, "$mqttTopic")
		require.Error(t, err)
	})

	t.Run("Records", func(t *testing.T) {
		var got []flow.Record
		require.NoError(t, r.Records(ctx, Query{}, func(rec *flow.Record) error {
			got = append(got, *rec)
			return nil
		}))
		require.Equal(t, topics(want), topics(got), "time order, to the nanosecond")
		require.Equal(t, want, got)

		// The time range applies to the nanosecond: testDoc(5) shares its
		// millisecond with a flow before it and one after it.
		last := slices.IndexFunc(want, func(r flow.Record) bool { return r.Topic == "plant/tie" }) + 2
		require.Equal(t, "plant/tie", want[last].Topic)
		tie := want[last].Start
		require.Equal(t, tie.Truncate(time.Millisecond), start(5).Truncate(time.Millisecond))
		for _, tc := range []struct {
			q    Query
			want []string
		}{
			{Query{From: start(5), To: tie}, []string{"plant/c"}},
			{Query{From: start(5), To: tie.Add(time.Nanosecond)}, []string{"plant/c", "plant/tie"}},
			{Query{From: start(5).Add(-time.Nanosecond), To: start(5).Add(time.Nanosecond)}, []string{"plant/c"}},
			{Query{From: tie, To: tie}, nil},
		} {
			got = got[:0]
			require.NoError(t, r.Records(ctx, tc.q, func(rec *flow.Record) error {
				got = append(got, *rec)
				return nil
			}))
			require.Equal(t, tc.want, topics(got), "%+v", tc.q)
		}

		got = got[:0]
		require.NoError(t, r.Records(ctx, Query{Limit: 3}, func(rec *flow.Record) error {
			got = append(got, *rec)
			return nil
		}))
		require.Equal(t, want[:3], got)
	})

	require.NoError(t, r.Close())

	// By URL: the embedded server of a Writer over the same directory.
	w, err := Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	defer w.Close(ctx)
	r, err = OpenReader(ctx, ReaderConfig{URL: w.URL(), DataDir: filepath.Join(t.TempDir(), "unused")}, testLogger(t))
	require.NoError(t, err)
	require.False(t, r.Embedded())
	n, err = r.Count(ctx, Query{})
	require.NoError(t, err)
	require.EqualValues(t, len(docs), n)
	require.NoError(t, r.Close())
}

func TestOpenReaderErrors(t *testing.T) {
	ctx := context.Background()
	_, err := OpenReader(ctx, ReaderConfig{DataDir: filepath.Join(t.TempDir(), "missing")}, testLogger(t))
	require.ErrorIs(t, err, ErrNoDatabase)

	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = OpenReader(cctx, ReaderConfig{URL: "mongodb://" + freeAddr(t) + "/"}, testLogger(t))
	require.ErrorIs(t, err, ErrUnreachable)
	require.Less(t, time.Since(start), 10*time.Second)

	_, err = OpenReader(ctx, ReaderConfig{URL: "postgres://nope"}, testLogger(t))
	require.ErrorIs(t, err, ErrInvalidURL)
	require.NotErrorIs(t, err, ErrUnreachable)
}

func TestParseFilter(t *testing.T) {
	f, err := ParseFilter(`{"mqttTopic": "a", "mqttQoS": {"$gte": 1}}`)
	require.NoError(t, err)
	require.Equal(t, bson.D{{Key: "mqttTopic", Value: "a"}, {Key: "mqttQoS", Value: bson.D{{Key: "$gte", Value: int32(1)}}}}, f)
	_, err = ParseFilter(`{"mqttTopic": `)
	require.ErrorContains(t, err, "not a JSON query document")
}
