package privdrop

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Report says what Drop could not do that the kernel refused without
// making the result unsafe.
type Report struct {
	// BoundingKept: the bounding set could not be emptied (the process
	// lacked CAP_SETPCAP); with no_new_privs and no capability left, it no
	// longer grants anything.
	BoundingKept bool
}

// The capset arguments live in package variables: the kernel reads them
// on every thread, and the garbage collector never moves globals.
var (
	capHeader = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	capData   [2]unix.CapUserData // all zero: no capability
)

// allThreads runs a system call on every thread of the process.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno != 0 {
		return errno
	}
	return nil
}

// Drop switches the process to t and clears every capability (see the
// package documentation). Any error means the process must not go on.
func Drop(t Target) (Report, error) {
	var rep Report
	// First, and without changing anything, a build that cannot act on
	// all threads is refused.
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		if errors.Is(err, syscall.ENOTSUP) {
			return rep, fmt.Errorf("%w: this mission binary is built with cgo, which cannot change the capabilities of every thread; build it with CGO_ENABLED=0 (as released)", ErrUnsupported)
		}
		return rep, fmt.Errorf("privdrop: set no_new_privs: %w", err)
	}
	// The bounding set, while CAP_SETPCAP is still effective.
	for c := 0; c <= lastCap(); c++ {
		err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0)
		if errors.Is(err, syscall.EINVAL) {
			break // beyond what this kernel knows
		}
		if errors.Is(err, syscall.EPERM) {
			rep.BoundingKept = true
			break
		}
		if err != nil {
			return rep, fmt.Errorf("privdrop: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		return rep, fmt.Errorf("privdrop: clear the ambient capabilities: %w", err)
	}
	// The identity. syscall's Setgroups, Setgid and Setuid apply to every
	// thread; setuid from root to another user also empties the permitted
	// and effective sets (no keep-caps). A process already running as t
	// (a non-root user holding file capabilities) keeps its groups.
	if !already(t) {
		if err := syscall.Setgroups([]int{t.GID}); err != nil {
			return rep, fmt.Errorf("privdrop: set supplementary groups to %d: %w (run as root, or with CAP_SETGID)", t.GID, err)
		}
		if err := syscall.Setgid(t.GID); err != nil {
			return rep, fmt.Errorf("privdrop: set group %d: %w (run as root, or with CAP_SETGID)", t.GID, err)
		}
		if err := syscall.Setuid(t.UID); err != nil {
			return rep, fmt.Errorf("privdrop: set user %d: %w (run as root, or with CAP_SETUID)", t.UID, err)
		}
	}
	// What is left: inheritable, and for a user that already was t, its
	// permitted and effective sets.
	if err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&capHeader)), uintptr(unsafe.Pointer(&capData[0])), 0); err != nil {
		return rep, fmt.Errorf("privdrop: clear capabilities: %w", err)
	}
	return rep, Verify(t, !rep.BoundingKept)
}

func already(t Target) bool {
	if os.Getuid() != t.UID || os.Geteuid() != t.UID || os.Getgid() != t.GID || os.Getegid() != t.GID {
		return false
	}
	// Saved ids too: a saved root uid could be taken back.
	_, _, suid := unix.Getresuid()
	_, _, sgid := unix.Getresgid()
	return suid == t.UID && sgid == t.GID
}

// lastCap is the highest capability number the kernel knows.
func lastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}

// Verify reads every thread's credentials from /proc and fails unless all
// its user and group ids are t's and its capability sets are empty (the
// bounding set too with bounding).
func Verify(t Target, bounding bool) error {
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("privdrop: cannot read the threads' credentials in /proc: %v", err)
	}
	for _, path := range tasks {
		st, err := readStatus(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread ended
			}
			return fmt.Errorf("privdrop: %w", err)
		}
		if err := st.check(t, bounding); err != nil {
			return fmt.Errorf("privdrop: thread %s: %w", filepath.Base(filepath.Dir(path)), err)
		}
	}
	return nil
}

// Status is the part of /proc/<pid>/status about credentials.
type Status struct {
	Uid, Gid                               [4]int // real, effective, saved, filesystem
	Groups                                 []int
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	NoNewPrivs                             bool
}

// ReadStatus reads /proc/<pid>/status (or a task's).
func ReadStatus(pid int) (Status, error) { return readStatus(fmt.Sprintf("/proc/%d/status", pid)) }

func readStatus(path string) (Status, error) {
	var st Status
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		ids := func(dst *[4]int) {
			for i := 0; i < 4 && i < len(fs); i++ {
				dst[i], _ = strconv.Atoi(fs[i])
			}
		}
		hex := func(dst *uint64) {
			if len(fs) > 0 {
				*dst, _ = strconv.ParseUint(fs[0], 16, 64)
			}
		}
		switch k {
		case "Uid":
			ids(&st.Uid)
		case "Gid":
			ids(&st.Gid)
		case "Groups":
			for _, g := range fs {
				n, _ := strconv.Atoi(g)
				st.Groups = append(st.Groups, n)
			}
		case "CapInh":
			hex(&st.CapInh)
		case "CapPrm":
			hex(&st.CapPrm)
		case "CapEff":
			hex(&st.CapEff)
		case "CapBnd":
			hex(&st.CapBnd)
		case "CapAmb":
			hex(&st.CapAmb)
		case "NoNewPrivs":
			st.NoNewPrivs = len(fs) > 0 && fs[0] == "1"
		}
	}
	return st, sc.Err()
}

func (st Status) check(t Target, bounding bool) error {
	for i, id := range st.Uid {
		if id != t.UID {
			return fmt.Errorf("user ids %v, want %d", st.Uid, t.UID)
		}
		if st.Gid[i] != t.GID {
			return fmt.Errorf("group ids %v, want %d", st.Gid, t.GID)
		}
	}
	switch {
	case st.CapInh|st.CapPrm|st.CapEff|st.CapAmb != 0:
		return fmt.Errorf("capabilities left: inheritable %x, permitted %x, effective %x, ambient %x", st.CapInh, st.CapPrm, st.CapEff, st.CapAmb)
	case bounding && st.CapBnd != 0:
		return fmt.Errorf("bounding set %x not empty", st.CapBnd)
	case !st.NoNewPrivs:
		return errors.New("no_new_privs not set")
	}
	return nil
}
