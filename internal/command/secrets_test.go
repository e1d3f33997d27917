package command

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runAll runs mission in process and returns everything it printed (stdout,
// stderr and the error Main would print).
func runAll(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := New("test", &out, &errs).RunContext(ctx, append([]string{"mission"}, args...))
	all := out.String() + errs.String()
	if err != nil {
		all += "mission: " + err.Error() + "\n"
	}
	return all, err
}

// A password given in MONGO_URL, --mongo-url or MONGO_URL_FILE appears in
// no log line, error or printed configuration, whichever way the URL is
// used or fails (unreachable server, a URL the driver refuses).
func TestMongoPasswordNeverShown(t *testing.T) {
	const secret = "Sup3r-s3cret-pw"
	// An unreachable server; the driver gives up quickly.
	const opts = "?authSource=admin&serverSelectionTimeoutMS=300&connectTimeoutMS=300"
	good := "mongodb://alice:" + secret + "@127.0.0.1:1/mission" + opts
	escaped := "mongodb://alice:" + strings.ReplaceAll(secret, "-", "%2D") + "@127.0.0.1:1/" + opts
	refused := "mongodb://alice:" + secret + "/x@127.0.0.1:1/" + opts // unescaped slash: the driver refuses it
	tlsKey := "mongodb://127.0.0.1:1/?tlsCertificateKeyFilePassword=" + secret + "&serverSelectionTimeoutMS=300"

	dir := t.TempDir()
	file := filepath.Join(dir, "mongo-url")
	require.NoError(t, os.WriteFile(file, []byte(good+"\n"), 0o600))
	data := filepath.Join(dir, "data")

	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr bool
		want    string // must appear in the output
	}{
		{"collect, env", map[string]string{"MONGO_URL": good}, []string{"collect", "--data-dir", data, "--wait-for-database=false"}, true, "alice:xxxxx@127.0.0.1:1"},
		{"collect, flag", nil, []string{"collect", "--mongo-url", good, "--data-dir", data, "--wait-for-database=false"}, true, "cannot reach the database"},
		{"collect, escaped", map[string]string{"MONGO_URL": escaped}, []string{"collect", "--data-dir", data, "--wait-for-database=false"}, true, "alice:xxxxx@"},
		{"collect, refused URL", map[string]string{"MONGO_URL": refused}, []string{"collect", "--data-dir", data, "--wait-for-database=false"}, true, "invalid MongoDB URL"},
		{"collect, TLS key password", map[string]string{"MONGO_URL": tlsKey}, []string{"collect", "--data-dir", data, "--wait-for-database=false"}, true, ""},
		{"collect, file", map[string]string{"MONGO_URL_FILE": file}, []string{"collect", "--data-dir", data, "--wait-for-database=false"}, true, "alice:xxxxx@127.0.0.1:1"},
		{"query, env", map[string]string{"MONGO_URL": good}, []string{"query", "--count"}, true, "cannot reach the database"},
		{"query, file", map[string]string{"MONGO_URL_FILE": file}, []string{"query"}, true, "alice:xxxxx@"},
		{"mine, file", map[string]string{"MONGO_URL_FILE": file}, []string{"mine", "--output", filepath.Join(dir, "m.json")}, true, ""},
		{"collect print-config, env", map[string]string{"MONGO_URL": good}, []string{"collect", "--print-config"}, false, `"mongoURL": "mongodb://alice:xxxxx@127.0.0.1:1/mission?authSource=admin`},
		{"collect print-config, file", map[string]string{"MONGO_URL_FILE": file}, []string{"collect", "--print-config"}, false, `"mongoURLFile": "` + file},
		{"all-in-one print-config, file", map[string]string{"MONGO_URL_FILE": file}, []string{"all-in-one", "-i", "lo", "--print-config"}, false, "alice:xxxxx@"},
		{"all-in-one print-config, TLS key password", map[string]string{"MONGO_URL": tlsKey}, []string{"all-in-one", "-i", "lo", "--print-config"}, false, "tlsCertificateKeyFilePassword=xxxxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, err := runAll(t, tc.args...)
			if tc.wantErr {
				require.Error(t, err, out)
			} else {
				require.NoError(t, err, out)
			}
			require.NotContains(t, out, secret)
			require.NotContains(t, out, strings.ReplaceAll(secret, "-", "%2D"))
			require.Contains(t, out, tc.want)
		})
	}
}

// MONGO_URL_FILE wins over MONGO_URL; an unreadable or empty file is an
// error that names the file.
func TestMongoURLFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "url")
	require.NoError(t, os.WriteFile(file, []byte("  mongodb://from-file:27017/\n"), 0o600))
	t.Setenv("MONGO_URL", "mongodb://from-env:27017/")
	t.Setenv("MONGO_URL_FILE", file)
	out, err := runAll(t, "collect", "--print-config")
	require.NoError(t, err)
	require.Contains(t, out, `"mongoURL": "mongodb://from-file:27017/"`)

	t.Setenv("MONGO_URL_FILE", filepath.Join(dir, "missing"))
	_, err = runAll(t, "query")
	require.ErrorContains(t, err, "--mongo-url-file (env MONGO_URL_FILE): cannot read the MongoDB URL")
	require.ErrorContains(t, err, "missing")

	require.NoError(t, os.WriteFile(file, []byte("\n"), 0o600))
	t.Setenv("MONGO_URL_FILE", file)
	_, err = runAll(t, "collect", "--data-dir", filepath.Join(dir, "data"))
	require.ErrorContains(t, err, "is empty")
}
