package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// The alert sink of detection, as mining.AlertSink declares it (the store
// does not import mining).
var _ interface {
	PutAlert(alertJSON []byte) error
	Dropped() uint64
	Close(ctx context.Context) error
} = (*AlertWriter)(nil)

func TestAlertWriterPutAlert(t *testing.T) {
	db := startFerretProc(t)
	ctx := context.Background()
	aw, err := OpenAlerts(ctx, db.url(), "mission", testLogger(t))
	require.NoError(t, err)

	for _, tc := range []struct {
		name, js string
		ok       bool
	}{
		{"subscription", `{"check":"subscription","severity":"high","time":"2026-03-14T15:09:26.535897932Z",` +
			`"client":"doorSensor","topic":"$SYS/#","flows":[17],"message":"$SYS subscription"}`, true},
		{"case", `{"check":"skeleton","severity":"medium","time":"2026-03-14T15:09:27Z",` +
			`"client":"controller","case":"deadbeef","flows":[18,19],"message":"not followed"}`, true},
		{"not JSON", `{"check":`, false},
	} {
		err := aw.PutAlert([]byte(tc.js))
		if tc.ok {
			require.NoError(t, err, tc.name)
		} else {
			require.Error(t, err, tc.name)
		}
	}
	require.NoError(t, aw.Close(ctx))
	require.EqualValues(t, 2, aw.Stored())
	require.Zero(t, aw.Dropped())

	coll := testClient(t, db.url()).Database("mission").Collection(AlertCollection)
	var got []bson.M
	cur, err := coll.Find(ctx, bson.D{}, nil)
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &got))
	require.Len(t, got, 2)
	byCheck := map[string]bson.M{}
	for _, d := range got {
		byCheck[d["check"].(string)] = d
	}
	sub := byCheck["subscription"]
	require.Equal(t, "$SYS/#", sub["topic"])
	require.Equal(t, "doorSensor", sub["client"])
	require.IsType(t, primitive.DateTime(0), sub["time"], "time is a date")
	require.Equal(t, time.Date(2026, 3, 14, 15, 9, 26, 535000000, time.UTC), sub["time"].(primitive.DateTime).Time().UTC())
	require.Equal(t, "deadbeef", byCheck["skeleton"]["case"])
	require.Len(t, byCheck["skeleton"]["flows"], 2)
}
