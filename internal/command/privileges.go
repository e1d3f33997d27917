package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/internal/privdrop"
)

// dropTarget resolves --user and --group; nil when --user is not given.
func dropTarget(c *cli.Context) (*privdrop.Target, error) {
	u, g := c.String(flagUser), c.String(flagGroup)
	if u == "" {
		if g != "" {
			return nil, fmt.Errorf("--%s (env RUN_GROUP) needs --%s (env RUN_USER)", flagGroup, flagUser)
		}
		return nil, nil
	}
	t, err := privdrop.Lookup(u, g)
	if err != nil {
		return nil, fmt.Errorf("--%s/--%s: %w", flagUser, flagGroup, err)
	}
	return &t, nil
}

// dropPrivileges becomes t with no capabilities, once the capture socket
// and the metrics port are open. Files made before (paths) are given to t
// first so it can go on writing them. Any failure is fatal: the caller
// must not capture with its privileges when the user asked to drop them.
// Without t, it only warns when capturing live as root.
func dropPrivileges(t *privdrop.Target, live bool, log zerolog.Logger, paths ...string) error {
	if t == nil {
		if live && os.Geteuid() == 0 {
			log.Warn().Msg("running as root while parsing captured traffic: give --user (env RUN_USER) to switch to an unprivileged user once the capture is open")
		}
		return nil
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		if err := chownTo(p, t); err != nil {
			return err
		}
	}
	rep, err := privdrop.Drop(*t)
	if err != nil {
		return fmt.Errorf("--%s %s: cannot drop privileges, refusing to run: %w", flagUser, t.User, err)
	}
	ev := log.Info().Int("uid", t.UID).Int("gid", t.GID).Str("user", t.User).Str("group", t.Group)
	if rep.BoundingKept {
		ev = ev.Bool("bounding_set_kept", true)
	}
	ev.Msg("capture open; dropped privileges: running as this user with no capabilities")
	return nil
}

// chownTo gives a file or directory to t when this process may (root)
// and it is not t's already.
func chownTo(path string, t *privdrop.Target) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if fi, err := os.Lstat(path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == t.UID && int(st.Gid) == t.GID {
			return nil
		}
	}
	if err := os.Lchown(path, t.UID, t.GID); err != nil {
		return fmt.Errorf("--%s %s: give %s to uid %d: %w", flagUser, t.User, path, t.UID, err)
	}
	return nil
}

// prepareDataDir creates the data directory for t (mode 0700, owned by t)
// before the drop, and refuses a data directory whose files belong to
// another user (an earlier run as root): t could not write them.
func prepareDataDir(dir string, t *privdrop.Target) error {
	if t == nil || os.Geteuid() != 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--%s: create %s: %w", flagDataDir, dir, err)
	}
	if err := chownTo(dir, t); err != nil {
		return err
	}
	var foreign string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); depth(rel) > 2 {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != t.UID && d.Type()&fs.ModeSocket == 0 {
			foreign = p
			return fs.SkipAll
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.SkipAll) && !errors.Is(err, fs.ErrPermission) {
		// Unreadable here (root without CAP_DAC_OVERRIDE): the store
		// reports what it cannot use after the drop.
		return fmt.Errorf("--%s: %w", flagDataDir, err)
	}
	if foreign != "" {
		return fmt.Errorf("--%s %s: %s belongs to another user, which %s could not write after the privilege drop: chown -R %d:%d %s",
			flagUser, t.User, foreign, t.User, t.UID, t.GID, dir)
	}
	return nil
}

// depth counts the elements of a relative path ("." is 0).
func depth(rel string) int {
	if rel == "." {
		return 0
	}
	n := 1
	for _, r := range rel {
		if r == filepath.Separator {
			n++
		}
	}
	return n
}

// dataDirHint adds to a store error after a privilege drop what to fix
// when the user cannot use the data directory.
func dataDirHint(err error, t *privdrop.Target) error {
	if t != nil && errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w; as --%s %s, the data directory and what leads to it must be writable (or searchable) by uid %d", err, flagUser, t.User, t.UID)
	}
	return err
}

// privilegeView is the privileges part of --print-config.
func privilegeView(c *cli.Context) map[string]any {
	return map[string]any{"user": c.String(flagUser), "group": c.String(flagGroup)}
}
