package ipfix

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func nop(Record) error { return nil }

func TestTemplateExpiryUDP(t *testing.T) {
	clk := newClock()
	s := NewSession(Config{TemplateLifetime: 10 * time.Minute, MaxBufferedBytes: -1, Now: clk.Now}, testKey)
	require.NoError(t, s.Decode(msg(0, 0, tmpl256), nop))
	clk.Advance(9 * time.Minute)
	require.NoError(t, s.Decode(msg(0, 0, data256), nop))
	// A refresh restarts the lifetime.
	require.NoError(t, s.Decode(msg(0, 2, tmpl256), nop))
	require.Equal(t, uint64(1), s.Counters().TemplatesRefreshed)
	clk.Advance(9 * time.Minute)
	require.NoError(t, s.Decode(msg(0, 2, data256), nop))
	clk.Advance(time.Minute)
	err := s.Decode(msg(0, 4, data256), nop)
	require.ErrorIs(t, err, ErrTemplateNotFound)
	require.Equal(t, uint64(1), s.Counters().TemplatesExpired)
}

func TestTemplatesLiveWithTCPSession(t *testing.T) {
	clk := newClock()
	d := NewDecoder(Config{TemplateLifetime: time.Minute, Now: clk.Now})
	key := SessionKey{Exporter: netip.MustParseAddrPort("[2001:db8::1]:50000"), Transport: TCP}
	require.NoError(t, d.Decode(key, msg(0, 0, tmpl256), nop))
	clk.Advance(24 * time.Hour)
	n := 0
	require.NoError(t, d.Decode(key, msg(0, 0, data256), func(Record) error { n++; return nil }))
	require.Equal(t, 2, n)
	d.CloseSession(key)
	require.Equal(t, 0, d.NumSessions())
	// A new connection starts without templates.
	require.NoError(t, d.Decode(key, msg(0, 0, data256), nop))
	require.Equal(t, uint64(1), d.Counters().DataSetsBuffered)
	require.Equal(t, uint64(2), d.Counters().DataRecords, "counters of closed sessions are kept")
}

func TestTemplateScope(t *testing.T) {
	d := NewDecoder(Config{MaxBufferedBytes: -1})
	a := SessionKey{Exporter: netip.MustParseAddrPort("192.0.2.1:1000"), Transport: UDP}
	b := SessionKey{Exporter: netip.MustParseAddrPort("192.0.2.1:1001"), Transport: UDP}
	tmpl256Port := set(2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x07, 0x00, 0x02) // 256: sourceTransportPort
	require.NoError(t, d.Decode(a, msg(1, 0, tmpl256), nop))
	require.NoError(t, d.Decode(a, msg(2, 0, tmpl256Port), nop))
	var names []string
	collect := func(r Record) error { names = append(names, r.Field(0).Element.Name); return nil }
	require.NoError(t, d.Decode(a, msg(1, 0, set(256, 1, 2, 3, 4)), collect))
	require.NoError(t, d.Decode(a, msg(2, 0, set(256, 1, 2)), collect))
	require.Equal(t, []string{"sourceIPv4Address", "sourceTransportPort"}, names)
	// Another port is another transport session: no templates there.
	require.ErrorIs(t, d.Decode(b, msg(1, 0, set(256, 1, 2, 3, 4)), collect), ErrTemplateNotFound)
	// Domain 3 of session a has none either.
	require.ErrorIs(t, d.Decode(a, msg(3, 0, set(256, 1, 2, 3, 4)), collect), ErrTemplateNotFound)
	require.Equal(t, 2, d.NumSessions())
}

func TestTemplateRedefinition(t *testing.T) {
	s := NewSession(Config{}, testKey)
	require.NoError(t, s.Decode(msg(0, 0, tmpl256), nop))
	require.NoError(t, s.Decode(msg(0, 0, set(2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x07, 0x00, 0x02)), nop))
	tm, ok := s.Template(0, 256)
	require.True(t, ok)
	require.Equal(t, "sourceTransportPort", tm.Fields[0].Element.Name)
	require.Equal(t, uint64(1), s.Counters().TemplatesUpdated)
}

func TestDataBeforeTemplateIsBuffered(t *testing.T) {
	s := NewSession(Config{}, testKey)
	var got []uint64
	collect := func(r Record) error { got = append(got, r.Value(0).Uint()); return nil }
	require.NoError(t, s.Decode(msg(0, 0, data256), collect))
	require.NoError(t, s.Decode(msg(0, 2, set(256, 9, 9, 9, 9)), collect))
	require.NoError(t, s.Decode(msg(5, 0, data256), collect)) // another domain
	require.Empty(t, got)
	require.Equal(t, uint64(3), s.Counters().DataSetsBuffered)
	// The template arrives: buffered sets of domain 0 are decoded, in order,
	// before the records of the message itself.
	require.NoError(t, s.Decode(msg(0, 3, tmpl256, set(256, 0, 0, 0, 7)), collect))
	require.Equal(t, []uint64{0x01020304, 0x05060708, 0x09090909, 7}, got)
	c := s.Counters()
	require.Equal(t, uint64(2), c.DataSetsReplayed)
	require.Zero(t, c.DataSetsDropped)
	require.Equal(t, 1, s.numPending(), "domain 5 still waits")
}

func TestBufferLimitsAndTimeout(t *testing.T) {
	clk := newClock()
	s := NewSession(Config{MaxBufferedBytes: 2 * (pendingOverhead + 8), BufferTimeout: 10 * time.Second, Now: clk.Now}, testKey)
	require.NoError(t, s.Decode(msg(0, 0, data256), nop))
	require.NoError(t, s.Decode(msg(0, 0, data256), nop))
	err := s.Decode(msg(0, 0, data256), nop)
	require.ErrorIs(t, err, ErrTemplateNotFound)
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	require.Equal(t, uint16(256), de.TemplateID)
	c := s.Counters()
	require.Equal(t, uint64(1), c.BufferLimitHits)
	require.Equal(t, uint64(1), c.DataSetsDropped)
	clk.Advance(11 * time.Second)
	n := 0
	require.NoError(t, s.Decode(msg(0, 0, tmpl256), func(Record) error { n++; return nil }))
	require.Equal(t, 0, n, "expired buffered sets are dropped, not decoded")
	require.Equal(t, uint64(3), s.Counters().DataSetsDropped)
	require.Zero(t, s.pendingBytes)
}

func TestSequenceTracking(t *testing.T) {
	s := NewSession(Config{}, testKey)
	require.NoError(t, s.Decode(msg(0, 100, tmpl256, data256), nop)) // records 100, 101
	require.NoError(t, s.Decode(msg(0, 102, data256), nop))          // in order
	require.NoError(t, s.Decode(msg(0, 110, data256), nop))          // 6 lost (104..109)
	require.NoError(t, s.Decode(msg(0, 105, data256), nop))          // late
	require.NoError(t, s.Decode(msg(1, 7, tmpl256), nop))            // domains are separate
	c := s.Counters()
	require.Equal(t, uint64(1), c.SequenceGaps)
	require.Equal(t, uint64(6), c.RecordsLost)
	require.Equal(t, uint64(1), c.SequenceOutOfOrder)
	// Wrap around 2^32.
	s = NewSession(Config{}, testKey)
	require.NoError(t, s.Decode(msg(0, 0xFFFFFFFF, tmpl256, data256), nop))
	require.NoError(t, s.Decode(msg(0, 1, data256), nop))
	require.Zero(t, s.Counters().RecordsLost)
	// A replay of part of a session checks nothing.
	s = NewSession(Config{}, testKey)
	s.IgnoreSequence()
	require.NoError(t, s.Decode(msg(0, 100, tmpl256, data256), nop))
	require.NoError(t, s.Decode(msg(0, 5000, data256), nop))
	require.NoError(t, s.Decode(msg(0, 7, data256), nop))
	c = s.Counters()
	require.Zero(t, c.SequenceGaps+c.RecordsLost+c.SequenceOutOfOrder)
}

func TestLimits(t *testing.T) {
	t.Run("templates per session", func(t *testing.T) {
		s := NewSession(Config{MaxTemplates: 2}, testKey)
		err := s.Decode(msg(0, 0, set(2,
			0x01, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04,
			0x01, 0x01, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04,
			0x01, 0x02, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04,
		)), nop)
		require.ErrorIs(t, err, ErrLimit)
		require.ErrorIs(t, err, ErrInvalidTemplate)
		require.Equal(t, 2, s.NumTemplates())
		require.Equal(t, uint64(1), s.Counters().TemplateLimitHits)
		// Redefining an existing id is still allowed.
		require.NoError(t, s.Decode(msg(0, 0, set(2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x07, 0x00, 0x02)), nop))
	})
	t.Run("fields per template", func(t *testing.T) {
		s := NewSession(Config{MaxFieldsPerTemplate: 2}, testKey)
		err := s.Decode(msg(0, 0, set(2,
			0x01, 0x00, 0x00, 0x03, 0x00, 0x08, 0x00, 0x04, 0x00, 0x0c, 0x00, 0x04, 0x00, 0x07, 0x00, 0x02,
			0x01, 0x01, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04, // the next record still parses
		)), nop)
		require.ErrorIs(t, err, ErrLimit)
		require.Equal(t, 1, s.NumTemplates())
		require.Equal(t, uint64(1), s.Counters().FieldLimitHits)
	})
	t.Run("sessions", func(t *testing.T) {
		d := NewDecoder(Config{MaxSessions: 1})
		require.NoError(t, d.Decode(testKey, msg(0, 0, tmpl256), nop))
		_, err := d.Session(SessionKey{Transport: TCP})
		require.ErrorIs(t, err, ErrLimit)
		require.Equal(t, uint64(1), d.Counters().SessionLimitHits)
	})
}

func TestDecoderSweep(t *testing.T) {
	clk := newClock()
	d := NewDecoder(Config{TemplateLifetime: time.Minute, Now: clk.Now})
	require.NoError(t, d.Decode(testKey, msg(0, 0, tmpl256), nop))
	tcp := SessionKey{Transport: TCP}
	require.NoError(t, d.Decode(tcp, msg(0, 0, tmpl256), nop))
	clk.Advance(2 * time.Minute)
	d.Sweep()
	require.Equal(t, 1, d.NumSessions(), "idle UDP session without templates is forgotten")
	require.Equal(t, uint64(1), d.Counters().TemplatesExpired)
	s, err := d.Session(tcp)
	require.NoError(t, err)
	require.Equal(t, 1, s.NumTemplates())
}

// TestSessionTemplates: Templates lists the live templates by domain and
// id, and what it lists, written as template sets, defines them again.
func TestSessionTemplates(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	t1, err := NewTemplate(reg, 300, FieldSpec{ID: 8, Length: 4}, FieldSpec{ID: 12, Length: 4})
	require.NoError(t, err)
	t2, err := NewTemplate(reg, 256, FieldSpec{ID: 7, Length: 2})
	require.NoError(t, err)
	msg := func(domain uint32, ts ...*Template) []byte {
		b := MessageHeader{Version: Version, ObservationDomainID: domain}.Append(nil)
		b = AppendTemplateSet(b, ts...)
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		return b
	}
	s := NewSession(Config{Registry: reg}, SessionKey{Transport: TCP})
	require.NoError(t, s.Decode(msg(7, t1, t2), nil))
	require.NoError(t, s.Decode(msg(3, t1), nil))
	got := s.Templates()
	require.Len(t, got, 3)
	require.Equal(t, []uint32{3, 7, 7}, []uint32{got[0].Domain, got[1].Domain, got[2].Domain})
	require.Equal(t, []uint16{300, 256, 300}, []uint16{got[0].Template.ID, got[1].Template.ID, got[2].Template.ID})

	again := NewSession(Config{Registry: reg}, SessionKey{Transport: TCP})
	for _, dt := range got {
		require.NoError(t, again.Decode(msg(dt.Domain, dt.Template), nil))
	}
	tt, ok := again.Template(7, 300)
	require.True(t, ok)
	require.True(t, tt.Equal(t1))
}
