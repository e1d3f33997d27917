package store

import (
	"errors"
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
		{"bad port", "mongodb://alice:s3cret@db.example:port/", "mongodb://alice:xxxxx@db.example:port/"},
		{"bad escape", "mongodb://alice:s3%zzcret@db.example/", "mongodb://alice:xxxxx@db.example/"},
		{"unescaped @ and slash", "mongodb://alice:s3/c@ret@db.example/mission", "mongodb://alice:xxxxx@db.example/mission"},
		{"no scheme", "alice:s3cret@db.example", "(unparsable URL)"},
		{"unix socket", "mongodb://alice:s3cret@%2Fdata%2Fmongodb.sock/?authSource=admin", "mongodb://alice:xxxxx@%2Fdata%2Fmongodb.sock/?authSource=admin"},
		{"secret options", "mongodb://db.example/?tls=true&tlsCertificateKeyFilePassword=s3cret&authMechanismProperties=AWS_SESSION_TOKEN:s3cret",
			"mongodb://db.example/?tls=true&tlsCertificateKeyFilePassword=xxxxx&authMechanismProperties=xxxxx"},
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

// Driver errors that quote a URL or its password lose them; errors.Is
// still sees the original.
func TestRedactError(t *testing.T) {
	const u = "mongodb://alice:p%40ss-w0rd@db.example/"
	inner := errors.New("auth for " + u + " with p@ss-w0rd and p%40ss-w0rd failed")
	err := redactError(inner, u)
	require.Equal(t, "auth for mongodb://alice:xxxxx@db.example/ with xxxxx and xxxxx failed", err.Error())
	require.ErrorIs(t, err, inner)
	require.Same(t, inner, redactError(inner, "mongodb://db.example/"), "nothing to hide")
	require.Equal(t, "mongodb://%2Ftmp%2Fmission%20x%2Fmongodb.sock/", SocketURL("/tmp/mission x/mongodb.sock"))
}
