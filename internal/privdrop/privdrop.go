// Package privdrop lets a process that has opened what needs privileges
// (capture sockets, ports below 1024) become an unprivileged user with no
// capabilities at all before it reads untrusted input, as tcpdump -Z and
// Suricata --user do.
//
// Drop switches every thread of the process to the target user and group
// (supplementary groups: only that group) and clears all capabilities:
// effective, permitted, inheritable, ambient, and the bounding set where
// the process may (CAP_SETPCAP); it also sets no_new_privs, so no program
// the process might execute can gain privileges again. It then reads the
// credentials of every thread back from /proc and fails unless they are
// exactly that: a caller must refuse to go on when Drop fails.
//
// Capabilities are per thread on Linux; Drop changes them on all threads at
// once through syscall.AllThreadsSyscall, which needs a binary built
// without cgo (CGO_ENABLED=0, as mission is released).
package privdrop

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// Target is the user and group a process drops to.
type Target struct {
	User  string // name, or the number given
	Group string
	UID   int
	GID   int
}

// ErrUnsupported means the platform or the build cannot drop privileges.
var ErrUnsupported = errors.New("privdrop: dropping privileges is not supported here")

// Lookup resolves a user (name or number) and a group (name or number;
// empty: the user's primary group) in the system's user database
// (/etc/passwd, /etc/group). A number that is not in the database is used
// as it is, but then the group must be given.
func Lookup(userName, group string) (Target, error) {
	if userName == "" {
		return Target{}, errors.New("privdrop: no user given")
	}
	t := Target{User: userName, Group: group, UID: -1, GID: -1}
	u, err := user.Lookup(userName)
	if err != nil {
		if n, nerr := strconv.Atoi(userName); nerr == nil && n >= 0 {
			if u, err = user.LookupId(userName); err != nil {
				t.UID = n
			}
		}
	}
	if u != nil {
		t.UID, _ = strconv.Atoi(u.Uid)
		if group == "" {
			t.GID, _ = strconv.Atoi(u.Gid)
			t.Group = u.Gid
			if g, err := user.LookupGroupId(u.Gid); err == nil {
				t.Group = g.Name
			}
		}
	}
	if t.UID < 0 {
		return Target{}, fmt.Errorf("privdrop: unknown user %q (not in /etc/passwd): create it or give a number", userName)
	}
	if group != "" {
		if g, err := user.LookupGroup(group); err == nil {
			t.GID, _ = strconv.Atoi(g.Gid)
		} else if n, nerr := strconv.Atoi(group); nerr == nil && n >= 0 {
			t.GID = n
		} else {
			return Target{}, fmt.Errorf("privdrop: unknown group %q (not in /etc/group): create it or give a number", group)
		}
	}
	if t.GID < 0 {
		return Target{}, fmt.Errorf("privdrop: user %s is not in /etc/passwd: give its group too", userName)
	}
	return t, nil
}

func (t Target) String() string {
	return fmt.Sprintf("%s (uid %d) group %s (gid %d)", t.User, t.UID, t.Group, t.GID)
}
