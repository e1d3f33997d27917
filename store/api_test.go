package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/collector"
)

// The collector stores into a Writer.
var _ collector.Sink = (*Writer)(nil)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"user and password", "mongodb://alice:s3cret@db.example:27017/mission?authSource=admin",
			"mongodb://alice:xxxxx@db.example:27017/mission?authSource=admin"},
		{"escaped password", "mongodb://alice:p%40ss%3Aw0rd@db.example/", "mongodb://alice:xxxxx@db.example/"},
		{"empty password", "mongodb://alice:@db.example/", "mongodb://alice:xxxxx@db.example/"},
		{"user only", "mongodb://alice@db.example:27017/", "mongodb://alice@db.example:27017/"},
		{"no user", "mongodb://127.0.0.1:40123/", "mongodb://127.0.0.1:40123/"},
		{"empty", "", ""},
		{"unparsable", "mongodb://alice:s3cret@db.example:port/", "(unparsable URL)"},
		{"unparsable escape", "mongodb://alice:s3%zzcret@db.example/", "(unparsable URL)"},
		{"mongodb+srv", "mongodb+srv://alice:s3cret@cluster0.example.net/?retryWrites=true&w=majority",
			"mongodb+srv://alice:xxxxx@cluster0.example.net/?retryWrites=true&w=majority"},
		{"several hosts", "mongodb://alice:s3cret@h1:27017,h2:27017,h3:27017/mission?replicaSet=rs0",
			"mongodb://alice:xxxxx@h1:27017,h2:27017,h3:27017/mission?replicaSet=rs0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RedactURL(tc.in)
			require.Equal(t, tc.want, got)
			require.NotContains(t, got, "s3cret")
		})
	}
}
