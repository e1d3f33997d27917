package coapparse

import (
	"bytes"
	"slices"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// fixture is one annotated datagram: bytes in, expected error/violations and
// field checks out.
type fixture struct {
	name  string
	in    []byte
	err   error      // sentinel expected with errors.Is; nil for success
	viol  Violations // expected violation set (exact)
	check func(t *testing.T, m *Message)
}

func s(b []byte) string { return string(b) }

var fixtures = []fixture{
	// ---------------------------------------------------------------- requests
	{
		name: "CON GET /a/b/c with token",
		in: []byte{
			0x44,       // ver 1, CON, TKL 4
			0x01,       // 0.01 GET
			0x12, 0x34, // message id 0x1234
			0xde, 0xad, 0xbe, 0xef, // token
			0xb1, 'a', // delta 11 Uri-Path, len 1
			0x01, 'b', // delta 0 Uri-Path, len 1
			0x01, 'c', // delta 0 Uri-Path, len 1
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, Confirmable, m.Type)
			require.Equal(t, GET, m.Code)
			require.Equal(t, uint16(0x1234), m.MessageID)
			require.Equal(t, []byte{0xde, 0xad, 0xbe, 0xef}, m.Token)
			require.Nil(t, m.Payload)
			require.Equal(t, "/a/b/c", m.URIPath())
			require.Equal(t, "", m.URIQuery())
			require.Equal(t, 3, m.Count(URIPath))
			require.Len(t, m.Options(), 3)
		},
	},
	{
		name: "NON GET with Uri-Host, Uri-Port, query and Accept",
		in: []byte{
			0x51,       // ver 1, NON, TKL 1
			0x01,       // GET
			0x00, 0x07, // message id 7
			0x99,                                              // token
			0x39, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', // delta 3 Uri-Host, len 9
			0x42, 0x16, 0x33, // delta 4 → 7 Uri-Port, len 2: 5683
			0x44, 't', 'e', 'm', 'p', // delta 4 → 11 Uri-Path "temp"
			0x43, 'a', '=', '1', // delta 4 → 15 Uri-Query "a=1"
			0x03, 'b', '=', '2', // delta 0 Uri-Query "b=2"
			0x21, 50, // delta 2 → 17 Accept, len 1: 50 (application/json)
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, NonConfirmable, m.Type)
			host, ok := m.Get(URIHost)
			require.True(t, ok)
			require.Equal(t, "localhost", s(host))
			port, ok := m.Uint(URIPort)
			require.True(t, ok)
			require.Equal(t, uint32(5683), port)
			require.Equal(t, "/temp", m.URIPath())
			require.Equal(t, "a=1&b=2", m.URIQuery())
			acc, ok := m.Uint(Accept)
			require.True(t, ok)
			require.Equal(t, uint32(50), acc)
			require.Equal(t, []string{"a=1", "b=2"}, collect(m, URIQuery))
		},
	},
	{
		name: "CON PUT Block1 with Size1 (extended delta 13) and payload",
		in: []byte{
			0x40,       // CON, TKL 0
			0x03,       // 0.03 PUT
			0xab, 0xcd, // message id
			0xb1, 'f', // Uri-Path "f"
			0x11, 0x00, // delta 1 → 12 Content-Format, len 1: 0 (leading-zero form of 0)
			0xd1, 0x02, 0x1e, // delta 13+2=15 → 27 Block1, len 1: num 1, M, SZX 6
			0xd2, 0x14, 0x04, 0x00, // delta 13+20=33 → 60 Size1, len 2: 1024
			0xff,                    // payload marker
			'h', 'e', 'l', 'l', 'o', // payload
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, PUT, m.Code)
			require.Nil(t, m.Token)
			b1, ok := m.Block1()
			require.True(t, ok)
			require.Equal(t, Block{Num: 1, More: true, SZX: 6, Size: 1024}, b1)
			sz, ok := m.Uint(Size1)
			require.True(t, ok)
			require.Equal(t, uint32(1024), sz)
			cf, ok := m.Uint(ContentFormat)
			require.True(t, ok)
			require.Equal(t, uint32(0), cf)
			require.Equal(t, "hello", s(m.Payload))
			_, ok = m.Block2()
			require.False(t, ok)
		},
	},
	{
		name: "GET with extended delta 14 (elective option 2000), extended lengths 13 and 14",
		in: append([]byte{
			0x40, 0x01, 0x00, 0x01, // CON GET, mid 1, no token
			0xbd, 7, // delta 11 Uri-Path, len 13+7 = 20
			'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
			0xe0, 0x06, 0xb8, // delta 269+0x06b8 = 1989 → 2000, len 0
			0x0e, 0x00, 0x1f, // delta 0 → 2000 again, len 269+31 = 300
		}, bytes.Repeat([]byte{'z'}, 300)...), // value of option 2000
		check: func(t *testing.T, m *Message) {
			require.Equal(t, "/01234567890123456789", m.URIPath())
			require.Equal(t, 2, m.Count(2000))
			v, ok := m.Get(2000)
			require.True(t, ok)
			require.Empty(t, v)
			require.Len(t, m.Options()[2].Value, 300)
			require.False(t, OptionNumber(2000).Known())
			require.False(t, OptionNumber(2000).Critical())
		},
	},
	{
		name: "FETCH with No-Response (extended delta 13 to 258) and unknown elective option",
		in: []byte{
			0x42, 0x05, 0x00, 0x02, // CON, TKL 2, 0.05 FETCH, mid 2
			0x01, 0x02, // token
			0xb3, 'r', 'e', 's', // Uri-Path "res"
			0xd1, 234, 0x1a, // delta 13+234 = 247 → 258 No-Response, len 1: 26
			0xe0, 0x00, 0x01, // delta 269+1 = 270 → 528 (elective, unknown), len 0
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, FETCH, m.Code)
			nr, ok := m.Uint(NoResponse)
			require.True(t, ok)
			require.Equal(t, uint32(26), nr)
			require.True(t, m.Has(528))
		},
	},
	{
		name: "POST with OSCORE, Hop-Limit, Echo and Request-Tag (known beyond RFC 7252)",
		in: []byte{
			0x40, 0x02, 0x00, 0x03, // CON POST, mid 3
			0x91, 0x09, // delta 9 OSCORE, len 1
			0x71, 0x10, // delta 7 → 16 Hop-Limit, len 1: 16
			0xd2, 0xdf, 0xaa, 0xbb, // delta 13+223 = 236 → 252 Echo, len 2
			0xd1, 0x1b, 0x07, // delta 13+27 = 40 → 292 Request-Tag, len 1
			0x01, 0x08, // delta 0 → 292 Request-Tag again (repeatable)
		},
		check: func(t *testing.T, m *Message) {
			hl, ok := m.Uint(HopLimit)
			require.True(t, ok)
			require.Equal(t, uint32(16), hl)
			echo, _ := m.Get(Echo)
			require.Equal(t, []byte{0xaa, 0xbb}, echo)
			require.Equal(t, 2, m.Count(RequestTag))
		},
	},
	{
		name: "If-Match twice and ETag twice in a request (both repeatable there)",
		in: []byte{
			0x40, 0x03, 0x00, 0x04, // CON PUT, mid 4
			0x11, 0x01, // delta 1 If-Match, len 1
			0x00,       // delta 0 If-Match, len 0
			0x31, 0x0a, // delta 3 → 4 ETag, len 1
			0x01, 0x0b, // delta 0 ETag, len 1
			0x10, // delta 1 → 5 If-None-Match, len 0
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, 2, m.Count(IfMatch))
			require.Equal(t, 2, m.Count(ETag))
			require.True(t, m.Has(IfNoneMatch))
		},
	},
	// ---------------------------------------------------------------- responses
	{
		name: "ACK 2.05 Content with Content-Format, ETag, Block2 and payload",
		in: []byte{
			0x62,       // ver 1, ACK, TKL 2
			0x45,       // 2.05 Content
			0x12, 0x34, // message id
			0xca, 0xfe, // token
			0x44, 0x01, 0x02, 0x03, 0x04, // delta 4 ETag, len 4
			0x81, 0x00, // delta 8 → 12 Content-Format, len 1: 0 (text/plain)
			0xb1, 0x1a, // delta 11 → 23 Block2, len 1: num 1, M, SZX 2
			0xff,                              // payload marker
			'p', 'a', 'y', 'l', 'o', 'a', 'd', // payload
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, Acknowledgement, m.Type)
			require.Equal(t, Content, m.Code)
			require.Equal(t, "2.05", m.Code.String())
			require.Equal(t, "Content", m.Code.Name())
			b2, ok := m.Block2()
			require.True(t, ok)
			require.Equal(t, Block{Num: 1, More: true, SZX: 2, Size: 64}, b2)
			etag, _ := m.Get(ETag)
			require.Equal(t, []byte{1, 2, 3, 4}, etag)
			require.Equal(t, "payload", s(m.Payload))
		},
	},
	{
		name: "NON 2.05 Observe notification, 3-byte sequence, Max-Age with leading zeros",
		in: []byte{
			0x51, 0x45, 0x00, 0x09, // NON, TKL 1, 2.05, mid 9
			0x77,                   // token
			0x63, 0x01, 0x00, 0x00, // delta 6 Observe, len 3: 65536
			0x61, 0x00, // delta 6 → 12 Content-Format, len 1: 0
			0x24, 0x00, 0x00, 0x00, 0x3c, // delta 2 → 14 Max-Age, len 4: 60 (leading zeros allowed)
			0xff, '2', '1', // payload
		},
		check: func(t *testing.T, m *Message) {
			obs, ok := m.Observe()
			require.True(t, ok)
			require.Equal(t, uint32(65536), obs)
			ma, ok := m.Uint(MaxAge)
			require.True(t, ok)
			require.Equal(t, uint32(60), ma)
		},
	},
	{
		name: "ACK 2.01 Created with Location-Path and Location-Query",
		in: []byte{
			0x60, 0x41, 0x00, 0x0a, // ACK, TKL 0, 2.01, mid 10
			0x82, 'l', '1', // delta 8 Location-Path "l1"
			0x02, 'l', '2', // delta 0 Location-Path "l2"
			0xc3, 'x', '=', 'y', // delta 12 → 20 Location-Query "x=y"
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, Created, m.Code)
			require.Equal(t, "/l1/l2", m.LocationPath())
			require.Equal(t, "x=y", m.LocationQuery())
		},
	},
	{
		name: "ACK 4.04 Not Found, no options",
		in: []byte{
			0x60, 0x84, 0x00, 0x0b, // ACK, TKL 0, 4.04, mid 11
		},
		check: func(t *testing.T, m *Message) {
			require.Equal(t, NotFound, m.Code)
			require.Equal(t, "Not Found", m.Code.Name())
			require.Equal(t, "/", m.URIPath())
		},
	},
	{
		name: "CON Empty (ping)",
		in:   []byte{0x40, 0x00, 0x00, 0x0c}, // CON, TKL 0, 0.00, mid 12
		check: func(t *testing.T, m *Message) {
			require.True(t, m.Code.IsEmpty())
			require.Empty(t, m.Options())
		},
	},
	{
		name: "RST Empty",
		in:   []byte{0x70, 0x00, 0x00, 0x0c}, // RST, TKL 0, 0.00, mid 12
		check: func(t *testing.T, m *Message) {
			require.Equal(t, Reset, m.Type)
		},
	},
	{
		name: "more than MaxOptions options: stored 32, dropped counted",
		in: append([]byte{
			0x40, 0x01, 0x00, 0x0d, // CON GET, mid 13
			0xb1, 'x', // Uri-Path "x"
		}, bytes.Repeat([]byte{0x01, 'x'}, 39)...), // 39 more Uri-Path "x"
		check: func(t *testing.T, m *Message) {
			require.Len(t, m.Options(), MaxOptions)
			require.Equal(t, 8, m.Dropped)
		},
	},
	// ---------------------------------------------------------------- format errors
	{
		name: "3 bytes: header truncated",
		in:   []byte{0x40, 0x01, 0x00}, // header cut after the first message-id byte
		err:  ErrTruncated,
	},
	{
		name: "version 2",
		in:   []byte{0x80, 0x01, 0x00, 0x01}, // ver 2, CON, TKL 0
		err:  ErrVersion,
	},
	{
		name: "version 0",
		in:   []byte{0x00, 0x01, 0x00, 0x01}, // ver 0
		err:  ErrVersion,
	},
	{
		name: "token length 9",
		in:   []byte{0x49, 0x01, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9}, // TKL 9 reserved
		err:  ErrTokenLength,
	},
	{
		name: "token length 15",
		in:   []byte{0x4f, 0x01, 0x00, 0x01}, // TKL 15 reserved
		err:  ErrTokenLength,
	},
	{
		name: "token truncated",
		in:   []byte{0x44, 0x01, 0x00, 0x01, 1, 2, 3}, // TKL 4, only 3 token bytes
		err:  ErrTruncated,
	},
	{
		name: "option delta 15 that is not the payload marker",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xf1, 'x'}, // delta 15, len 1
		err:  ErrOptionReserved,
	},
	{
		name: "option length 15",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xbf, 'x'}, // delta 11, len 15
		err:  ErrOptionReserved,
	},
	{
		name: "extended delta (13) missing",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xd0}, // delta 13, extension byte absent
		err:  ErrTruncated,
	},
	{
		name: "extended delta (14) cut",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xe0, 0x01}, // delta 14, one of two extension bytes
		err:  ErrTruncated,
	},
	{
		name: "extended length (13) missing",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xbd}, // delta 11, len 13, extension absent
		err:  ErrTruncated,
	},
	{
		name: "extended length (14) cut",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xbe, 0x00}, // delta 11, len 14, one extension byte
		err:  ErrTruncated,
	},
	{
		name: "option value runs past the datagram",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xb3, 'a', 'b'}, // Uri-Path len 3, 2 bytes left
		err:  ErrTruncated,
	},
	{
		name: "option numbers past 65535",
		in: []byte{
			0x40, 0x01, 0x00, 0x01, // CON GET
			0xe0, 0xff, 0x00, // delta 269+0xff00 = 65549: over 65535
		},
		err: ErrOptionNumber,
	},
	{
		name: "payload marker without payload",
		in: []byte{
			0x40, 0x02, 0x00, 0x01, // CON POST
			0xb1, 'a', // Uri-Path "a"
			0xff, // payload marker, then nothing
		},
		err: ErrEmptyPayload,
	},
	{
		name: "Empty message with a token",
		in:   []byte{0x41, 0x00, 0x00, 0x01, 0x07}, // CON, TKL 1, 0.00, token
		err:  ErrEmptyMessage,
	},
	{
		name: "Empty message with a payload",
		in:   []byte{0x40, 0x00, 0x00, 0x01, 0xff, 'x'}, // CON 0.00, payload marker, payload
		err:  ErrEmptyMessage,
	},
	{
		name: "Empty message with an option",
		in:   []byte{0x60, 0x00, 0x00, 0x01, 0xb1, 'a'}, // ACK 0.00, Uri-Path
		err:  ErrEmptyMessage,
	},
	// ---------------------------------------------------------------- violations
	{
		name: "code class 1 reserved",
		in:   []byte{0x40, 0x21, 0x00, 0x01}, // CON, 1.01
		err:  ErrViolation, viol: ViolationReservedClass,
	},
	{
		name: "code class 6 reserved",
		in:   []byte{0x40, 0xc0, 0x00, 0x01}, // CON, 6.00
		err:  ErrViolation, viol: ViolationReservedClass,
	},
	{
		name: "code class 7 (signalling) over UDP",
		in:   []byte{0x40, 0xe1, 0x00, 0x01}, // CON, 7.01 CSM
		err:  ErrViolation, viol: ViolationReservedClass,
	},
	{
		name: "unassigned method 0.08",
		in:   []byte{0x40, 0x08, 0x00, 0x01}, // CON, 0.08
		err:  ErrViolation, viol: ViolationUnassignedCode,
	},
	{
		name: "unassigned response 2.06",
		in:   []byte{0x60, 0x46, 0x00, 0x01}, // ACK, 2.06
		err:  ErrViolation, viol: ViolationUnassignedCode,
	},
	{
		name: "NON Empty",
		in:   []byte{0x50, 0x00, 0x00, 0x01}, // NON, 0.00
		err:  ErrViolation, viol: ViolationTypeCode,
	},
	{
		name: "ACK carrying a request",
		in:   []byte{0x60, 0x01, 0x00, 0x01}, // ACK, GET
		err:  ErrViolation, viol: ViolationTypeCode,
	},
	{
		name: "RST carrying a response",
		in:   []byte{0x70, 0x45, 0x00, 0x01}, // RST, 2.05
		err:  ErrViolation, viol: ViolationTypeCode,
	},
	{
		name: "Uri-Host of length 0",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0x30}, // delta 3 Uri-Host, len 0 (min 1)
		err:  ErrViolation, viol: ViolationOptionLength,
	},
	{
		name: "ETag of 9 bytes",
		in:   []byte{0x60, 0x45, 0x00, 0x01, 0x49, 1, 2, 3, 4, 5, 6, 7, 8, 9}, // ACK 2.05, ETag len 9 (max 8)
		err:  ErrViolation, viol: ViolationOptionLength,
	},
	{
		name: "If-None-Match with a value",
		in:   []byte{0x40, 0x03, 0x00, 0x01, 0x51, 0x00}, // PUT, delta 5 If-None-Match, len 1 (must be 0)
		err:  ErrViolation, viol: ViolationOptionLength,
	},
	{
		name: "Observe of 4 bytes",
		in:   []byte{0x50, 0x45, 0x00, 0x01, 0x64, 0, 0, 0, 1}, // NON 2.05, Observe len 4 (max 3)
		err:  ErrViolation, viol: ViolationOptionLength,
	},
	{
		name: "Content-Format twice",
		in: []byte{
			0x60, 0x45, 0x00, 0x01, // ACK 2.05
			0xc1, 0x00, // delta 12 Content-Format 0
			0x01, 0x32, // delta 0 Content-Format 50 again
		},
		err: ErrViolation, viol: ViolationRepeatedOption,
	},
	{
		name: "ETag twice in a response",
		in: []byte{
			0x60, 0x45, 0x00, 0x01, // ACK 2.05
			0x41, 0x01, // delta 4 ETag
			0x01, 0x02, // delta 0 ETag again: not allowed in a response
		},
		err: ErrViolation, viol: ViolationRepeatedOption,
	},
	{
		name: "unknown critical option 2001",
		in: []byte{
			0x40, 0x01, 0x00, 0x01, // CON GET
			0xe0, 0x06, 0xc4, // delta 269+0x06c4 = 2001 (odd: critical, unknown), len 0
		},
		err: ErrViolation, viol: ViolationUnknownCritical,
		check: func(t *testing.T, m *Message) {
			require.True(t, m.Has(2001))
			require.True(t, OptionNumber(2001).Critical())
		},
	},
	{
		name: "option number 0 reserved",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0x00}, // delta 0 → option 0, len 0
		err:  ErrViolation, viol: ViolationReservedOption,
	},
	{
		name: "option number 128 reserved",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xd0, 115}, // delta 13+115 = 128, len 0
		err:  ErrViolation, viol: ViolationReservedOption,
	},
	{
		name: "Block2 SZX 7",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xd1, 10, 0x07}, // delta 13+10 = 23 Block2, len 1: num 0, SZX 7
		err:  ErrViolation, viol: ViolationBlockSZX,
		check: func(t *testing.T, m *Message) {
			b, ok := m.Block2()
			require.True(t, ok)
			require.Equal(t, Block{SZX: 7}, b)
		},
	},
	{
		name: "Uri-Path dot segments",
		in: []byte{
			0x40, 0x01, 0x00, 0x01, // CON GET
			0xb2, '.', '.', // Uri-Path ".."
			0x01, '.', // Uri-Path "."
			0x03, 'e', 't', 'c', // Uri-Path "etc"
		},
		err: ErrViolation, viol: ViolationDotSegment,
		check: func(t *testing.T, m *Message) {
			require.Equal(t, "/.././etc", m.URIPath())
		},
	},
	{
		name: "Proxy-Uri with Uri-Path",
		in: []byte{
			0x40, 0x01, 0x00, 0x01, // CON GET
			0xb1, 'a', // Uri-Path "a"
			0xd8, 11, 'c', 'o', 'a', 'p', ':', '/', '/', 'h', // delta 13+11 = 24 → 35 Proxy-Uri, len 8
		},
		err: ErrViolation, viol: ViolationProxyURIWithURI,
	},
	{
		name: "invalid UTF-8 in Uri-Query",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xd2, 0x02, 0xc3, 0x28}, // delta 13+2 = 15 Uri-Query, len 2: bad sequence
		err:  ErrViolation, viol: ViolationInvalidUTF8,
	},
	{
		name: "valid UTF-8 in Uri-Path",
		in:   []byte{0x40, 0x01, 0x00, 0x01, 0xb2, 0xc3, 0xa9}, // Uri-Path "é"
		check: func(t *testing.T, m *Message) {
			require.Equal(t, "/é", m.URIPath())
		},
	},
	{
		name: "several violations at once",
		in: []byte{
			0x70, 0xe0, 0x00, 0x01, // RST, 7.00
			0x30,           // Uri-Host len 0
			0x00,           // Uri-Host again
			0xd1, 10, 0xff, // delta 13+10 = 23 → 26 (elective, unknown), len 1
			0x10, // delta 1 → 27 Block1, len 0
		},
		err: ErrViolation, viol: ViolationReservedClass | ViolationTypeCode | ViolationOptionLength | ViolationRepeatedOption,
	},
}

func collect(m *Message, n OptionNumber) []string {
	var out []string
	for v := range m.Values(n) {
		out = append(out, string(v))
	}
	return out
}

func TestDecodeFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			var m Message
			err := Decode(fx.in, &m)
			if fx.err == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, fx.err)
			}
			if fx.err == nil || fx.err == ErrViolation {
				require.Equal(t, fx.viol, m.Violations, "violations %s", m.Violations)
				requireViews(t, fx.in, &m)
			} else {
				require.ErrorIs(t, err, ErrMalformed)
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.LessOrEqual(t, de.Offset, len(fx.in))
			}
			if fx.check != nil {
				fx.check(t, &m)
			}
			// Decoding into a used message gives the same result.
			m2 := m
			err2 := Decode(fx.in, &m2)
			require.Equal(t, err == nil, err2 == nil)
			if err == nil || err == ErrViolation {
				requireSame(t, &m, &m2)
			}
		})
	}
}

// requireViews checks that every slice of m lies inside in (zero copy).
func requireViews(t *testing.T, in []byte, m *Message) {
	t.Helper()
	base := uintptr(unsafe.Pointer(unsafe.SliceData(in)))
	inside := func(b []byte) {
		if len(b) == 0 {
			return
		}
		off := int(uintptr(unsafe.Pointer(&b[0])) - base)
		require.GreaterOrEqual(t, off, 0)
		require.LessOrEqual(t, off+len(b), len(in))
	}
	inside(m.Token)
	inside(m.Payload)
	for _, o := range m.Options() {
		inside(o.Value)
	}
}

// view is the comparable content of a Message.
type view struct {
	Type       Type
	Code       Code
	MessageID  uint16
	Token      string
	Payload    string
	Violations Violations
	Dropped    int
	Options    []optView
}

type optView struct {
	Number OptionNumber
	Value  string
}

func viewOf(m *Message) view {
	v := view{m.Type, m.Code, m.MessageID, string(m.Token), string(m.Payload), m.Violations, m.Dropped, nil}
	for _, o := range m.Options() {
		v.Options = append(v.Options, optView{o.Number, string(o.Value)})
	}
	return v
}

func requireSame(t *testing.T, want, got *Message) {
	t.Helper()
	require.Equal(t, viewOf(want), viewOf(got))
}

// TestRoundTrip: every fixture that decodes is re-encoded byte for byte
// (each uses the shortest delta/length form) and decodes to the same values.
func TestRoundTrip(t *testing.T) {
	for _, fx := range fixtures {
		var m Message
		err := Decode(fx.in, &m)
		if err != nil && err != ErrViolation || m.Dropped > 0 {
			continue
		}
		out, err := AppendMessage(nil, &m)
		require.NoError(t, err, fx.name)
		require.Equal(t, fx.in, out, fx.name)
		var m2 Message
		err2 := Decode(out, &m2)
		require.Equal(t, m.Violations != 0, err2 == ErrViolation, fx.name)
		requireSame(t, &m, &m2)
	}
}

func TestBuilder(t *testing.T) {
	var m Message
	m.Type, m.Code, m.MessageID, m.Token = Confirmable, POST, 77, []byte("tok")
	// Added out of order: AddOption keeps wire order, repeats in insertion order.
	require.NoError(t, m.AddURIQuery("?x=1&y=2"))
	require.NoError(t, m.AddURIPath("/sensors/temp"))
	require.NoError(t, m.AddUint(ContentFormat, 60))
	require.NoError(t, m.AddUint(Block1, Block{Num: 300, More: true, SZX: 4}.Uint()))
	require.NoError(t, m.AddOption(URIHost, []byte("h")))
	require.NoError(t, m.AddUint(Size1, 70000))
	m.Payload = []byte{1, 2, 3}
	out, err := AppendMessage(nil, &m)
	require.NoError(t, err)

	var d Message
	require.NoError(t, Decode(out, &d))
	require.Equal(t, "/sensors/temp", d.URIPath())
	require.Equal(t, "x=1&y=2", d.URIQuery())
	nums := []OptionNumber{}
	for _, o := range d.Options() {
		nums = append(nums, o.Number)
	}
	require.True(t, slices.IsSorted(nums))
	b1, ok := d.Block1()
	require.True(t, ok)
	require.Equal(t, Block{Num: 300, More: true, SZX: 4, Size: 256}, b1)
	sz, _ := d.Uint(Size1)
	require.Equal(t, uint32(70000), sz)
	requireSame(t, &m, &d)

	m.Reset()
	require.Empty(t, m.Options())
	for range MaxOptions {
		require.NoError(t, m.AddOption(URIPath, nil))
	}
	require.ErrorIs(t, m.AddOption(URIPath, nil), ErrTooManyOptions)
}

func TestAppendMessageRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Message
		err  error
	}{
		{"type 4", Message{Type: 4, Code: GET}, ErrType},
		{"token 9", Message{Code: GET, Token: make([]byte, 9)}, ErrTokenLength},
		{"empty with token", Message{Code: Empty, Token: []byte{1}}, ErrEmptyMessage},
		{"empty with payload", Message{Code: Empty, Payload: []byte{1}}, ErrEmptyMessage},
	} {
		_, err := AppendMessage(nil, &tc.m)
		require.ErrorIs(t, err, tc.err, tc.name)
	}
	var m Message
	m.Code = GET
	require.NoError(t, m.AddOption(ProxyURI, make([]byte, 0xffff+270)))
	_, err := AppendMessage(nil, &m)
	require.ErrorIs(t, err, ErrOptionLength)
	// The longest value that fits decodes back.
	m.Reset()
	m.Code = GET
	require.NoError(t, m.AddOption(2000, make([]byte, 0xffff+269)))
	out, err := AppendMessage(nil, &m)
	require.NoError(t, err)
	require.NoError(t, Decode(out, &m))
	v, _ := m.Get(2000)
	require.Len(t, v, 0xffff+269)
}

func TestAllocs(t *testing.T) {
	var m Message
	for _, bi := range benchInputs {
		in := bi.in()
		allocs := testing.AllocsPerRun(100, func() {
			if err := Decode(in, &m); err != nil {
				t.Fatal(err)
			}
			_ = m.AppendURIPath(nil)
			_, _ = m.Block2()
			_, _ = m.Observe()
		})
		require.Zero(t, allocs, bi.name)
	}
	// A message with violations does not allocate either.
	viol := fixtures[len(fixtures)-1].in
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = Decode(viol, &m) }))
}

func TestNames(t *testing.T) {
	require.Equal(t, "CON", Confirmable.String())
	require.Equal(t, "NON", NonConfirmable.String())
	require.Equal(t, "ACK", Acknowledgement.String())
	require.Equal(t, "RST", Reset.String())
	require.Equal(t, "Type(4)", Type(4).String())

	for _, tc := range []struct {
		c    Code
		s    string
		name string
	}{
		{Empty, "0.00", "Empty"}, {GET, "0.01", "GET"}, {POST, "0.02", "POST"}, {PUT, "0.03", "PUT"},
		{DELETE, "0.04", "DELETE"}, {FETCH, "0.05", "FETCH"}, {PATCH, "0.06", "PATCH"}, {IPATCH, "0.07", "iPATCH"},
		{Created, "2.01", "Created"}, {Content, "2.05", "Content"}, {Continue, "2.31", "Continue"},
		{BadRequest, "4.00", "Bad Request"}, {NotFound, "4.04", "Not Found"},
		{UnsupportedContentFormat, "4.15", "Unsupported Content-Format"},
		{InternalServerError, "5.00", "Internal Server Error"}, {ProxyingNotSupported, "5.05", "Proxying Not Supported"},
		{NewCode(7, 31), "7.31", ""}, {NewCode(2, 6), "2.06", ""},
	} {
		require.Equal(t, tc.s, tc.c.String())
		require.Equal(t, tc.name, tc.c.Name(), tc.s)
		require.Equal(t, tc.name != "", tc.c.Known(), tc.s)
	}
	require.True(t, GET.IsRequest())
	require.False(t, Empty.IsRequest())
	require.True(t, Content.IsResponse())
	require.True(t, InternalServerError.IsResponse())
	require.False(t, NewCode(1, 0).IsResponse())
	require.Equal(t, uint8(4), NotFound.Class())
	require.Equal(t, uint8(4), NotFound.Detail())

	// RFC 7252 Table 4 columns C, U, N (N only meaningful for safe options).
	for _, tc := range []struct {
		n        OptionNumber
		name     string
		c, u, nk bool
	}{
		{IfMatch, "If-Match", true, false, false},
		{URIHost, "Uri-Host", true, true, false},
		{ETag, "ETag", false, false, false},
		{URIPath, "Uri-Path", true, true, false},
		{ContentFormat, "Content-Format", false, false, false},
		{MaxAge, "Max-Age", false, true, false},
		{ProxyURI, "Proxy-Uri", true, true, false},
		{Size1, "Size1", false, false, true},
		{Size2, "Size2", false, false, true},
		{Observe, "Observe", false, true, false},
		{Block2, "Block2", true, true, false},
		{NoResponse, "No-Response", false, true, false},
		{9999, "Option(9999)", true, true, false},
	} {
		require.Equal(t, tc.name, tc.n.String())
		require.Equal(t, tc.c, tc.n.Critical(), tc.name)
		require.Equal(t, tc.u, tc.n.Unsafe(), tc.name)
		require.Equal(t, tc.nk, !tc.n.Unsafe() && tc.n.NoCacheKey(), tc.name)
	}
	lo, hi, known := ProxyURI.LengthRange()
	require.Equal(t, []int{1, 1034}, []int{lo, hi})
	require.True(t, known)
	require.True(t, URIPath.Repeatable())
	require.True(t, ETag.Repeatable())
	require.False(t, ContentFormat.Repeatable())
	require.Equal(t, FormatUint, Block1.Format())
	require.Equal(t, FormatUnknown, OptionNumber(2000).Format())

	require.Equal(t, "", Violations(0).String())
	require.Equal(t, "reserved-code-class,block-szx-reserved", (ViolationReservedClass | ViolationBlockSZX).String())
	names := AllViolations.Names(nil)
	require.Len(t, names, len(violationNames))
	require.Equal(t, "invalid-utf8", names[len(names)-1])
	require.True(t, (ViolationDotSegment | ViolationTypeCode).Has(ViolationDotSegment))
}

func TestUintAndBlock(t *testing.T) {
	for _, tc := range []struct {
		in []byte
		v  uint32
		ok bool
	}{
		{nil, 0, true}, {[]byte{0}, 0, true}, {[]byte{0, 0, 0, 5}, 5, true},
		{[]byte{1, 2, 3, 4}, 0x01020304, true}, {[]byte{0, 0, 0, 0, 1}, 0, false},
	} {
		v, ok := DecodeUint(tc.in)
		require.Equal(t, tc.ok, ok)
		require.Equal(t, tc.v, v)
	}
	for _, v := range []uint32{0, 1, 255, 256, 65535, 65536, 1<<24 - 1, 1 << 24, 1<<32 - 1} {
		got, ok := DecodeUint(AppendUint(nil, v))
		require.True(t, ok)
		require.Equal(t, v, got)
	}
	require.Len(t, AppendUint(nil, 0), 0)
	require.Len(t, AppendUint(nil, 256), 2)
	for _, tc := range []struct {
		in []byte
		b  Block
		ok bool
	}{
		{nil, Block{Size: 16}, true},                                                // 0 bytes: num 0, SZX 0
		{[]byte{0x06}, Block{SZX: 6, Size: 1024}, true},                             // SZX 6
		{[]byte{0x0e}, Block{More: true, SZX: 6, Size: 1024}, true},                 // M, SZX 6
		{[]byte{0x12, 0x3a}, Block{Num: 0x123, More: true, SZX: 2, Size: 64}, true}, // 2 bytes
		{[]byte{0xff, 0xff, 0xf5}, Block{Num: 0xfffff, SZX: 5, Size: 512}, true},    // largest num
		{[]byte{0, 0, 0, 0}, Block{}, false},                                        // 4 bytes
	} {
		b, ok := ParseBlock(tc.in)
		require.Equal(t, tc.ok, ok)
		require.Equal(t, tc.b, b)
		if ok {
			back, ok := ParseBlock(AppendUint(nil, b.Uint()))
			require.True(t, ok)
			require.Equal(t, b, back)
		}
	}
}
