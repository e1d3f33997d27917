package ipfix

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fixtureTemplateAndData is a message with a template set (reduced-size
// octetDeltaCount, an enterprise variable-length field) and a data set of
// two records followed by padding.
var fixtureTemplateAndData = []byte{
	0x00, 0x0a, // version 10
	0x00, 0x44, // message length 68
	0x65, 0x00, 0x00, 0x00, // export time 0x65000000
	0x00, 0x00, 0x00, 0x00, // sequence number 0
	0x00, 0x00, 0x00, 0x01, // observation domain 1
	0x00, 0x02, // set id 2: template set
	0x00, 0x18, // set length 24
	0x01, 0x00, // template id 256
	0x00, 0x03, // field count 3
	0x00, 0x08, 0x00, 0x04, // sourceIPv4Address, length 4
	0x00, 0x01, 0x00, 0x04, // octetDeltaCount, length 4 (reduced from 8)
	0x80, 0x04, 0xff, 0xff, // enterprise bit | 4 (mqttTopic), variable length
	0x00, 0x00, 0x27, 0x0f, // private enterprise number 9999
	0x01, 0x00, // set id 256: data set for template 256
	0x00, 0x1c, // set length 28
	192, 0, 2, 1, // record 1 sourceIPv4Address 192.0.2.1
	0x00, 0x00, 0x01, 0x00, // octetDeltaCount 256
	0x03, 'a', '/', 'b', // mqttTopic: length 3, "a/b"
	10, 0, 0, 1, // record 2 sourceIPv4Address 10.0.0.1
	0xff, 0xff, 0xff, 0xff, // octetDeltaCount 4294967295
	0x00,             // mqttTopic: empty
	0x00, 0x00, 0x00, // padding (shorter than the 9-byte minimum record)
}

func TestFixtureTemplateAndData(t *testing.T) {
	s := NewSession(Config{}, testKey)
	type rec struct {
		src    netip.Addr
		octets uint64
		topic  string
	}
	var got []rec
	require.NoError(t, s.Decode(fixtureTemplateAndData, func(r Record) error {
		require.Equal(t, uint32(0x65000000), r.Header.ExportTime)
		require.Equal(t, "mqttTopic", r.Field(2).Element.Name)
		got = append(got, rec{r.Value(0).IP(), r.Value(1).Uint(), r.Value(2).String()})
		return nil
	}))
	require.Equal(t, []rec{
		{netip.MustParseAddr("192.0.2.1"), 256, "a/b"},
		{netip.MustParseAddr("10.0.0.1"), 4294967295, ""},
	}, got)
	// A round trip through our encoder gives the same bytes (minus padding).
	tm, ok := s.Template(1, 256)
	require.True(t, ok)
	var out []byte
	b := NewBuilder(BuilderConfig{Transport: TCP, ObservationDomainID: 1, Now: func() time.Time { return time.Unix(0x65000000, 0) }},
		func(m []byte) error { out = append([]byte(nil), m...); return nil })
	enc := NewRecordEncoder(tm)
	enc.PutIP(netip.MustParseAddr("192.0.2.1"))
	enc.PutUint(256)
	enc.PutString("a/b")
	require.NoError(t, b.Add(tm, mustBytes(t, enc)))
	enc.Reset(tm)
	enc.PutIP(netip.MustParseAddr("10.0.0.1"))
	enc.PutUint(4294967295)
	enc.PutString("")
	require.NoError(t, b.Add(tm, mustBytes(t, enc)))
	require.NoError(t, b.Flush())
	want := append([]byte(nil), fixtureTemplateAndData[:len(fixtureTemplateAndData)-3]...)
	binary.BigEndian.PutUint16(want[2:], uint16(len(want)))
	binary.BigEndian.PutUint16(want[16+24+2:], 25)
	require.Equal(t, want, out)
}

// originalPrototypeMessage is what the original MISSION probe sent: MQTT
// elements 1–7 under PEN 9999, strings as fixed 255-byte NUL-padded fields.
func originalPrototypeMessage() []byte {
	b := []byte{
		0x00, 0x0a, // version 10
		0x00, 0x00, // length, patched below
		0x00, 0x00, 0x00, 0x01, // export time 1
		0x00, 0x00, 0x00, 0x00, // sequence 0
		0x00, 0x00, 0x00, 0x00, // observation domain 0
		0x00, 0x02, // template set
		0x00, 0x00, // set length, patched below
		0x01, 0x00, // template id 256
		0x00, 0x07, // 7 fields
		0x80, 0x01, 0x00, 0x02, 0x00, 0x00, 0x27, 0x0f, // mqttQoS u16, PEN 9999
		0x80, 0x02, 0x00, 0x02, 0x00, 0x00, 0x27, 0x0f, // mqttControlType u16
		0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x27, 0x0f, // mqttPacketId u16
		0x80, 0x04, 0x00, 0xff, 0x00, 0x00, 0x27, 0x0f, // mqttTopic, fixed 255
		0x80, 0x05, 0x00, 0xff, 0x00, 0x00, 0x27, 0x0f, // mqttSrcClientId, fixed 255
		0x80, 0x06, 0x00, 0xff, 0x00, 0x00, 0x27, 0x0f, // mqttDstClientId, fixed 255
		0x80, 0x07, 0x00, 0xff, 0x00, 0x00, 0x27, 0x0f, // mqttCorrelationData, fixed 255
	}
	binary.BigEndian.PutUint16(b[18:], uint16(len(b)-16))
	ds := len(b)
	b = append(b, 0x01, 0x00, 0, 0) // data set 256, length patched below
	b = append(b, 0x00, 0x01)       // mqttQoS 1
	b = append(b, 0x00, 0x03)       // mqttControlType 3 (PUBLISH)
	b = append(b, 0x00, 0x2a)       // mqttPacketId 42
	for _, s := range []string{"sensors/temp", "client-a", "Unknown client, probably a broker.", ""} {
		f := make([]byte, 255) // NUL padded
		copy(f, s)
		b = append(b, f...)
	}
	binary.BigEndian.PutUint16(b[ds+2:], uint16(len(b)-ds))
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func TestOriginalPrototypeFixedStrings(t *testing.T) {
	s := NewSession(Config{}, testKey)
	n := 0
	require.NoError(t, s.Decode(originalPrototypeMessage(), func(r Record) error {
		n++
		m := r.Map()
		require.Equal(t, map[string]any{
			"mqttQoS": uint64(1), "mqttControlType": uint64(3), "mqttPacketId": uint64(42),
			"mqttTopic": "sensors/temp", "mqttSrcClientId": "client-a",
			"mqttDstClientId": "Unknown client, probably a broker.", "mqttCorrelationData": "",
		}, m)
		return nil
	}))
	require.Equal(t, 1, n)
}

// decodeWithin fails the test if Decode does not return promptly (the
// withdrawal bugs of goflow2 and go-ipfix loop forever).
func decodeWithin(t *testing.T, s *Session, msg []byte) (int, error) {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n := 0
		err := s.Decode(msg, func(Record) error {
			n++
			if n > 1_000_000 {
				panic("runaway decode")
			}
			return nil
		})
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("Decode did not return: infinite loop")
		return 0, nil
	}
}

// msg assembles a message from sets.
func msg(domain, seq uint32, sets ...[]byte) []byte {
	b := MessageHeader{Version: 10, SequenceNumber: seq, ObservationDomainID: domain}.Append(nil)
	for _, s := range sets {
		b = append(b, s...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// set assembles a set with the given id around a body.
func set(id uint16, body ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)+4))
	return append(b, body...)
}

var (
	tmpl256 = set(2,
		0x01, 0x00, // template id 256
		0x00, 0x01, // 1 field
		0x00, 0x08, 0x00, 0x04, // sourceIPv4Address
	)
	data256 = set(256, 1, 2, 3, 4, 5, 6, 7, 8) // two records
)

// Regression: goflow2 and go-ipfix store a withdrawal (field count 0) as an
// empty template and loop forever on the next data set for that id.
func TestRegressionWithdrawalIsNotAnEmptyTemplate(t *testing.T) {
	s := NewSession(Config{MaxBufferedBytes: -1}, SessionKey{Transport: TCP})
	n, err := decodeWithin(t, s, msg(0, 0, tmpl256, data256))
	require.NoError(t, err)
	require.Equal(t, 2, n)

	withdraw := set(2,
		0x01, 0x00, // template id 256
		0x00, 0x00, // field count 0: withdrawal
	)
	n, err = decodeWithin(t, s, msg(0, 2, withdraw, data256))
	require.ErrorIs(t, err, ErrTemplateNotFound)
	require.Equal(t, 0, n)
	require.Equal(t, uint64(1), s.Counters().TemplatesWithdrawn)
	_, ok := s.Template(0, 256)
	require.False(t, ok)

	// A withdrawal of a template never defined is harmless.
	n, err = decodeWithin(t, s, msg(0, 2, set(2, 0x01, 0x01, 0x00, 0x00), tmpl256, data256))
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// Regression: a template whose records have zero width would make a data
// set decode an unbounded number of empty records.
func TestRegressionZeroWidthTemplateRejected(t *testing.T) {
	for name, body := range map[string][]byte{
		"field of length 0":   {0x01, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00},
		"all fields length 0": {0x01, 0x00, 0x00, 0x02, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			s := NewSession(Config{MaxBufferedBytes: -1}, testKey)
			n, err := decodeWithin(t, s, msg(0, 0, set(2, body...), set(256, 1, 2, 3)))
			require.ErrorIs(t, err, ErrInvalidTemplate)
			require.Equal(t, 0, n)
			require.Equal(t, uint64(1), s.Counters().TemplatesRejected)
			require.Equal(t, uint64(1), s.Counters().DataSetsDropped)
		})
	}
	_, err := NewTemplate(nil, 256)
	require.ErrorIs(t, err, ErrInvalidTemplate)
	_, err = NewTemplate(nil, 256, FieldSpec{ID: 1, Length: 0})
	require.ErrorIs(t, err, ErrInvalidTemplate)
	_, err = NewTemplate(nil, 255, FieldSpec{ID: 1, Length: 8})
	require.ErrorIs(t, err, ErrInvalidTemplate)
	_, err = NewOptionsTemplate(nil, 256, 0, FieldSpec{ID: 1, Length: 8})
	require.ErrorIs(t, err, ErrInvalidTemplate)
}

// Regression: go-ipfix ignores the length on the wire for known elements
// and panics with "index out of range [7] with length 4" on a 4-byte
// octetDeltaCount. Every length of every IANA element must decode without
// panicking, integers honouring the length.
func TestRegressionReducedSizeNoPanic(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	for _, e := range reg.Elements() {
		for _, n := range []uint16{1, 2, 3, 4, 5, 7, 8, 9, 16, 17} {
			body := binary.BigEndian.AppendUint16(nil, 256)
			body = append(body, 0, 1)
			id := e.ID
			if e.PEN != 0 {
				id |= 0x8000
			}
			body = binary.BigEndian.AppendUint16(body, id)
			body = binary.BigEndian.AppendUint16(body, n)
			if e.PEN != 0 {
				body = binary.BigEndian.AppendUint32(body, e.PEN)
			}
			value := bytes.Repeat([]byte{0xff}, int(n))
			value[0] = 0x01
			s := NewSession(Config{Registry: reg}, testKey)
			err := s.Decode(msg(0, 0, set(2, body...), set(256, value...)), func(r Record) error {
				v := r.Value(0)
				_ = v.Any()
				_, _, _, _ = v.Int(), v.Float(), v.Time(), v.IP()
				_, _ = v.BasicList()
				if e.Type.IsInteger() && n <= 8 {
					want := uint64(1)
					for i := 1; i < int(n); i++ {
						want = want<<8 | 0xff
					}
					require.Equal(t, want, v.Uint(), "%s length %d", e.Name, n)
				}
				return nil
			})
			require.NoError(t, err, "%s length %d", e.Name, n)
		}
	}
	// The go-ipfix case exactly: octetDeltaCount in 4 bytes.
	s := NewSession(Config{}, testKey)
	var got uint64
	require.NoError(t, s.Decode(msg(0, 0,
		set(2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x04), // template 256: octetDeltaCount length 4
		set(256, 0x00, 0x01, 0x00, 0x00),                       // 65536
	), func(r Record) error { got = r.Value(0).Uint(); return nil }))
	require.Equal(t, uint64(65536), got)
}

func TestWithdrawAll(t *testing.T) {
	s := NewSession(Config{MaxBufferedBytes: -1}, SessionKey{Transport: TCP})
	opt := set(3,
		0x01, 0x01, // template id 257
		0x00, 0x02, // 2 fields
		0x00, 0x01, // 1 scope field
		0x00, 0x90, 0x00, 0x04, // exportingProcessId
		0x00, 0x29, 0x00, 0x08, // exportedMessageTotalCount
	)
	tmpl258 := set(2, 0x01, 0x02, 0x00, 0x01, 0x00, 0x0c, 0x00, 0x04)
	require.NoError(t, s.Decode(msg(0, 0, tmpl256, opt, tmpl258), func(Record) error { return nil }))
	require.Equal(t, 3, s.NumTemplates())
	// Set 2 with template id 2 and field count 0 withdraws all templates,
	// not options templates.
	require.NoError(t, s.Decode(msg(0, 0, set(2, 0x00, 0x02, 0x00, 0x00)), func(Record) error { return nil }))
	require.Equal(t, 1, s.NumTemplates())
	_, ok := s.Template(0, 257)
	require.True(t, ok)
	require.NoError(t, s.Decode(msg(0, 0, set(3, 0x00, 0x03, 0x00, 0x00)), func(Record) error { return nil }))
	require.Equal(t, 0, s.NumTemplates())
	require.Equal(t, uint64(3), s.Counters().TemplatesWithdrawn)
}

func TestSeveralSetsPerMessage(t *testing.T) {
	s := NewSession(Config{}, testKey)
	tmpl300 := set(2,
		0x01, 0x2c, 0x00, 0x01, // template 300, 1 field
		0x00, 0x07, 0x00, 0x02, // sourceTransportPort
	)
	var got []uint64
	require.NoError(t, s.Decode(msg(0, 0,
		tmpl256, tmpl300,
		data256,
		set(300, 0x07, 0x5b, 0x22, 0xb3, 0x00), // 1883, 8883, 1 byte padding
		set(7),                                 // reserved set id: skipped
		data256,
	), func(r Record) error {
		got = append(got, r.Value(0).Uint())
		return nil
	}))
	require.Equal(t, []uint64{0x01020304, 0x05060708, 1883, 8883, 0x01020304, 0x05060708}, got)
	require.Equal(t, uint64(1), s.Counters().UnknownSets)
}

func TestMalformed(t *testing.T) {
	long := msg(0, 0, tmpl256)
	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrIncomplete},
		{"short header", long[:10], ErrIncomplete},
		{"length beyond buffer", long[:len(long)-1], ErrIncomplete},
		{"version 9", append([]byte{0, 9}, long[2:]...), ErrMalformed},
		{"length below header", append([]byte{0, 10, 0, 8}, long[4:]...), ErrMalformed},
		{"truncated set header", msg(0, 0, []byte{0, 2}), ErrMalformed},
		{"set length 3", msg(0, 0, []byte{0, 2, 0, 3}), ErrMalformed},
		{"set length beyond message", msg(0, 0, []byte{1, 0, 0, 40, 1, 2, 3, 4}), ErrMalformed},
		{"truncated field specifier", msg(0, 0, set(2, 0x01, 0x00, 0x00, 0x02, 0x00, 0x08, 0x00, 0x04, 0x00, 0x0c)), ErrMalformed},
		{"truncated enterprise number", msg(0, 0, set(2, 0x01, 0x00, 0x00, 0x01, 0x80, 0x04, 0xff, 0xff, 0x00, 0x00)), ErrMalformed},
		{"template id below 256", msg(0, 0, set(2, 0x00, 0x05, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04)), ErrMalformed},
		{"options scope count 0", msg(0, 0, set(3, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00, 0x04)), ErrMalformed},
		{"options scope count above field count", msg(0, 0, set(3, 0x01, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x08, 0x00, 0x04)), ErrMalformed},
		{"variable length overruns set", msg(0, 0,
			set(2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x52, 0xff, 0xff), // interfaceName, variable length
			set(256, 0x05, 'e', 't', 'h')), ErrMalformed},
		{"long variable length overruns set", msg(0, 0,
			set(2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x52, 0xff, 0xff),
			set(256, 0xff, 0x01)), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSession(Config{}, testKey)
			err := s.Decode(tc.msg, func(Record) error { return nil })
			require.ErrorIs(t, err, tc.want)
			var de *DecodeError
			require.ErrorAs(t, err, &de)
		})
	}
}

func TestCallbackErrorStopsDecoding(t *testing.T) {
	s := NewSession(Config{}, testKey)
	stop := &DecodeError{Err: ErrLimit} // any error value
	n := 0
	err := s.Decode(msg(0, 0, tmpl256, data256), func(Record) error { n++; return stop })
	require.Same(t, stop, err)
	require.Equal(t, 1, n)
}

func TestBasicListMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"short":             {3, 0, 1},
		"enterprise short":  {3, 0x80, 1, 0xff, 0xff, 0, 0},
		"element length 0":  {3, 0, 1, 0, 0},
		"item overruns":     {3, 0, 82, 0xff, 0xff, 4, 'a'},
		"long item overrun": {3, 0, 82, 0xff, 0xff, 0xff, 0},
		"fixed overrun":     {3, 0, 8, 0, 4, 1, 2, 3},
	} {
		_, err := ParseBasicList(b)
		require.ErrorIs(t, err, ErrMalformed, name)
	}
	l, err := ParseBasicList([]byte{3, 0, 8, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8})
	require.NoError(t, err)
	require.Equal(t, 2, l.Len())
	v, err := l.Values()
	require.NoError(t, err)
	require.Equal(t, []any{netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("5.6.7.8")}, v)
}
