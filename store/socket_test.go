//go:build linux

package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// shortDataDir is a data directory whose socket path fits in the data
// directory itself (short and lower-case, unlike t.TempDir's).
func shortDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mission-sock-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "data")
}

// The embedded server listens only on a Unix socket in the data
// directory: mode 0600 in a 0700 directory, no TCP socket; the Go driver
// reaches it through the percent-encoded URL alone; a Reader over the data
// directory reads through it while the Writer runs.
func TestEmbeddedUnixSocket(t *testing.T) {
	ctx := context.Background()
	dataDir := shortDataDir(t)
	w, err := Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	defer w.Close(ctx)
	sock := filepath.Join(dataDir, SocketName)
	require.Equal(t, SocketURL(sock), w.URL())
	require.Equal(t, "mongodb://"+strings.ReplaceAll(sock, "/", "%2F")+"/", w.URL())
	requireMode(t, sock, os.ModeSocket|0o600)
	requireMode(t, dataDir, os.ModeDir|0o700)
	requireMode(t, filepath.Join(dataDir, "db"), os.ModeDir|0o700)
	require.Empty(t, listeningTCP(t), "the process listens on no TCP port")

	// The plain Go driver, with nothing but the URL.
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(w.URL()))
	require.NoError(t, err)
	defer client.Disconnect(ctx)
	coll := client.Database("mission").Collection("mqtt")
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "via-socket"}})
	require.NoError(t, err)

	// A Reader over the data directory uses the running server.
	r, err := OpenReader(ctx, ReaderConfig{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	require.False(t, r.Embedded())
	n, err := r.Count(ctx, Query{})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.NoError(t, r.Close())

	// Another user is refused.
	requireRefusedAsOtherUser(t, sock)
}

func requireMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, want, fi.Mode()&(os.ModeType|os.ModePerm), "%s is %v", path, fi.Mode())
}

// listeningTCP returns the TCP sockets in LISTEN state held by this process
// (its descriptors' socket inodes found in /proc/self/net/tcp{,6}).
func listeningTCP(t *testing.T) []string {
	t.Helper()
	return listeningTCPOf(t, os.Getpid())
}

// listeningTCPOf returns the local addresses of the TCP sockets in LISTEN
// state among pid's file descriptors.
func listeningTCPOf(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) > 9 && fs[3] == "0A" && inodes[fs[9]] { // 0A: LISTEN
				out = append(out, f+" "+fs[1])
			}
		}
	}
	return out
}

// requireRefusedAsOtherUser connects to a Unix socket from a process
// running as uid 65533 (not the socket's owner) and requires EACCES.
func requireRefusedAsOtherUser(t *testing.T, sock string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: cannot run a client as another user")
		return
	}
	helper := copyForOtherUsers(t, os.Args[0])
	cmd := exec.Command(helper, "-test.run=^TestDialHelper$")
	cmd.Env = append(os.Environ(), "MISSION_DIAL_HELPER="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65533, Gid: 65533}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "dial: EACCES", "%s", out)
}

// copyForOtherUsers copies an executable to a directory every user can
// enter (the test binary's own is private to root).
func copyForOtherUsers(t *testing.T, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mission-helper-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	in, err := os.Open(bin)
	require.NoError(t, err)
	defer in.Close()
	path := filepath.Join(dir, "helper")
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	return path
}

// TestDialHelper is the other user's client of requireRefusedAsOtherUser.
func TestDialHelper(t *testing.T) {
	sock := os.Getenv("MISSION_DIAL_HELPER")
	if sock == "" {
		t.Skip("helper process only")
	}
	c, err := net.Dial("unix", sock)
	switch {
	case err == nil:
		c.Close()
		fmt.Println("dial: connected as uid " + strconv.Itoa(os.Getuid()))
	case errors.Is(err, syscall.EACCES):
		fmt.Println("dial: EACCES")
	default:
		fmt.Println("dial:", err)
	}
}

// Data directories whose socket path is too long or has upper-case
// letters get a private directory under TMPDIR, the same for every
// command over that data directory.
func TestEmbeddedSocketFallback(t *testing.T) {
	for _, tc := range []struct {
		name, dir string
		inside    bool
	}{
		{"short", "/srv/mission/data", true},
		{"upper case", "/srv/Mission/data", false},
		{"long", "/srv/" + strings.Repeat("d", 100), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := EmbeddedSocket(tc.dir)
			require.NoError(t, err)
			again, err := EmbeddedSocket(tc.dir + "/")
			require.NoError(t, err)
			require.Equal(t, p, again)
			require.LessOrEqual(t, len(p), maxSocketPath)
			if tc.inside {
				require.Equal(t, tc.dir+"/mongodb.sock", p)
			} else {
				require.Regexp(t, `^`+os.TempDir()+`/mission-[0-9a-f]{16}/mongodb\.sock$`, p)
			}
		})
	}

	// Serving such a directory works, from a private directory of ours.
	ctx := context.Background()
	dataDir := filepath.Join(t.TempDir(), "Data") // upper case
	w, err := Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	sock, err := EmbeddedSocket(dataDir)
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(sock)) })
	require.Equal(t, SocketURL(sock), w.URL())
	requireMode(t, filepath.Dir(sock), os.ModeDir|0o700)
	requireMode(t, sock, os.ModeSocket|0o600)
	require.NoError(t, w.Close(ctx))

	// A fallback directory that is not ours, or not private, is refused.
	require.NoError(t, os.Chmod(filepath.Dir(sock), 0o755))
	_, err = Open(ctx, Config{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err, "ours: tightened")
	requireMode(t, filepath.Dir(sock), os.ModeDir|0o700)
}

// A socket left by a process that died is replaced; anything else at the
// socket's path is an error. A data directory open to other users is made
// private.
func TestEmbeddedStaleSocket(t *testing.T) {
	dataDir := shortDataDir(t)
	require.NoError(t, os.MkdirAll(dataDir, 0o755))
	sock := filepath.Join(dataDir, SocketName)
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, ln.Close())

	var logs bytes.Buffer
	e, err := StartEmbedded(filepath.Join(dataDir, "db"), sock, zerolog.New(&logs))
	require.NoError(t, err)
	require.Contains(t, logs.String(), "made it private")
	requireMode(t, dataDir, os.ModeDir|0o700)
	requireMode(t, sock, os.ModeSocket|0o600)
	require.NoError(t, e.Close())
	_, err = os.Lstat(sock)
	require.ErrorIs(t, err, os.ErrNotExist, "removed at close")

	require.NoError(t, os.WriteFile(sock, []byte("not a socket"), 0o600))
	_, err = StartEmbedded(filepath.Join(dataDir, "db"), sock, zerolog.Nop())
	require.ErrorContains(t, err, "is not a socket")
}

// --embedded-listen still serves TCP, and says what that exposes.
func TestEmbeddedTCPLogged(t *testing.T) {
	var logs bytes.Buffer
	e, err := StartEmbedded(t.TempDir(), "127.0.0.1:0", zerolog.New(&logs))
	require.NoError(t, err)
	defer e.Close()
	require.Regexp(t, `^mongodb://127\.0\.0\.1:\d+/$`, e.URL())
	require.Contains(t, logs.String(), `"level":"info"`)
	require.Contains(t, logs.String(), "every local user and process can read, rewrite and delete every flow")
}
