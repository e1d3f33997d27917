//go:build linux

package e2e

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
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/internal/plant"
	"github.com/mission-ids/mission/internal/privdrop"
	"github.com/mission-ids/mission/store"
)

// otherUID runs the client that must be refused: neither root nor the
// user mission runs as.
const otherUID = 65533

// The helper process run as otherUID: it dials each Unix socket named in
// MISSION_DIAL_HELPER and prints the outcome, before TestMain builds
// anything.
func init() {
	socks := os.Getenv("MISSION_DIAL_HELPER")
	if socks == "" {
		return
	}
	for _, s := range strings.Split(socks, ",") {
		c, err := net.Dial("unix", s)
		switch {
		case err == nil:
			c.Close()
			fmt.Printf("%s: connected\n", s)
		case errors.Is(err, syscall.EACCES):
			fmt.Printf("%s: EACCES\n", s)
		default:
			fmt.Printf("%s: %v\n", s, err)
		}
	}
	os.Exit(0)
}

// TestAllInOneDropsPrivileges runs `mission all-in-one -i lo --user
// nobody` as root and checks that, once capturing, every thread runs as
// nobody with no capability at all (effective, permitted, inheritable,
// ambient, bounding) and no_new_privs; that it listens on no TCP port, its
// Unix sockets (database, internal IPFIX hop) are 0600 in a 0700 data
// directory and refuse another user; that `mission query --data-dir` works
// for root while it runs; and that capture still works: every flow of a
// real MQTT workload is stored.
func TestAllInOneDropsPrivileges(t *testing.T) {
	mqtttest.RequireRoot(t)
	mqtttest.RequireTools(t, "mosquitto")
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	broker := mqtttest.StartBroker(t, mqtttest.BrokerOptions{Address: "127.0.0.1"})
	dataDir := reachableDataDir(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := startLiveMission(t, ctx, broker.Port, dataDir, "--user", "nobody")
	waitLog(t, m.logs, m.exited, "connected to collector", 30*time.Second)
	pid := m.cmd.Process.Pid

	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of mission: %v %v", tasks, err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(filepath.Base(task))
		st, err := privdrop.ReadStatus(tid)
		if err != nil {
			t.Fatal(err)
		}
		if st.Uid != [4]int{uid, uid, uid, uid} || st.Uid[0] == 0 {
			t.Errorf("thread %d: uids %v, want all %d", tid, st.Uid, uid)
		}
		if st.CapEff|st.CapPrm|st.CapAmb|st.CapInh|st.CapBnd != 0 {
			t.Errorf("thread %d: capabilities left: eff %x prm %x amb %x inh %x bnd %x", tid, st.CapEff, st.CapPrm, st.CapAmb, st.CapInh, st.CapBnd)
		}
		if !st.NoNewPrivs {
			t.Errorf("thread %d: no_new_privs not set", tid)
		}
		if len(st.Groups) != 1 {
			t.Errorf("thread %d: supplementary groups %v, want only the target group", tid, st.Groups)
		}
	}

	checkPrivateSockets(t, pid, dataDir, uid, filepath.Join(dataDir, "mongodb.sock"), filepath.Join(dataDir, "ipfix.sock"))
	if out, err := exec.Command(missionBin, "--log-level", "warn", "query", "--data-dir", dataDir, "--count").CombinedOutput(); err != nil {
		t.Fatalf("mission query --data-dir while all-in-one runs: %v\n%s", err, out)
	}

	cfg := plant.DefaultConfig(fmt.Sprintf("127.0.0.1:%d", broker.Port))
	cfg.Interval, cfg.Duration, cfg.WatchStates = 500*time.Millisecond, 2*time.Second, true
	rep, err := plant.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("plant: %v", err)
	}
	checkReport(t, cfg, rep)
	m.stop(t, "plant")
	want := expectedFlows(rep, broker.Port)
	n := 0
	for _, c := range want {
		n += c
	}
	if n == 0 {
		t.Fatal("the plant made no flow")
	}
	checkQuery(t, dataDir, n)
}

// TestCollectEmbeddedStoreIsPrivate runs `mission collect` (as root, IPFIX
// over UDP only) and checks its embedded database listens on no TCP port
// but on a 0600 socket in its 0700 data directory, that another user is
// refused and that `mission query --data-dir` reads through it.
func TestCollectEmbeddedStoreIsPrivate(t *testing.T) {
	mqtttest.RequireRoot(t)
	dataDir := reachableDataDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, missionBin, "--log-format", "json", "collect", "--host", "127.0.0.1", "--port", "0",
		"--listen", "udp", "--data-dir", dataDir)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
	}()
	waitLog(t, logs, exited, "collector listening", 30*time.Second)
	if !strings.Contains(logs.String(), store.SocketURL(filepath.Join(dataDir, "mongodb.sock"))) {
		t.Errorf("the start log does not give the socket's mongodb:// URL:\n%s", logs.String())
	}
	checkPrivateSockets(t, cmd.Process.Pid, dataDir, 0, filepath.Join(dataDir, "mongodb.sock"))
	out, err := exec.Command(missionBin, "--log-level", "warn", "query", "--data-dir", dataDir, "--count").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("mission query --data-dir while collect runs: %v\n%s", err, out)
	}
}

// reachableDataDir is a data directory whose parents every user can
// search (t.TempDir's are private to root), short and lower-case so its
// sockets are inside it.
func reachableDataDir(t *testing.T) string {
	t.Helper()
	base, err := os.MkdirTemp("", "mission-sec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "data")
}

// checkPrivateSockets requires of process pid: no listening TCP socket;
// each Unix socket of mode 0600 owned by uid, in the data directory of
// mode 0700; a client running as otherUID refused (EACCES).
func checkPrivateSockets(t *testing.T, pid int, dataDir string, uid int, socks ...string) {
	t.Helper()
	if l := listeningTCP(t, pid); len(l) > 0 {
		t.Errorf("mission listens on TCP: %v", l)
	}
	requireMode(t, dataDir, os.ModeDir|0o700, uid)
	for _, s := range socks {
		requireMode(t, s, os.ModeSocket|0o600, uid)
	}
	helper := copyForOtherUsers(t, os.Args[0])
	cmd := exec.Command(helper)
	cmd.Env = []string{"MISSION_DIAL_HELPER=" + strings.Join(socks, ",")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherUID, Gid: otherUID}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dial helper as uid %d: %v\n%s", otherUID, err, out)
	}
	for _, s := range socks {
		if !strings.Contains(string(out), s+": EACCES") {
			t.Errorf("uid %d was not refused by %s:\n%s", otherUID, s, out)
		}
	}
}

func requireMode(t *testing.T, path string, want os.FileMode, uid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
		t.Errorf("%s: owner uid %d, want %d", path, st.Uid, uid)
	}
}

// listeningTCP returns the TCP sockets in LISTEN state among pid's file
// descriptors (their inodes in /proc/<pid>/net/tcp{,6}).
func listeningTCP(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	if len(inodes) == 0 {
		t.Fatalf("process %d has no socket at all: not the right process?", pid)
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
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

// copyForOtherUsers copies an executable where every user may run it.
func copyForOtherUsers(t *testing.T, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mission-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	path := filepath.Join(dir, "helper")
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
