//go:build unix

package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
)

// SocketName is the embedded server's Unix socket, in the data directory.
const SocketName = "mongodb.sock"

// maxSocketPath is the longest Unix socket path (sun_path holds 108
// bytes with the terminating NUL).
const maxSocketPath = 107

// EmbeddedSocket returns the path of the Unix socket the embedded server
// of a data directory listens on: dataDir/mongodb.sock, or, when that path
// is too long for a socket (107 bytes) or has upper-case letters (the Go
// MongoDB driver v1 lower-cases socket paths before it dials them),
// $TMPDIR/mission-<hash of the data directory>/mongodb.sock, in a
// directory only its owner may use. Every command over the same data
// directory computes the same path.
func EmbeddedSocket(dataDir string) (string, error) { return SocketPath(dataDir, SocketName) }

// SocketPath returns the path of the Unix socket called name of a data
// directory: in the data directory, or in the same directory under TMPDIR
// as EmbeddedSocket when that one is there. PrivateSocketDir readies its
// directory.
func SocketPath(dataDir, name string) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("embedded database: data directory %q: %w", dataDir, err)
	}
	if p := filepath.Join(abs, SocketName); len(p) <= maxSocketPath && strings.ToLower(p) == p {
		return filepath.Join(abs, name), nil
	}
	sum := sha256.Sum256([]byte(abs))
	p := filepath.Join(os.TempDir(), "mission-"+hex.EncodeToString(sum[:8]), name)
	if len(p) > maxSocketPath || strings.ToLower(p) != p {
		return "", fmt.Errorf("embedded database: no usable socket path for data directory %s (%s is over %d bytes or has upper-case letters): give a shorter, lower-case --data-dir or TMPDIR", abs, p, maxSocketPath)
	}
	return p, nil
}

// privateDir makes sure dir exists and only its owner can enter it
// (mode 0700): it holds the database and the sockets that give full access
// to it. A directory of ours that is open to others is tightened (and
// logged); one of another user must already be private. With strict (a
// directory in a shared place such as /tmp), it must also be ours and not
// a symbolic link.
func privateDir(dir string, strict bool, log zerolog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("embedded database: create directory %s: %w", dir, err)
	}
	stat := os.Stat
	if strict {
		stat = os.Lstat
	}
	fi, err := stat(dir)
	if err != nil {
		return fmt.Errorf("embedded database: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("embedded database: %s is not a directory (a symbolic link?): remove it", dir)
	}
	owner := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = int(st.Uid)
	}
	ours := owner == os.Geteuid()
	if strict && !ours {
		return fmt.Errorf("embedded database: %s belongs to uid %d, not to this process (uid %d): remove it, or run as its owner", dir, owner, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if !ours {
		return fmt.Errorf("embedded database: %s (uid %d) is open to other users (mode %04o): chmod 700 it, or run as its owner", dir, owner, fi.Mode().Perm())
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("embedded database: make %s private (chmod 700): %w", dir, err)
	}
	log.Warn().Str("dir", dir).Str("was", fmt.Sprintf("%04o", fi.Mode().Perm())).
		Msg("the data directory was open to other users; made it private (0700): it holds every flow and alert")
	return nil
}

// PrivateSocketDir makes the directory of a socket path of dataDir (see
// SocketPath) private to this user, creating it if need be.
func PrivateSocketDir(dataDir, socket string, log zerolog.Logger) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("data directory %q: %w", dataDir, err)
	}
	dir := filepath.Dir(socket)
	return privateDir(dir, dir != abs, log)
}

// prepareSocket readies the directory of a Unix socket path and removes
// a stale socket left by a process that died (the caller holds the data
// directory's lock, so no live server owns it).
func prepareSocket(path, dataDir string, log zerolog.Logger) error {
	dir := filepath.Dir(path)
	if err := privateDir(dir, dir != dataDir, log); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("embedded database: %w", err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("embedded database: %s exists and is not a socket: remove it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("embedded database: remove stale socket %s: %w", path, err)
	}
	return nil
}
