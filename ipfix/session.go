package ipfix

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
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

type templateEntry struct {
	t       *Template
	expires time.Time // zero: never (non-UDP)
}

type seqState struct {
	next  uint32
	valid bool
}

type pendingSet struct {
	header  MessageHeader
	setID   uint16
	data    []byte
	arrived time.Time
}

// maxTrackedDomains bounds the observation domains whose sequence numbers
// a session tracks.
const maxTrackedDomains = 4096

// pendingOverhead is charged per buffered set on top of its bytes.
const pendingOverhead = 64

// Session holds the template state of one transport session: templates
// scoped by observation domain, sequence tracking and the buffer of data
// sets waiting for their template. A Session is not safe for concurrent
// use.
type Session struct {
	key          SessionKey
	cfg          Config
	c            Counters
	templates    map[uint64]templateEntry // domain<<16 | template id
	seq          map[uint32]seqState
	pending      []pendingSet
	pendingBytes int
	lastActive   time.Time

	specs []FieldSpec // scratch
	spans []span      // scratch
}

// NewSession returns an empty session.
func NewSession(cfg Config, key SessionKey) *Session {
	cfg = cfg.withDefaults()
	return &Session{
		key:       key,
		cfg:       cfg,
		templates: make(map[uint64]templateEntry),
		seq:       make(map[uint32]seqState),
	}
}

// Key returns the session's key.
func (s *Session) Key() SessionKey { return s.key }

// Counters returns a copy of the session's counters.
func (s *Session) Counters() Counters { return s.c }

// NumTemplates returns the number of templates held (expired ones included
// until they are looked up or swept).
func (s *Session) NumTemplates() int { return len(s.templates) }

// Template returns the live template (domain, id).
func (s *Session) Template(domain uint32, id uint16) (*Template, bool) {
	t := s.lookup(domain, id, s.cfg.Now())
	return t, t != nil
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
	var soft softError
	records := uint32(0)
	unknown := false
	for off := HeaderLen; off < len(msg); {
		sh, next, err := parseSetHeader(msg, off)
		if err != nil {
			s.c.MessagesMalformed++
			delete(s.seq, h.ObservationDomainID)
			return &DecodeError{ObsDomainID: h.ObservationDomainID, TemplateID: sh.ID, Offset: off, Err: err}
		}
		s.c.Sets++
		body := msg[off+SetHeaderLen : next]
		switch {
		case sh.ID == SetIDTemplate || sh.ID == SetIDOptionsTemplate:
			err = s.templateSet(h, sh.ID, body, off+SetHeaderLen, fn, now, &soft)
		case sh.ID >= MinDataSetID:
			if t := s.lookup(h.ObservationDomainID, sh.ID, now); t != nil {
				var n uint32
				n, err = s.dataSet(h, t, body, off+SetHeaderLen, fn)
				records += n
			} else if len(body) > 0 {
				unknown = true
				if !s.buffer(h, sh.ID, body, now) {
					soft.set(&DecodeError{ObsDomainID: h.ObservationDomainID, TemplateID: sh.ID, Offset: off, Err: ErrTemplateNotFound})
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
			delete(s.seq, h.ObservationDomainID)
			return err
		}
		off = next
	}
	s.trackSequence(h, records, unknown)
	return soft.err
}

// trackSequence compares the header's sequence number with the expected
// one. Messages with data sets of unknown templates make the next message
// resynchronise, since their record count is unknown.
func (s *Session) trackSequence(h MessageHeader, records uint32, unknown bool) {
	st, ok := s.seq[h.ObservationDomainID]
	if !ok && len(s.seq) >= maxTrackedDomains {
		return // a hostile exporter cycling through domains: stop tracking new ones
	}
	if st.valid && h.SequenceNumber != st.next {
		d := h.SequenceNumber - st.next
		if d < 1<<31 {
			s.c.SequenceGaps++
			s.c.RecordsLost += uint64(d)
		} else {
			s.c.SequenceOutOfOrder++
		}
	}
	s.seq[h.ObservationDomainID] = seqState{next: h.SequenceNumber + records, valid: !unknown}
}

func templateKey(domain uint32, id uint16) uint64 { return uint64(domain)<<16 | uint64(id) }

// lookup returns the live template or nil, expiring it if due.
func (s *Session) lookup(domain uint32, id uint16, now time.Time) *Template {
	k := templateKey(domain, id)
	e, ok := s.templates[k]
	if !ok {
		return nil
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		delete(s.templates, k)
		s.c.TemplatesExpired++
		return nil
	}
	return e.t
}

// dataSet decodes the records of one data set.
func (s *Session) dataSet(h MessageHeader, t *Template, body []byte, base int, fn func(Record) error) (uint32, error) {
	rec := Record{Template: t, Header: h, reg: s.cfg.Registry}
	n := uint32(0)
	for off := 0; len(body)-off >= t.minLen; {
		spans, l, err := t.splitRecord(body[off:], s.spans)
		if err != nil {
			return n, &DecodeError{ObsDomainID: h.ObservationDomainID, TemplateID: t.ID, Offset: base + off,
				Err: fmt.Errorf("%w: data record overruns its set", ErrMalformed)}
		}
		if t.fixed == nil {
			s.spans = spans
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
	for off := 0; len(body)-off >= 4; {
		rec, next, tooMany, err := parseTemplateRecord(setID, body, off, s.specs, s.cfg.MaxFieldsPerTemplate)
		if err != nil {
			if off > 0 && allZero(body[off:]) {
				return nil // padding
			}
			return &DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off, Err: err}
		}
		if cap(rec.specs) > cap(s.specs) {
			s.specs = rec.specs
		}
		off = next
		if rec.withdraw {
			s.withdraw(domain, setID, rec.id)
			continue
		}
		k := templateKey(domain, rec.id)
		old, exists := s.templates[k]
		if tooMany {
			s.c.FieldLimitHits++
			s.c.TemplatesRejected++
			s.dropTemplate(k, exists)
			soft.set(&DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off,
				Err: fmt.Errorf("%w: %w: more than %d fields", ErrInvalidTemplate, ErrLimit, s.cfg.MaxFieldsPerTemplate)})
			continue
		}
		expires := time.Time{}
		if s.key.Transport == UDP {
			expires = now.Add(s.cfg.TemplateLifetime)
		}
		if exists && old.t.sameDefinition(rec.scope, rec.specs) {
			s.templates[k] = templateEntry{t: old.t, expires: expires}
			s.c.TemplatesRefreshed++
			continue
		}
		t, err := newTemplate(s.cfg.Registry, rec.id, rec.scope, rec.specs)
		if err != nil {
			s.c.TemplatesRejected++
			s.dropTemplate(k, exists)
			soft.set(&DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off, Err: err})
			continue
		}
		if !exists && len(s.templates) >= s.cfg.MaxTemplates {
			s.sweepTemplates(now)
			if len(s.templates) >= s.cfg.MaxTemplates {
				s.c.TemplateLimitHits++
				s.c.TemplatesRejected++
				soft.set(&DecodeError{ObsDomainID: domain, TemplateID: rec.id, Offset: base + off,
					Err: fmt.Errorf("%w: %w: more than %d templates", ErrInvalidTemplate, ErrLimit, s.cfg.MaxTemplates)})
				continue
			}
		}
		if exists {
			s.c.TemplatesUpdated++
		} else {
			s.c.TemplatesAdded++
		}
		s.templates[k] = templateEntry{t: t, expires: expires}
		if err := s.replay(domain, t, now, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Session) dropTemplate(k uint64, exists bool) {
	if exists {
		delete(s.templates, k)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// withdraw handles a withdrawal record: id == setID withdraws all templates
// of that kind in the domain.
func (s *Session) withdraw(domain uint32, setID, id uint16) {
	if id != setID {
		k := templateKey(domain, id)
		if _, ok := s.templates[k]; ok {
			delete(s.templates, k)
			s.c.TemplatesWithdrawn++
		}
		return
	}
	options := setID == SetIDOptionsTemplate
	for k, e := range s.templates {
		if uint32(k>>16) == domain && e.t.IsOptions() == options {
			delete(s.templates, k)
			s.c.TemplatesWithdrawn++
		}
	}
}

// buffer keeps a copy of a data set whose template is missing. It reports
// false if the set was dropped.
func (s *Session) buffer(h MessageHeader, setID uint16, body []byte, now time.Time) bool {
	if s.cfg.MaxBufferedBytes < 0 {
		s.c.DataSetsDropped++
		return false
	}
	s.expirePending(now)
	need := len(body) + pendingOverhead
	if s.pendingBytes+need > s.cfg.MaxBufferedBytes {
		s.c.BufferLimitHits++
		s.c.DataSetsDropped++
		return false
	}
	s.pending = append(s.pending, pendingSet{header: h, setID: setID, data: bytes.Clone(body), arrived: now})
	s.pendingBytes += need
	s.c.DataSetsBuffered++
	return true
}

func (s *Session) expirePending(now time.Time) {
	kept := s.pending[:0]
	for _, p := range s.pending {
		if now.Sub(p.arrived) >= s.cfg.BufferTimeout {
			s.c.DataSetsDropped++
			s.pendingBytes -= len(p.data) + pendingOverhead
			continue
		}
		kept = append(kept, p)
	}
	clear(s.pending[len(kept):])
	s.pending = kept
}

// replay decodes buffered sets waiting for t.
func (s *Session) replay(domain uint32, t *Template, now time.Time, fn func(Record) error) error {
	if len(s.pending) == 0 {
		return nil
	}
	s.expirePending(now)
	var firstErr error
	kept := s.pending[:0]
	for _, p := range s.pending {
		if p.header.ObservationDomainID != domain || p.setID != t.ID {
			kept = append(kept, p)
			continue
		}
		s.pendingBytes -= len(p.data) + pendingOverhead
		if firstErr != nil {
			s.c.DataSetsDropped++
			continue
		}
		s.c.DataSetsReplayed++
		if _, err := s.dataSet(p.header, t, p.data, 0, fn); err != nil {
			firstErr = err
		}
	}
	clear(s.pending[len(kept):])
	s.pending = kept
	return firstErr
}

// sweepTemplates removes expired templates.
func (s *Session) sweepTemplates(now time.Time) {
	for k, e := range s.templates {
		if !e.expires.IsZero() && !now.Before(e.expires) {
			delete(s.templates, k)
			s.c.TemplatesExpired++
		}
	}
}

// Expire removes expired templates and buffered sets (Decode also does it
// lazily).
func (s *Session) Expire() {
	now := s.cfg.Now()
	s.sweepTemplates(now)
	s.expirePending(now)
}

// Decoder holds the sessions of a collector. It is not safe for concurrent
// use: run one per goroutine, or use a Session per TCP connection.
type Decoder struct {
	cfg      Config
	sessions map[SessionKey]*Session
	retired  Counters
}

// NewDecoder returns a decoder with the given limits and policies.
func NewDecoder(cfg Config) *Decoder {
	return &Decoder{cfg: cfg.withDefaults(), sessions: make(map[SessionKey]*Session)}
}

// Session returns the session for key, creating it if needed. It fails
// with ErrLimit when MaxSessions sessions exist.
func (d *Decoder) Session(key SessionKey) (*Session, error) {
	if s, ok := d.sessions[key]; ok {
		return s, nil
	}
	if len(d.sessions) >= d.cfg.MaxSessions {
		d.retired.SessionLimitHits++
		return nil, fmt.Errorf("%w: more than %d sessions", ErrLimit, d.cfg.MaxSessions)
	}
	s := NewSession(d.cfg, key)
	d.sessions[key] = s
	return s, nil
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
		d.retired.Add(s.c)
		delete(d.sessions, key)
	}
}

// Sweep expires templates and buffered sets, and forgets UDP sessions that
// hold nothing and were idle longer than the template lifetime.
func (d *Decoder) Sweep() {
	now := d.cfg.Now()
	for k, s := range d.sessions {
		s.sweepTemplates(now)
		s.expirePending(now)
		if k.Transport == UDP && len(s.templates) == 0 && len(s.pending) == 0 &&
			now.Sub(s.lastActive) >= d.cfg.TemplateLifetime {
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
