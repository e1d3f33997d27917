package tracker

import (
	"net/netip"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/mqttparse"
)

// ConnState is the MQTT session of one live connection, as a probe keeps
// it across restarts (probe --state-file): what a connection picked up
// midstream cannot learn again, because its CONNECT is in the past.
type ConnState struct {
	Client, Server netip.AddrPort
	ClientID       string
	Username       string
	AssignedID     string // v5 Assigned Client Identifier (CONNACK)
	Version        mqttparse.Version
	KeepAlive      uint16
	LastSeen       int64 // capture time of the last packet, Unix ns
	// Aliases are the topic aliases of each direction (client→server,
	// server→client).
	Aliases [2]map[uint16]string
}

type endpoints struct{ client, server netip.AddrPort }

// Snapshot returns the session of every connection whose identity is
// known (a CONNECT was seen, or it was restored), at most max (<= 0: all).
func (t *Tracker) Snapshot(max int) []ConnState {
	out := make([]ConnState, 0, len(t.live))
	for s := range t.live {
		if s.identity != flow.IdentityConnect && s.identity != flow.IdentityRestored {
			continue
		}
		if max > 0 && len(out) >= max {
			break
		}
		cs := ConnState{Client: s.conn.Client, Server: s.conn.Server, ClientID: s.clientID, Username: s.username,
			AssignedID: s.assigned, KeepAlive: s.keepAlive, LastSeen: s.last}
		if s.known {
			cs.Version = s.version
		}
		for d := range s.dirs {
			if len(s.dirs[d].aliases) > 0 {
				cs.Aliases[d] = make(map[uint16]string, len(s.dirs[d].aliases))
				for k, v := range s.dirs[d].aliases {
					cs.Aliases[d][k] = v
				}
			}
		}
		out = append(out, cs)
	}
	// Sessions restored but not seen again yet stay in the file: their
	// connection may still be live.
	for k, cs := range t.restore {
		if max > 0 && len(out) >= max {
			break
		}
		if t.restoreAge > 0 && t.lastTs-cs.LastSeen > t.restoreAge {
			delete(t.restore, k)
			continue
		}
		out = append(out, cs)
	}
	return out
}

// Restore offers the sessions of an earlier run: a connection picked up
// midstream whose endpoints match one, and whose first packet is at most
// maxAge (capture time) after that session's last packet, gets its client
// id, user name, protocol level and topic aliases back; its flows say
// flow.IdentityRestored. At most MaxRestore sessions are kept.
func (t *Tracker) Restore(states []ConnState, maxAge time.Duration) {
	if t.restore == nil {
		t.restore = make(map[endpoints]ConnState, len(states))
	}
	t.restoreAge = int64(maxAge)
	for _, cs := range states {
		if len(t.restore) >= t.cfg.MaxRestore {
			break
		}
		t.restore[endpoints{cs.Client, cs.Server}] = cs
	}
}

// restoreSession applies a restored session to s, picked up midstream at
// capture time ts.
func (t *Tracker) restoreSession(s *session, ts int64) {
	if len(t.restore) == 0 || s.identity != flow.IdentityNone {
		return
	}
	key := endpoints{s.conn.Client, s.conn.Server}
	cs, ok := t.restore[key]
	if !ok {
		return
	}
	delete(t.restore, key)
	if t.restoreAge > 0 && (ts-cs.LastSeen > t.restoreAge || ts < cs.LastSeen-t.restoreAge) {
		t.stats.RestoreStale++
		return
	}
	t.stats.Restored++
	s.clientID = t.names.get([]byte(cs.ClientID))
	if s.clientID == "" {
		s.clientID = t.names.get([]byte(cs.AssignedID))
	}
	s.assigned = cs.AssignedID
	s.username = t.names.get([]byte(cs.Username))
	s.keepAlive = cs.KeepAlive
	if cs.Version >= mqttparse.Version31 && cs.Version <= mqttparse.Version5 {
		s.version, s.known = cs.Version, true
	}
	for d := range s.dirs {
		for k, v := range cs.Aliases[d] {
			if s.dirs[d].aliases == nil {
				s.dirs[d].aliases = make(map[uint16]string)
			}
			if len(s.dirs[d].aliases) < t.cfg.MaxAliases {
				s.dirs[d].aliases[k] = t.names.get([]byte(v))
			}
		}
	}
	s.identity = flow.IdentityRestored
}
