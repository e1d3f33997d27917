package ipfix

import (
	"encoding/binary"
	"fmt"
	"time"
)

// UDPMessageSize is the largest IPFIX message that fits one unfragmented
// UDP datagram on a path with the given MTU.
func UDPMessageSize(mtu int, ipv6 bool) int {
	n := mtu - 20 - 8
	if ipv6 {
		n = mtu - 40 - 8
	}
	return min(max(n, HeaderLen+SetHeaderLen+1), MaxMessageLen)
}

// BuilderConfig configures a Builder. Zero fields take the defaults.
type BuilderConfig struct {
	ObservationDomainID uint32
	// Transport selects the template policy: UDP resends templates
	// periodically (RFC 7011 §8.4); TCP, SCTP and File send each template
	// once per connection (see Reconnect) and again when it changes
	// (withdrawing the old definition first over TCP/SCTP).
	Transport Transport
	// MaxMessageSize bounds a message (default: UDPMessageSize(1500,
	// false) = 1472 for UDP, 65535 otherwise).
	MaxMessageSize int
	// TemplateRefresh is the UDP template resend interval (default 60 s).
	TemplateRefresh time.Duration
	// TemplateRefreshMessages also resends a template over UDP after this
	// many messages without it (0: only by time).
	TemplateRefreshMessages int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

type builderTemplate struct {
	t         *Template
	sent      bool      // sent on this connection
	everSent  bool      // some definition of this id was sent on this connection
	withdraw  bool      // send a withdrawal before the new definition
	sentAt    time.Time // last time sent
	sentMsgs  int       // messages emitted since last sent
	inMessage bool      // part of the open message
}

// Builder packs templates and data records into messages and hands each
// complete message to an emit function (a socket write, a file). It sets
// the export time and the sequence number (data records sent before the
// message, modulo 2^32). Add does not allocate in the steady state. A
// Builder is not safe for concurrent use.
type Builder struct {
	cfg      BuilderConfig
	emit     func(msg []byte) error
	buf      []byte
	setStart int    // offset of the open data set's header, or -1
	setID    uint16 // id of the open data set
	records  uint32 // data records in the open message
	seq      uint32 // data records sent before the open message
	tmpls    map[uint16]*builderTemplate
	order    []uint16 // template ids in registration order
}

// NewBuilder returns a builder that passes each finished message to emit.
// The message is only valid during the call.
func NewBuilder(cfg BuilderConfig, emit func(msg []byte) error) *Builder {
	if cfg.MaxMessageSize <= 0 {
		if cfg.Transport == UDP {
			cfg.MaxMessageSize = UDPMessageSize(1500, false)
		} else {
			cfg.MaxMessageSize = MaxMessageLen
		}
	}
	cfg.MaxMessageSize = min(cfg.MaxMessageSize, MaxMessageLen)
	if cfg.TemplateRefresh <= 0 {
		cfg.TemplateRefresh = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Builder{cfg: cfg, emit: emit, setStart: -1, tmpls: make(map[uint16]*builderTemplate),
		buf: make([]byte, 0, cfg.MaxMessageSize)}
}

// SequenceNumber returns the number of data records emitted so far,
// modulo 2^32.
func (b *Builder) SequenceNumber() uint32 { return b.seq }

// AddTemplate registers t (or replaces the template with the same id). It
// is sent before the first record that uses it.
func (b *Builder) AddTemplate(t *Template) error {
	if t.encodedLen()+HeaderLen+SetHeaderLen > b.cfg.MaxMessageSize {
		return fmt.Errorf("%w: template %d", ErrRecordTooLarge, t.ID)
	}
	st, ok := b.tmpls[t.ID]
	if !ok {
		b.tmpls[t.ID] = &builderTemplate{t: t}
		b.order = append(b.order, t.ID)
		return nil
	}
	if st.t == t || st.t.Equal(t) {
		st.t = t
		return nil
	}
	if st.inMessage {
		// The old definition is in the open message; finish it first.
		if err := b.Flush(); err != nil {
			return err
		}
	}
	st.t = t
	st.sent = false
	st.withdraw = st.everSent && b.cfg.Transport != UDP
	return nil
}

// WithdrawTemplate forgets template id and, except over UDP where
// withdrawals are not used (RFC 7011 §8.4), sends a withdrawal.
func (b *Builder) WithdrawTemplate(id uint16) error {
	st, ok := b.tmpls[id]
	if !ok {
		return nil
	}
	if st.inMessage {
		if err := b.Flush(); err != nil {
			return err
		}
	}
	delete(b.tmpls, id)
	for i, v := range b.order {
		if v == id {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
	if b.cfg.Transport == UDP || !st.everSent {
		return nil
	}
	if err := b.reserve(SetHeaderLen + 4); err != nil {
		return err
	}
	b.closeSet()
	b.buf = AppendWithdrawalSet(b.buf, st.t.IsOptions(), id)
	return nil
}

// Reconnect marks every template unsent, for a new TCP connection (or a new
// file). Call Flush first if the open message should go to the old one;
// otherwise it is discarded.
func (b *Builder) Reconnect() {
	b.buf = b.buf[:0]
	b.setStart = -1
	b.records = 0
	for _, st := range b.tmpls {
		st.sent, st.everSent, st.withdraw, st.inMessage = false, false, false, false
	}
}

// SendTemplates puts every registered template into the open message
// (starting one if needed), e.g. right after connecting or on a UDP refresh
// timer with no data to send.
func (b *Builder) SendTemplates() error {
	now := b.cfg.Now()
	for _, id := range b.order {
		st := b.tmpls[id]
		if st.inMessage {
			continue
		}
		if err := b.writeTemplate(st, now); err != nil {
			return err
		}
	}
	return nil
}

// Add appends a data record of t (encoded by a RecordEncoder), sending the
// template first if the policy requires it, and emits the open message when
// the record does not fit.
func (b *Builder) Add(t *Template, rec []byte) error {
	st, ok := b.tmpls[t.ID]
	if !ok || st.t != t {
		if err := b.AddTemplate(t); err != nil {
			return err
		}
		st = b.tmpls[t.ID]
	}
	if len(rec) < t.minLen {
		return fmt.Errorf("%w: record of %d bytes for template %d", ErrFieldMismatch, len(rec), t.ID)
	}
	// The template policy is applied when a data set of t starts: within
	// the set, t's template is in the message or was not due. The clock is
	// read only for a UDP refresh check.
	var now time.Time
	newSet := b.setStart < 0 || b.setID != t.ID
	if newSet && b.templateDue(st, &now) {
		if err := b.writeTemplate(st, now); err != nil {
			return err
		}
	}
	need := len(rec)
	if newSet {
		need += SetHeaderLen
	}
	if len(b.buf) == 0 || len(b.buf)+need > b.cfg.MaxMessageSize {
		if len(b.buf)+need > b.cfg.MaxMessageSize {
			if err := b.Flush(); err != nil {
				return err
			}
		}
		b.open()
		if b.templateDue(st, &now) {
			if err := b.writeTemplate(st, now); err != nil {
				return err
			}
		}
		need = len(rec) + SetHeaderLen
		if len(b.buf)+need > b.cfg.MaxMessageSize {
			return fmt.Errorf("%w: %d bytes", ErrRecordTooLarge, len(rec))
		}
	}
	if b.setStart < 0 || b.setID != t.ID {
		b.closeSet()
		b.setStart = len(b.buf)
		b.setID = t.ID
		b.buf = binary.BigEndian.AppendUint16(b.buf, t.ID)
		b.buf = append(b.buf, 0, 0)
	}
	b.buf = append(b.buf, rec...)
	b.records++
	return nil
}

// templateDue applies the template policy. It reads the clock into *now,
// if still zero, only when it needs the time.
func (b *Builder) templateDue(st *builderTemplate, now *time.Time) bool {
	if st.inMessage {
		return false
	}
	if !st.sent {
		return true
	}
	if b.cfg.Transport != UDP {
		return false
	}
	if b.cfg.TemplateRefreshMessages > 0 && st.sentMsgs >= b.cfg.TemplateRefreshMessages {
		return true
	}
	if now.IsZero() {
		*now = b.cfg.Now()
	}
	return now.Sub(st.sentAt) >= b.cfg.TemplateRefresh
}

// writeTemplate puts st's template (after a withdrawal if needed) into the
// open message.
func (b *Builder) writeTemplate(st *builderTemplate, now time.Time) error {
	if now.IsZero() {
		now = b.cfg.Now()
	}
	n := SetHeaderLen + st.t.encodedLen()
	if st.withdraw {
		n += SetHeaderLen + 4
	}
	if err := b.reserve(n); err != nil {
		return err
	}
	b.closeSet()
	if st.withdraw {
		b.buf = AppendWithdrawalSet(b.buf, st.t.IsOptions(), st.t.ID)
		st.withdraw = false
	}
	b.buf = AppendTemplateSet(b.buf, st.t)
	st.sent, st.everSent, st.inMessage = true, true, true
	st.sentAt, st.sentMsgs = now, 0
	return nil
}

// reserve makes sure n more bytes fit in the open message, emitting it if
// needed, and opens a message.
func (b *Builder) reserve(n int) error {
	if len(b.buf) > 0 && len(b.buf)+n > b.cfg.MaxMessageSize {
		if err := b.Flush(); err != nil {
			return err
		}
	}
	if len(b.buf) == 0 {
		b.open()
	}
	if len(b.buf)+n > b.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes", ErrRecordTooLarge, n)
	}
	return nil
}

func (b *Builder) open() {
	b.buf = append(b.buf[:0], make([]byte, HeaderLen)...)
	b.setStart = -1
	b.records = 0
}

// closeSet writes the length of the open data set.
func (b *Builder) closeSet() {
	if b.setStart >= 0 {
		binary.BigEndian.PutUint16(b.buf[b.setStart+2:], uint16(len(b.buf)-b.setStart))
		b.setStart = -1
	}
}

// Flush emits the open message, if it holds anything.
func (b *Builder) Flush() error {
	if len(b.buf) <= HeaderLen {
		b.buf = b.buf[:0]
		return nil
	}
	b.closeSet()
	h := MessageHeader{
		Version:             Version,
		Length:              uint16(len(b.buf)),
		ExportTime:          uint32(b.cfg.Now().Unix()),
		SequenceNumber:      b.seq,
		ObservationDomainID: b.cfg.ObservationDomainID,
	}
	h.Append(b.buf[:0])
	b.seq += b.records
	for _, st := range b.tmpls {
		if st.inMessage {
			st.inMessage = false
		} else {
			st.sentMsgs++
		}
	}
	msg := b.buf
	b.buf = b.buf[:0]
	b.records = 0
	b.setStart = -1
	return b.emit(msg)
}
