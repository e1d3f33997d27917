package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// The incident sink of detection, as mining.IncidentSink declares it.
var _ interface {
	PutIncident(id string, incidentJSON []byte) error
	Dropped() uint64
	Close(ctx context.Context) error
} = (*IncidentWriter)(nil)

func TestIncidentWriterUpserts(t *testing.T) {
	db := startFerretProc(t)
	ctx := context.Background()
	inc := func(id string, count int, closed bool) []byte {
		return fmt.Appendf(nil, `{"id":%q,"check":"rate","root":"type CONNECT","severity":"high",`+
			`"first":"2026-03-14T15:09:26.5Z","last":"2026-03-14T15:09:2%dZ","count":%d,"clients":["flooder"],`+
			`"clientsTotal":1,"flows":[1,2],"message":"CONNECT flood","closed":%v}`, id, count%10, count, closed)
	}
	for _, tc := range []struct {
		name string
		puts [][]byte
		bad  bool
	}{
		// One session: an incident opened, grown twice, a second one.
		{"first session", [][]byte{inc("a1", 1, false), inc("a1", 5, false), inc("b2", 1, false), inc("a1", 7, false)}, false},
		// A later session (a restart, or a later batch): the same id is replaced.
		{"second session", [][]byte{inc("a1", 9, true)}, false},
		{"not JSON", [][]byte{[]byte(`{"id":`)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := OpenIncidents(ctx, db.url(), "mission", testLogger(t))
			require.NoError(t, err)
			for _, p := range tc.puts {
				err := w.PutIncident(idOf(p), p)
				if tc.bad {
					require.Error(t, err)
				} else {
					require.NoError(t, err)
				}
			}
			require.NoError(t, w.Close(ctx))
			require.Zero(t, w.Dropped())
		})
	}

	coll := testClient(t, db.url()).Database("mission").Collection(IncidentCollection)
	var got []bson.M
	cur, err := coll.Find(ctx, bson.D{}, nil)
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &got))
	require.Len(t, got, 2, "upserted by id, not duplicated: %v", got)
	byID := map[string]bson.M{}
	for _, d := range got {
		byID[d["_id"].(string)] = d
	}
	a := byID["a1"]
	require.EqualValues(t, 9, a["count"])
	require.Equal(t, true, a["closed"])
	require.IsType(t, primitive.DateTime(0), a["first"], "first is a date")
	require.Equal(t, time.Date(2026, 3, 14, 15, 9, 26, 500000000, time.UTC), a["first"].(primitive.DateTime).Time().UTC())
	require.EqualValues(t, 1, byID["b2"]["count"])
}

// idOf is the id of the incident JSON p (its first field), "" if none.
func idOf(p []byte) string {
	if len(p) < 9 {
		return ""
	}
	return string(p[7:9])
}
