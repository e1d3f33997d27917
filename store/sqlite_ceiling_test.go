package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // the SQLite build FerretDB uses, opened directly
)

// BenchmarkSQLiteCeiling answers "how fast could the embedded store be?"
// without FerretDB: it inserts rows exactly like the ones FerretDB stores
// for our flow documents (its sjson text, read back from a real embedded
// server; about 2.6 KB, 60 % of it FerretDB's per-document schema) straight
// into SQLite, through the same driver and pragmas, 100 rows per INSERT and
// per transaction like FerretDB, with FerretDB's _id index alone and with
// the store's five secondary indexes too. The gap between this and
// BenchmarkEmbeddedInsert is FerretDB's own cost; this figure is the
// ceiling of any FerretDB-on-SQLite store on the machine.
func BenchmarkSQLiteCeiling(b *testing.B) {
	rows := ferretRows(b, 30_000)
	for _, indexes := range []int{0, len(indexedFields)} {
		b.Run(fmt.Sprintf("secondary-indexes=%d", indexes), func(b *testing.B) {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(b.TempDir(), "ceiling.sqlite")+
				"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)&_pragma=auto_vacuum(none)&"+sqlitePragmas)
			require.NoError(b, err)
			defer db.Close()
			db.SetMaxOpenConns(1)
			exec := func(q string) {
				_, err := db.Exec(q)
				require.NoError(b, err, q)
			}
			exec(`CREATE TABLE t (_ferretdb_sjson TEXT NOT NULL CHECK(_ferretdb_sjson != '')) STRICT`)
			exec(`CREATE UNIQUE INDEX t__id_ ON t (_ferretdb_sjson->"_id")`)
			for _, f := range indexedFields[:indexes] {
				exec(fmt.Sprintf(`CREATE INDEX "t_%s_1" ON t (_ferretdb_sjson->"%s")`, f, f))
			}
			const perInsert = 100
			insert := "INSERT INTO t (_ferretdb_sjson) VALUES (?)" + strings.Repeat(", (?)", perInsert-1)
			args := make([]any, perInsert)
			b.SetBytes(int64(len(rows[0])))
			b.ResetTimer()
			start := time.Now()
			for n := 0; n < b.N; n += perInsert {
				for i := range args {
					args[i] = rows[(n+i)%len(rows)]
				}
				tx, err := db.Begin()
				require.NoError(b, err)
				_, err = tx.Exec(insert, args...)
				require.NoError(b, err)
				require.NoError(b, tx.Commit())
				if (n+perInsert)%len(rows) == 0 { // the next pass must not hit the unique index
					b.StopTimer()
					exec(`DELETE FROM t`)
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// ferretRows stores n test documents through the embedded server and reads
// back the rows FerretDB wrote for them.
func ferretRows(b *testing.B, n int) []string {
	ctx := context.Background()
	dir := b.TempDir()
	w, err := Open(ctx, Config{DataDir: dir, BatchSize: 1000}, zerolog.Nop())
	require.NoError(b, err)
	require.NoError(b, w.PutBatch(testDocs(0, n)))
	for w.Stats().Inserted < uint64(n) {
		time.Sleep(time.Millisecond)
	}
	require.NoError(b, w.Close(ctx))

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "db", DefaultDatabase+".sqlite")+"?mode=ro")
	require.NoError(b, err)
	defer db.Close()
	var table string
	require.NoError(b, db.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = ?`, DefaultCollection).Scan(&table))
	rs, err := db.Query(fmt.Sprintf(`SELECT _ferretdb_sjson FROM %q`, table))
	require.NoError(b, err)
	defer rs.Close()
	var rows []string
	for rs.Next() {
		var s string
		require.NoError(b, rs.Scan(&s))
		rows = append(rows, s)
	}
	require.NoError(b, rs.Err())
	require.Len(b, rows, n)
	return rows
}
