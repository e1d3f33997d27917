package ipfix

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Transport is the transport protocol of a transport session.
type Transport uint8

// Transports. Templates expire only over UDP (RFC 7011 §8.4); over the
// others they live as long as the session (connection, file).
const (
	UDP Transport = iota
	TCP
	SCTP
	File
)

func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	case SCTP:
		return "sctp"
	case File:
		return "file"
	}
	return "unknown"
}

// SessionKey identifies a transport session.
type SessionKey struct {
	Exporter  netip.AddrPort
	Transport Transport
}

// Config holds decoder limits and policies. Zero fields take the defaults.
type Config struct {
	Registry *Registry // nil: NewRegistry(DefaultMQTTPEN)
	// TemplateLifetime is how long a template received over UDP stays valid
	// without being refreshed (default 30 min, RFC 7011 §8.4 suggests 3×
	// the exporter's refresh interval).
	TemplateLifetime time.Duration
	// MaxTemplates bounds the templates per session (default 1024).
	MaxTemplates int
	// MaxFieldsPerTemplate bounds the fields per template (default 512).
	MaxFieldsPerTemplate int
	// MaxBufferedBytes bounds the data sets held per session while their
	// template is missing (default 256 KiB; negative disables buffering).
	MaxBufferedBytes int
	// BufferTimeout is how long a buffered data set waits for its template
	// (default 60 s).
	BufferTimeout time.Duration
	// MaxSessions bounds the sessions of a Decoder (default 65536).
	MaxSessions int
	// Budget bounds the state of all sessions sharing it (nil: each
	// Decoder, and each Session made with NewSession, has its own with the
	// default Limits). A collector shares one among all its listeners.
	Budget *Budget
	// Now is the clock (default time.Now). Inject one in tests.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Registry == nil {
		c.Registry = NewRegistry(DefaultMQTTPEN)
	}
	if c.TemplateLifetime <= 0 {
		c.TemplateLifetime = 30 * time.Minute
	}
	if c.MaxTemplates <= 0 {
		c.MaxTemplates = 1024
	}
	if c.MaxFieldsPerTemplate <= 0 {
		c.MaxFieldsPerTemplate = 512
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = 256 << 10
	}
	if c.BufferTimeout <= 0 {
		c.BufferTimeout = time.Minute
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 65536
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Counters are plain counters a collector can read and export as metrics.
// They are updated by the goroutine that decodes; read them from it.
type Counters struct {
	Messages          uint64 // messages passed to Decode
	MessagesMalformed uint64 // messages rejected or cut short as malformed
	Sets              uint64 // sets seen
	UnknownSets       uint64 // sets with reserved ids (0, 1, 4–255), skipped
	DataRecords       uint64 // data records delivered (incl. options data, replays)

	TemplatesAdded     uint64 // new template ids
	TemplatesUpdated   uint64 // template ids redefined
	TemplatesRefreshed uint64 // identical template received again
	TemplatesWithdrawn uint64 // templates removed by withdrawal
	TemplatesExpired   uint64 // templates expired (UDP lifetime)
	TemplatesRejected  uint64 // invalid or over-limit template definitions
	TemplateLimitHits  uint64 // MaxTemplates reached
	FieldLimitHits     uint64 // MaxFieldsPerTemplate exceeded

	DataSetsBuffered uint64 // data sets held waiting for their template
	DataSetsReplayed uint64 // buffered data sets decoded once the template came
	DataSetsDropped  uint64 // data sets dropped without a template (not buffered, expired or evicted)
	BufferLimitHits  uint64 // MaxBufferedBytes reached

	SequenceGaps       uint64 // messages whose sequence number skipped ahead
	RecordsLost        uint64 // data records missing according to sequence numbers
	SequenceOutOfOrder uint64 // messages with a sequence number behind the expected one

	SessionLimitHits uint64 // MaxSessions reached (Decoder only)
}

// Add adds o to c (for aggregating sessions).
func (c *Counters) Add(o Counters) {
	c.Messages += o.Messages
	c.MessagesMalformed += o.MessagesMalformed
	c.Sets += o.Sets
	c.UnknownSets += o.UnknownSets
	c.DataRecords += o.DataRecords
	c.TemplatesAdded += o.TemplatesAdded
	c.TemplatesUpdated += o.TemplatesUpdated
	c.TemplatesRefreshed += o.TemplatesRefreshed
	c.TemplatesWithdrawn += o.TemplatesWithdrawn
	c.TemplatesExpired += o.TemplatesExpired
	c.TemplatesRejected += o.TemplatesRejected
	c.TemplateLimitHits += o.TemplateLimitHits
	c.FieldLimitHits += o.FieldLimitHits
	c.DataSetsBuffered += o.DataSetsBuffered
	c.DataSetsReplayed += o.DataSetsReplayed
	c.DataSetsDropped += o.DataSetsDropped
	c.BufferLimitHits += o.BufferLimitHits
	c.SequenceGaps += o.SequenceGaps
	c.RecordsLost += o.RecordsLost
	c.SequenceOutOfOrder += o.SequenceOutOfOrder
	c.SessionLimitHits += o.SessionLimitHits
}

// pendingOverhead is charged per buffered set on top of its bytes: the
// pendingSet (two list nodes, header, slice, time ≈ 120 B).
const pendingOverhead = 128

// scratch is reusable decoding space. The sessions of a Decoder share one
// (they run on one goroutine), so that thousands of sessions do not each
// keep buffers sized for the largest template they saw.
type scratch struct {
	specs  []FieldSpec
	spans  []span
	replay []*pendingSet
}

// Session holds the template state of one transport session: templates
// scoped by observation domain, sequence tracking and the buffer of data
// sets waiting for their template. Its state is charged to a Budget
// (Config.Budget, or a private one), which may evict it. A Session is not
// safe for concurrent use; sessions sharing a Budget may run on different
// goroutines.
type Session struct {
	key        SessionKey
	cfg        Config
	b          *Budget
	c          Counters
	lastActive time.Time
	scratch    *scratch

	// Guarded by b.mu: the budget evicts from other goroutines.
	scopes       map[uint32]*scope
	cur          *scope // scope of the last message, nil once released
	numTemplates int
	pendingBytes int

	ignoreSequence bool // see IgnoreSequence
}

// IgnoreSequence stops the session from checking sequence numbers: for a
// replay of a subset of a session's messages (a collector's journal keeps
// only what is not yet stored), where the numbers jump by design and a gap
// is no loss.
func (s *Session) IgnoreSequence() { s.ignoreSequence = true }

// NewSession returns an empty session. Its state is charged to
// cfg.Budget; without one, to a budget of its own with the default
// limits. Call Close when the session ends (a TCP connection closes, a
// file is read) to give its state back to a shared budget at once;
// otherwise it is evicted as least recently used.
func NewSession(cfg Config, key SessionKey) *Session {
	cfg = cfg.withDefaults()
	if cfg.Budget == nil {
		cfg.Budget = NewBudget(Limits{})
	}
	return newSession(cfg, key, &scratch{})
}

func newSession(cfg Config, key SessionKey, sc *scratch) *Session {
	return &Session{key: key, cfg: cfg, b: cfg.Budget, scratch: sc}
}

// Key returns the session's key.
func (s *Session) Key() SessionKey { return s.key }

// Counters returns a copy of the session's counters.
func (s *Session) Counters() Counters { return s.c }

// NumTemplates returns the number of templates held (expired ones included
// until they are looked up or swept).
func (s *Session) NumTemplates() int {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.numTemplates
}

// Template returns the live template (domain, id). Asking does not count
// as a use for the LRU order.
func (s *Session) Template(domain uint32, id uint16) (*Template, bool) {
	now := s.cfg.Now()
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	sc := s.scopes[domain]
	if sc == nil {
		return nil, false
	}
	e := sc.templates[id]
	if e == nil || !e.expires.IsZero() && !now.Before(e.expires) {
		return nil, false // not a use: the LRU order stays
	}
	return e.t, true
}

// DomainTemplate is a template and the observation domain it is scoped to.
type DomainTemplate struct {
	Domain   uint32
	Template *Template
}

// Templates returns the session's live templates, by observation domain
// and then id, so that a caller can write them out again (a journal that
// must be readable without the messages that defined them). Asking does
// not count as a use for the LRU order.
func (s *Session) Templates() []DomainTemplate {
	now := s.cfg.Now()
	s.b.mu.Lock()
	out := make([]DomainTemplate, 0, s.numTemplates)
	for domain, sc := range s.scopes {
		for _, e := range sc.templates {
			if e.expires.IsZero() || now.Before(e.expires) {
				out = append(out, DomainTemplate{domain, e.t})
			}
		}
	}
	s.b.mu.Unlock()
	slices.SortFunc(out, func(a, b DomainTemplate) int {
		if a.Domain != b.Domain {
			return cmp.Compare(a.Domain, b.Domain)
		}
		return cmp.Compare(a.Template.ID, b.Template.ID)
	})
	return out
}

// Close releases the session's state to its budget. The session stays
// usable: a later Decode starts from nothing.
func (s *Session) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	for _, sc := range s.scopes {
		s.b.releaseScope(sc)
	}
	s.scopes = nil
}

// softError remembers the first non-fatal problem of a message.
type softError struct{ err error }

func (e *softError) set(err error) {
	if e.err == nil {
		e.err = err
	}
}

// Decode decodes one message and calls fn for every data record, in order.
// Records of data sets that were buffered waiting for a template are
// delivered from the call whose message carries that template.
//
// If fn returns an error, decoding stops and Decode returns it unchanged.
// Otherwise the error is nil, a *DecodeError wrapping ErrMalformed or
// ErrIncomplete (the message could not be decoded, at least from the
// reported offset), or a *DecodeError wrapping ErrTemplateNotFound or
// ErrInvalidTemplate (non-fatal: everything else in the message was
// decoded).
//
// fn runs without the budget's lock held.
func (s *Session) Decode(msg []byte, fn func(rec Record) error) error {
	now := s.cfg.Now()
	s.lastActive = now
	s.c.Messages++
	h, err := ParseHeader(msg)
	if err != nil {
		if !errors.Is(err, ErrIncomplete) {
			s.c.MessagesMalformed++
		}
		return &DecodeError{ObsDomainID: h.ObservationDomainID, Err: err}
	}
	msg = msg[:h.Length]
	domain := h.ObservationDomainID
	b := s.b
	b.mu.Lock()
	sc := s.scopeLocked(domain)
	sc.ex.scopes.MoveToBack(&sc.node)
	b.mu.Unlock()
	var soft softError
	records := uint32(0)
	unknown := false
	for off := HeaderLen; off < len(msg); {
		sh, next, err := parseSetHeader(msg, off)
		if err != nil {
			s.c.MessagesMalformed++
			s.resetSequence(domain)
			return &DecodeError{ObsDomainID: domain, TemplateID: sh.ID, Offset: off, Err: err}
		}
		s.c.Sets++
		body := msg[off+SetHeaderLen : next]
		switch {
		case sh.ID == SetIDTemplate || sh.ID == SetIDOptionsTemplate:
			err = s.templateSet(h, sh.ID, body, off+SetHeaderLen, fn, now, &soft)
		case sh.ID >= MinDataSetID:
			b.mu.Lock()
			t := s.lookupLocked(s.scopeLocked(domain), sh.ID, now)
			buffered := false
			if t == nil && len(body) > 0 {
				buffered = s.bufferLocked(h, sh.ID, body, now)
			}
			b.mu.Unlock()
			if t != nil {
				var n uint32
				n, err = s.dataSet(h, t, body, off+SetHeaderLen, fn)
				records += n
			} else if len(body) > 0 {
				unknown = true
				if !buffered {
					soft.set(&DecodeError{ObsDomainID: domain, TemplateID: sh.ID, Offset: off, Err: ErrTemplateNotFound})
				}
			}
		default:
			s.c.UnknownSets++
		}
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) && errors.Is(err, ErrMalformed) {
				s.c.MessagesMalformed++
			}
			s.resetSequence(domain)
			return err
		}
		off = next
	}
	s.trackSequence(h, records, unknown)
	return soft.err
}

// scopeLocked returns the scope of domain, creating (and charging) it.
func (s *Session) scopeLocked(domain uint32) *scope {
	if sc := s.cur; sc != nil && sc.domain == domain {
		return sc
	}
	sc := s.scopes[domain]
	if sc == nil {
		sc = s.b.newScope(s, domain)
	}
	s.cur = sc
	return sc
}

func (s *Session) resetSequence(domain uint32) {
	s.b.mu.Lock()
	if sc := s.scopes[domain]; sc != nil {
		sc.seq = seqState{}
	}
	s.b.mu.Unlock()
}

// trackSequence compares the header's sequence number with the expected
// one. Messages with data sets of unknown templates make the next message
// resynchronise, since their record count is unknown.
func (s *Session) trackSequence(h MessageHeader, records uint32, unknown bool) {
	if s.ignoreSequence {
		return
	}
	s.b.mu.Lock()
	sc := s.scopeLocked(h.ObservationDomainID)
	st := sc.seq
	sc.seq = seqState{next: h.SequenceNumber + records, valid: !unknown}
	s.b.mu.Unlock()
	if st.valid && h.SequenceNumber != st.next {
		d := h.SequenceNumber - st.next
		if d < 1<<31 {
			s.c.SequenceGaps++
			s.c.RecordsLost += uint64(d)
		} else {
			s.c.SequenceOutOfOrder++
		}
	}
}

// lookupLocked returns the live template or nil, expiring it if due, and
// marks it used.
func (s *Session) lookupLocked(sc *scope, id uint16, now time.Time) *Template {
	e := sc.templates[id]
	if e == nil {
		return nil
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		s.b.removeTemplate(e)
		s.c.TemplatesExpired++
		return nil
	}
	sc.ex.templates.MoveToBack(&e.node)
	return e.t
}

// dataSet decodes the records of one data set.
func (s *Session) dataSet(h MessageHeader, t *Template, body []byte, base int, fn func(Record) error) (uint32, error) {
	rec := Record{Template: t, Header: h, reg: s.cfg.Registry}
	n := uint32(0)
	for off := 0; len(body)-off >= t.minLen; {
		spans, l, err := t.splitRecord(body[off:], s.scratch.spans)
		if err != nil {
			return n, &DecodeError{ObsDomainID: h.ObservationDomainID, TemplateID: t.ID, Offset: base + off,
				Err: fmt.Errorf("%w: data record overruns its set", ErrMalformed)}
		}
		if t.fixed == nil {
			s.scratch.spans = spans
		}
		rec.data = body[off : off+l]
		rec.spans = spans
		n++
		s.c.DataRecords++
		if err := fn(rec); err != nil {
			return n, err
		}
		off += l
	}
	return n, nil
}

// templateSet processes a template or options template set.
func (s *Session) templateSet(h MessageHeader, setID uint16, body []byte, base int, fn func(Record) error, now time.Time, soft *softError) error {
	domain := h.ObservationDomainID
	b := s.b
	for off := 0; len(body)-off >= 4; {
		rec, next, tooMany, err := parseTemplateRecord(setID, body, off, s.scratch.specs, s.cfg.MaxFieldsPerTemplate)
		if err != nil {
			if off > 0 && allZero(body[off:]) {
				return nil // padding
			}
			return &DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off, Err: err}
		}
		if cap(rec.specs) > cap(s.scratch.specs) {
			s.scratch.specs = rec.specs
		}
		off = next
		expires := time.Time{}
		if s.key.Transport == UDP {
			expires = now.Add(s.cfg.TemplateLifetime)
		}
		b.mu.Lock()
		if rec.withdraw {
			s.withdrawLocked(domain, setID, rec.id)
			b.mu.Unlock()
			continue
		}
		sc := s.scopeLocked(domain)
		old := sc.templates[rec.id]
		if tooMany {
			s.c.FieldLimitHits++
			s.c.TemplatesRejected++
			if old != nil {
				b.removeTemplate(old)
			}
			b.mu.Unlock()
			soft.set(&DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off,
				Err: fmt.Errorf("%w: %w: more than %d fields", ErrInvalidTemplate, ErrLimit, s.cfg.MaxFieldsPerTemplate)})
			continue
		}
		if old != nil && old.t.sameDefinition(rec.scope, rec.specs) {
			old.expires = expires
			sc.ex.templates.MoveToBack(&old.node)
			s.c.TemplatesRefreshed++
			b.mu.Unlock()
			continue
		}
		b.mu.Unlock()
		// Build the template outside the lock: it allocates.
		t, err := newTemplate(s.cfg.Registry, rec.id, rec.scope, rec.specs)
		b.mu.Lock()
		sc = s.scopeLocked(domain) // it may have been evicted meanwhile
		old = sc.templates[rec.id]
		if err != nil {
			s.c.TemplatesRejected++
			if old != nil {
				b.removeTemplate(old)
			}
			b.mu.Unlock()
			soft.set(&DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off, Err: err})
			continue
		}
		if old == nil && s.numTemplates >= s.cfg.MaxTemplates {
			s.sweepLocked(now)
			if s.numTemplates >= s.cfg.MaxTemplates {
				s.c.TemplateLimitHits++
				s.c.TemplatesRejected++
				b.mu.Unlock()
				soft.set(&DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off,
					Err: fmt.Errorf("%w: %w: more than %d templates", ErrInvalidTemplate, ErrLimit, s.cfg.MaxTemplates)})
				continue
			}
		}
		if !b.addTemplate(sc, t, expires) {
			s.c.TemplatesRejected++
			b.mu.Unlock()
			soft.set(&DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off,
				Err: fmt.Errorf("%w: %w: %d fields exceed the collector's template field budget", ErrInvalidTemplate, ErrLimit, len(t.Fields))})
			continue
		}
		if old != nil {
			s.c.TemplatesUpdated++
		} else {
			s.c.TemplatesAdded++
		}
		replay := s.takePendingLocked(sc, t.ID, now)
		b.mu.Unlock()
		if err := s.replay(t, replay, fn); err != nil {
			return err
		}
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// withdrawLocked handles a withdrawal record: id == setID withdraws all
// templates of that kind in the domain.
func (s *Session) withdrawLocked(domain uint32, setID, id uint16) {
	sc := s.scopes[domain]
	if sc == nil {
		return
	}
	if id != setID {
		if e := sc.templates[id]; e != nil {
			s.b.removeTemplate(e)
			s.c.TemplatesWithdrawn++
		}
		return
	}
	options := setID == SetIDOptionsTemplate
	for _, e := range sc.templates {
		if e.t.IsOptions() == options {
			s.b.removeTemplate(e)
			s.c.TemplatesWithdrawn++
		}
	}
}

// bufferLocked keeps a copy of a data set whose template is missing. It
// reports false if the set was dropped.
func (s *Session) bufferLocked(h MessageHeader, setID uint16, body []byte, now time.Time) bool {
	if s.cfg.MaxBufferedBytes < 0 {
		s.c.DataSetsDropped++
		return false
	}
	sc := s.scopeLocked(h.ObservationDomainID)
	s.expireScopeLocked(sc, now)
	need := len(body) + pendingOverhead
	if s.pendingBytes+need > s.cfg.MaxBufferedBytes {
		for _, o := range s.scopes {
			s.expireScopeLocked(o, now)
		}
	}
	if s.pendingBytes+need > s.cfg.MaxBufferedBytes {
		s.c.BufferLimitHits++
		s.c.DataSetsDropped++
		return false
	}
	// An exact copy: the message buffer is reused and may be 64 KiB.
	p := &pendingSet{header: h, setID: setID, data: bytes.Clone(body), arrived: now}
	if !s.b.addPending(sc, p) {
		s.c.DataSetsDropped++
		return false
	}
	s.c.DataSetsBuffered++
	return true
}

// expireScopeLocked drops the scope's buffered sets older than
// BufferTimeout.
func (s *Session) expireScopeLocked(sc *scope, now time.Time) {
	for p := sc.pending.Front(); p != nil; {
		next := sc.pending.Next(&p.scNode)
		if now.Sub(p.arrived) >= s.cfg.BufferTimeout {
			s.b.removePending(p)
			s.c.DataSetsDropped++
		}
		p = next
	}
}

// takePendingLocked unlinks the scope's buffered sets for template id,
// in arrival order, for replay outside the lock.
func (s *Session) takePendingLocked(sc *scope, id uint16, now time.Time) []*pendingSet {
	if sc.pending.Len() == 0 {
		return nil
	}
	s.expireScopeLocked(sc, now)
	out := s.scratch.replay[:0]
	for p := sc.pending.Front(); p != nil; {
		next := sc.pending.Next(&p.scNode)
		if p.setID == id {
			s.b.removePending(p)
			out = append(out, p)
		}
		p = next
	}
	s.scratch.replay = out
	return out
}

// replay decodes buffered sets with t.
func (s *Session) replay(t *Template, sets []*pendingSet, fn func(Record) error) error {
	var firstErr error
	for _, p := range sets {
		if firstErr != nil {
			s.c.DataSetsDropped++
			continue
		}
		s.c.DataSetsReplayed++
		if _, err := s.dataSet(p.header, t, p.data, 0, fn); err != nil {
			firstErr = err
		}
	}
	clear(sets) // let the copies go
	return firstErr
}

// sweepLocked removes expired templates and buffered sets.
func (s *Session) sweepLocked(now time.Time) {
	for _, sc := range s.scopes {
		for _, e := range sc.templates {
			if !e.expires.IsZero() && !now.Before(e.expires) {
				s.b.removeTemplate(e)
				s.c.TemplatesExpired++
			}
		}
		s.expireScopeLocked(sc, now)
	}
}

// Expire removes expired templates and buffered sets (Decode also does it
// lazily).
func (s *Session) Expire() {
	now := s.cfg.Now()
	s.b.mu.Lock()
	s.sweepLocked(now)
	s.b.mu.Unlock()
}

// shellSlack is how many transport sessions without state a Decoder lets
// accumulate beyond Limits.MaxSessions before it drops them.
const shellSlack = 1024

// Decoder holds the sessions of a collector. It is not safe for concurrent
// use: run one per goroutine, or use a Session per TCP connection. Its
// sessions' state is charged to Config.Budget (several Decoders and
// Sessions may share one), or to a budget of its own.
type Decoder struct {
	cfg      Config
	sessions map[SessionKey]*Session
	retired  Counters
	scratch  scratch
}

// NewDecoder returns a decoder with the given limits and policies.
func NewDecoder(cfg Config) *Decoder {
	cfg = cfg.withDefaults()
	if cfg.Budget == nil {
		cfg.Budget = NewBudget(Limits{})
	}
	return &Decoder{cfg: cfg, sessions: make(map[SessionKey]*Session)}
}

// Budget returns the budget the decoder's sessions are charged to.
func (d *Decoder) Budget() *Budget { return d.cfg.Budget }

// Session returns the session for key, creating it if needed. Sessions
// whose state the budget evicted entirely are forgotten when room is
// needed. It fails with ErrLimit when MaxSessions sessions holding state
// exist.
func (d *Decoder) Session(key SessionKey) (*Session, error) {
	if s, ok := d.sessions[key]; ok {
		return s, nil
	}
	if len(d.sessions) >= d.cfg.MaxSessions || len(d.sessions) >= d.cfg.Budget.lim[ResSessions]+shellSlack {
		d.dropEmpty()
	}
	if len(d.sessions) >= d.cfg.MaxSessions {
		d.retired.SessionLimitHits++
		return nil, fmt.Errorf("%w: more than %d sessions", ErrLimit, d.cfg.MaxSessions)
	}
	s := newSession(d.cfg, key, &d.scratch)
	d.sessions[key] = s
	return s, nil
}

// dropEmpty forgets the sessions that hold no state. Every session
// holding state holds a scope, so afterwards at most Limits.MaxSessions
// remain.
func (d *Decoder) dropEmpty() {
	b := d.cfg.Budget
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, s := range d.sessions {
		if len(s.scopes) == 0 {
			d.retired.Add(s.c)
			delete(d.sessions, k)
		}
	}
}

// Decode decodes msg in the session for key (see Session.Decode).
func (d *Decoder) Decode(key SessionKey, msg []byte, fn func(rec Record) error) error {
	s, err := d.Session(key)
	if err != nil {
		return err
	}
	return s.Decode(msg, fn)
}

// CloseSession forgets a session and its templates (e.g. its TCP
// connection closed). Its counters stay in the Decoder's totals.
func (d *Decoder) CloseSession(key SessionKey) {
	if s, ok := d.sessions[key]; ok {
		s.Close()
		d.retired.Add(s.c)
		delete(d.sessions, key)
	}
}

// Close releases every session's state to the budget.
func (d *Decoder) Close() {
	for k := range d.sessions {
		d.CloseSession(k)
	}
}

// Sweep expires templates and buffered sets, and forgets UDP sessions that
// hold nothing and were idle longer than the template lifetime.
func (d *Decoder) Sweep() {
	now := d.cfg.Now()
	b := d.cfg.Budget
	for k, s := range d.sessions {
		b.mu.Lock()
		s.sweepLocked(now)
		idle := s.numTemplates == 0 && s.pendingBytes == 0
		b.mu.Unlock()
		if k.Transport == UDP && idle && now.Sub(s.lastActive) >= d.cfg.TemplateLifetime {
			d.CloseSession(k)
		}
	}
}

// NumSessions returns the number of sessions.
func (d *Decoder) NumSessions() int { return len(d.sessions) }

// Counters returns the totals over all sessions, past and present.
func (d *Decoder) Counters() Counters {
	c := d.retired
	for _, s := range d.sessions {
		c.Add(s.c)
	}
	return c
}
