//go:build !unix

package store

import "github.com/rs/zerolog"

// SocketName is the embedded server's Unix socket, in the data directory.
const SocketName = "mongodb.sock"

// EmbeddedSocket returns "" where Unix sockets are not used: the embedded
// server listens on a free loopback TCP port instead.
func EmbeddedSocket(string) (string, error) { return "", nil }

func privateDir(string, bool, zerolog.Logger) error { return nil }

func prepareSocket(string, string, zerolog.Logger) error { return nil }

// SocketPath returns "" where Unix sockets are not used.
func SocketPath(string, string) (string, error) { return "", nil }

// PrivateSocketDir does nothing where Unix sockets are not used.
func PrivateSocketDir(string, string, zerolog.Logger) error { return nil }
