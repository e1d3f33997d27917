//go:build linux

package privdrop

import (
	"os/user"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLookup(t *testing.T) {
	root, err := user.Lookup("root")
	if err != nil {
		t.Skip("no root in /etc/passwd")
	}
	require.Equal(t, "0", root.Uid)
	for _, tc := range []struct {
		name, user, group string
		want              Target
		err               string
	}{
		{"name", "root", "", Target{User: "root", Group: "root", UID: 0, GID: 0}, ""},
		{"name and group number", "root", "4242", Target{User: "root", Group: "4242", UID: 0, GID: 4242}, ""},
		{"uid in the database", "0", "", Target{User: "0", Group: "root", UID: 0, GID: 0}, ""},
		{"unknown uid with group", "4343", "4242", Target{User: "4343", Group: "4242", UID: 4343, GID: 4242}, ""},
		{"unknown uid without group", "4343", "", Target{}, "give its group too"},
		{"unknown name", "no-such-user-here", "", Target{}, "unknown user"},
		{"unknown group", "root", "no-such-group-here", Target{}, "unknown group"},
		{"none", "", "", Target{}, "no user given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Lookup(tc.user, tc.group)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestStatusCheck(t *testing.T) {
	tg := Target{UID: 10001, GID: 10001}
	clean := Status{Uid: [4]int{10001, 10001, 10001, 10001}, Gid: [4]int{10001, 10001, 10001, 10001}, NoNewPrivs: true}
	for _, tc := range []struct {
		name     string
		edit     func(*Status)
		bounding bool
		err      string
	}{
		{"clean", func(*Status) {}, true, ""},
		{"saved uid root", func(s *Status) { s.Uid[2] = 0 }, true, "user ids"},
		{"fs gid", func(s *Status) { s.Gid[3] = 0 }, true, "group ids"},
		{"effective", func(s *Status) { s.CapEff = 1 << 13 }, true, "capabilities left"},
		{"ambient", func(s *Status) { s.CapAmb = 1 << 13 }, true, "capabilities left"},
		{"inheritable", func(s *Status) { s.CapInh = 1 }, true, "capabilities left"},
		{"bounding", func(s *Status) { s.CapBnd = 1 }, true, "bounding set"},
		{"bounding kept", func(s *Status) { s.CapBnd = 1 }, false, ""},
		{"no_new_privs", func(s *Status) { s.NoNewPrivs = false }, true, "no_new_privs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := clean
			tc.edit(&st)
			err := st.check(tg, tc.bounding)
			if tc.err == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.err)
			}
		})
	}
	// This process's own status parses.
	st, err := readStatus("/proc/self/status")
	require.NoError(t, err)
	u, _ := user.Current()
	require.Equal(t, u.Uid, strconv.Itoa(st.Uid[0]))
}
