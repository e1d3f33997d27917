package store

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// BenchmarkEmbeddedInsert measures documents stored per second into the
// embedded server (FerretDB v1 + SQLite, in process), from PutBatch to the
// database's acknowledgement, with batches of 1000 realistic flow documents
// (QoS 1 PUBLISH flows, about 700 bytes of BSON each) and all indexes.
func BenchmarkEmbeddedInsert(b *testing.B) {
	benchInsert(b, Config{DataDir: b.TempDir(), BatchSize: 1000})
}

// BenchmarkExternalInsert is BenchmarkEmbeddedInsert against the server at
// $MISSION_BENCH_MONGO_URL, into a fresh database per run (dropped after).
// scripts/bench-external-store.sh starts one (FerretDB over PostgreSQL)
// and runs it; there is no MongoDB server on these machines.
func BenchmarkExternalInsert(b *testing.B) {
	url := os.Getenv("MISSION_BENCH_MONGO_URL")
	if url == "" {
		b.Skip("set MISSION_BENCH_MONGO_URL to a MongoDB server (scripts/bench-external-store.sh does)")
	}
	db := fmt.Sprintf("missionbench%d", time.Now().UnixNano())
	benchInsert(b, Config{URL: url, Database: db, DataDir: b.TempDir(), BatchSize: 1000})
}

func benchInsert(b *testing.B, cfg Config) {
	ctx := context.Background()
	w, err := Open(ctx, cfg, zerolog.Nop())
	require.NoError(b, err)
	defer w.Close(ctx)
	if cfg.URL != "" {
		defer func() { _ = w.coll.Database().Drop(ctx) }()
	}
	docs := testDocs(0, 10_000)
	raw, err := AppendBSON(nil, &docs[0])
	require.NoError(b, err)
	b.SetBytes(int64(len(raw)))

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += 1000 {
		batch := docs[:min(1000, b.N-i)]
		for j := range batch {
			batch[j].FlowID = uint64(i + j + 1) // a new flow each time
		}
		if err := w.PutBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	for w.Stats().Inserted < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	st := w.Stats()
	require.Zero(b, st.Dropped)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "docs/s")
	if st.InsertBatches > 0 {
		b.ReportMetric(float64(st.InsertLatency.Sum.Milliseconds())/float64(st.InsertBatches), "ms/batch")
	}
}
