package probe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mission-ids/mission/mqttparse"
	"github.com/mission-ids/mission/probe/tracker"
)

// The probe state file (Config.StateFile) keeps, for every live
// connection whose MQTT session is known, what a later run cannot learn
// again when it picks the connection up midstream: client id, user name,
// protocol level, Assigned Client Identifier, topic aliases, keep alive
// and the capture time it was last seen. Format (docs/midstream.md): one
// header line "mission-probe-state 1 <crc32 of the body, 8 hex digits>
// <body length>", then the body, a JSON object {"connections": [...]}.
// Reading is strict: size, entry count and string lengths are capped,
// unknown fields, bad addresses and a wrong checksum reject the whole
// file (a truncated or hostile file is reported and ignored).

const (
	stateMagic = "mission-probe-state 1"
	// maxStateFile bounds the file read.
	maxStateFile = 256 << 20
	// maxStateString bounds every string (MQTT strings are at most 65535 bytes).
	maxStateString = 65535
	// maxStateAliases bounds the topic aliases per direction.
	maxStateAliases = 65535
)

// ErrBadStateFile is wrapped by every *StateFileError.
var ErrBadStateFile = errors.New("probe: unusable state file")

// StateFileError says why a state file was not used.
type StateFileError struct {
	Path   string
	Reason string
	Err    error // cause, if any
}

func (e *StateFileError) Error() string {
	s := "probe: state file " + e.Path + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrBadStateFile and the cause.
func (e *StateFileError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrBadStateFile, e.Err}
	}
	return []error{ErrBadStateFile}
}

type stateFile struct {
	Connections []stateConn `json:"connections"`
}

type stateConn struct {
	Client     string               `json:"client"`
	Server     string               `json:"server"`
	ClientID   string               `json:"clientId,omitempty"`
	Username   string               `json:"username,omitempty"`
	AssignedID string               `json:"assignedClientId,omitempty"`
	Version    uint8                `json:"protocolVersion,omitempty"`
	KeepAlive  uint16               `json:"keepAlive,omitempty"`
	LastSeen   int64                `json:"lastSeenNs"`
	Aliases    [2]map[string]string `json:"topicAliases"`
}

// encodeState renders states as a state file.
func encodeState(states []tracker.ConnState) ([]byte, error) {
	f := stateFile{Connections: make([]stateConn, 0, len(states))}
	for _, s := range states {
		c := stateConn{Client: s.Client.String(), Server: s.Server.String(), ClientID: s.ClientID, Username: s.Username,
			AssignedID: s.AssignedID, Version: uint8(s.Version), KeepAlive: s.KeepAlive, LastSeen: s.LastSeen}
		for d := range s.Aliases {
			if len(s.Aliases[d]) == 0 {
				continue
			}
			c.Aliases[d] = make(map[string]string, len(s.Aliases[d]))
			for k, v := range s.Aliases[d] {
				c.Aliases[d][strconv.Itoa(int(k))] = v
			}
		}
		f.Connections = append(f.Connections, c)
	}
	body, err := json.Marshal(&f)
	if err != nil {
		return nil, fmt.Errorf("probe: encode state: %w", err)
	}
	head := fmt.Sprintf("%s %08x %d\n", stateMagic, crc32.ChecksumIEEE(body), len(body))
	return append([]byte(head), body...), nil
}

// decodeState parses and validates a state file of at most maxEntries
// connections.
func decodeState(path string, b []byte, maxEntries int) ([]tracker.ConnState, error) {
	bad := func(reason string, err error) error { return &StateFileError{Path: path, Reason: reason, Err: err} }
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 || nl > 64 {
		return nil, bad("no header line", nil)
	}
	var crc uint32
	var n int
	head := string(b[:nl])
	if len(head) <= len(stateMagic) || head[:len(stateMagic)] != stateMagic {
		return nil, bad("not a probe state file (or another version)", nil)
	}
	if _, err := fmt.Sscanf(head[len(stateMagic):], " %08x %d", &crc, &n); err != nil {
		return nil, bad("bad header line", err)
	}
	body := b[nl+1:]
	if n != len(body) {
		return nil, bad(fmt.Sprintf("truncated or extended: body of %d bytes, header says %d", len(body), n), nil)
	}
	if crc32.ChecksumIEEE(body) != crc {
		return nil, bad("checksum mismatch", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var f stateFile
	if err := dec.Decode(&f); err != nil {
		return nil, bad("bad JSON", err)
	}
	if dec.More() {
		return nil, bad("data after the JSON body", nil)
	}
	if maxEntries > 0 && len(f.Connections) > maxEntries {
		return nil, bad(fmt.Sprintf("%d connections, more than the %d allowed", len(f.Connections), maxEntries), nil)
	}
	out := make([]tracker.ConnState, 0, len(f.Connections))
	for i, c := range f.Connections {
		cs, err := c.validate()
		if err != nil {
			return nil, bad(fmt.Sprintf("connection %d", i), err)
		}
		out = append(out, cs)
	}
	return out, nil
}

var errStateEntry = errors.New("invalid entry")

func (c *stateConn) validate() (tracker.ConnState, error) {
	var cs tracker.ConnState
	var err error
	if cs.Client, err = netip.ParseAddrPort(c.Client); err != nil {
		return cs, fmt.Errorf("%w: client address: %w", errStateEntry, err)
	}
	if cs.Server, err = netip.ParseAddrPort(c.Server); err != nil {
		return cs, fmt.Errorf("%w: server address: %w", errStateEntry, err)
	}
	for _, s := range []string{c.ClientID, c.Username, c.AssignedID} {
		if len(s) > maxStateString {
			return cs, fmt.Errorf("%w: string of %d bytes", errStateEntry, len(s))
		}
	}
	switch mqttparse.Version(c.Version) {
	case mqttparse.VersionUnknown, mqttparse.Version31, mqttparse.Version311, mqttparse.Version5:
	default:
		return cs, fmt.Errorf("%w: protocol version %d", errStateEntry, c.Version)
	}
	if c.LastSeen <= 0 {
		return cs, fmt.Errorf("%w: no last-seen time", errStateEntry)
	}
	cs.ClientID, cs.Username, cs.AssignedID = c.ClientID, c.Username, c.AssignedID
	cs.Version, cs.KeepAlive, cs.LastSeen = mqttparse.Version(c.Version), c.KeepAlive, c.LastSeen
	for d := range c.Aliases {
		if len(c.Aliases[d]) > maxStateAliases {
			return cs, fmt.Errorf("%w: %d topic aliases", errStateEntry, len(c.Aliases[d]))
		}
		for k, v := range c.Aliases[d] {
			a, err := strconv.ParseUint(k, 10, 16)
			if err != nil || a == 0 || len(v) > maxStateString {
				return cs, fmt.Errorf("%w: topic alias %q", errStateEntry, k)
			}
			if cs.Aliases[d] == nil {
				cs.Aliases[d] = make(map[uint16]string, len(c.Aliases[d]))
			}
			cs.Aliases[d][uint16(a)] = v
		}
	}
	return cs, nil
}

// readStateFile reads and validates path. A missing file is an
// *StateFileError wrapping fs.ErrNotExist.
func readStateFile(path string, maxEntries int) ([]tracker.ConnState, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &StateFileError{Path: path, Reason: "cannot open", Err: err}
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, &StateFileError{Path: path, Reason: "cannot read", Err: err}
	}
	if len(b) > maxStateFile {
		return nil, &StateFileError{Path: path, Reason: fmt.Sprintf("larger than %d bytes", maxStateFile)}
	}
	return decodeState(path, b, maxEntries)
}

// writeStateFile writes b to path atomically: a temporary file in the
// same directory, synced, then renamed over path.
func writeStateFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("probe: write state file: %w", err)
	}
	name := tmp.Name()
	_, werr := tmp.Write(b)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(name)
		return fmt.Errorf("probe: write state file %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("probe: write state file %s: %w", path, err)
	}
	return nil
}

// stateKeeper writes the probe's state file every interval (wall clock)
// from the capture goroutine: the snapshot is taken there, encoding and
// writing run in the background, one write at a time.
type stateKeeper struct {
	path     string
	interval time.Duration
	next     time.Time
	busy     chan struct{} // holds a token while a write runs
	max      int
}

func newStateKeeper(path string, interval time.Duration, max int) *stateKeeper {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &stateKeeper{path: path, interval: interval, next: time.Now().Add(interval), busy: make(chan struct{}, 1), max: max}
}

// maybeWrite starts a background write if the interval has passed and no
// write runs; errors go to report.
func (k *stateKeeper) maybeWrite(tr *tracker.Tracker, now time.Time, report func(error)) {
	if now.Before(k.next) {
		return
	}
	select {
	case k.busy <- struct{}{}:
	default:
		return
	}
	k.next = now.Add(k.interval)
	states := tr.Snapshot(k.max)
	go func() {
		defer func() { <-k.busy }()
		b, err := encodeState(states)
		if err == nil {
			err = writeStateFile(k.path, b)
		}
		if err != nil {
			report(err)
		}
	}()
}

// final writes the state now, after any background write.
func (k *stateKeeper) final(tr *tracker.Tracker) error {
	k.busy <- struct{}{}
	defer func() { <-k.busy }()
	b, err := encodeState(tr.Snapshot(k.max))
	if err != nil {
		return err
	}
	return writeStateFile(k.path, b)
}
