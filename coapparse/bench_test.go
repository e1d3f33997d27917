package coapparse

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	gocoap "github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// Benchmark inputs, built once with our encoder; both decoders see the same
// bytes (checked by TestGoCoapAgrees).

// benchGet: CON GET /a/b/c with a 4-byte token.
func benchGet() []byte {
	var m Message
	m.Type, m.Code, m.MessageID, m.Token = Confirmable, GET, 0x1234, []byte{1, 2, 3, 4}
	must(m.AddURIPath("/a/b/c"))
	return mustEncode(&m)
}

// benchContent: ACK 2.05 with Content-Format 50, an ETag, Block2 (num 1,
// more, 64 bytes) and a 64-byte payload.
func benchContent() []byte {
	var m Message
	m.Type, m.Code, m.MessageID, m.Token = Acknowledgement, Content, 0x1234, []byte{1, 2, 3, 4}
	must(m.AddUint(ContentFormat, 50))
	must(m.AddOption(ETag, []byte{0xde, 0xad, 0xbe, 0xef}))
	must(m.AddUint(Block2, Block{Num: 1, More: true, SZX: 2}.Uint()))
	m.Payload = bytes.Repeat([]byte{'x'}, 64)
	return mustEncode(&m)
}

// benchNotify: NON 2.05 Observe notification, sequence 0x1234, text/plain,
// Max-Age 60, a short payload.
func benchNotify() []byte {
	var m Message
	m.Type, m.Code, m.MessageID, m.Token = NonConfirmable, Content, 0x4321, []byte{0xca, 0xfe}
	must(m.AddUint(Observe, 0x1234))
	must(m.AddUint(ContentFormat, 0))
	must(m.AddUint(MaxAge, 60))
	m.Payload = []byte("Oct 14 12:00:00")
	return mustEncode(&m)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func mustEncode(m *Message) []byte {
	b, err := AppendMessage(nil, m)
	must(err)
	return b
}

var benchInputs = []struct {
	name string
	in   func() []byte
}{
	{"get-uri-path-3", benchGet},
	{"content-etag-block2-64B", benchContent},
	{"observe-notification", benchNotify},
}

func benchOurs(b *testing.B, in []byte) {
	var m Message
	if err := Decode(in, &m); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := Decode(in, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// benchGoCoap decodes with go-coap's UDP coder into a reused message with a
// preallocated option slice: its allocation-free path.
func benchGoCoap(b *testing.B, in []byte) {
	opts := make(gocoap.Options, 0, MaxOptions)
	m := gocoap.Message{Options: opts}
	if _, err := coder.DefaultCoder.Decode(in, &m); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.Options = opts
		if _, err := coder.DefaultCoder.Decode(in, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bi := range benchInputs {
		in := bi.in()
		b.Run(bi.name+"/ours", func(b *testing.B) { benchOurs(b, in) })
		b.Run(bi.name+"/gocoap", func(b *testing.B) { benchGoCoap(b, in) })
	}
}

// TestGoCoapAgrees: go-coap's decoder reads the benchmark inputs and every
// fixture that decodes without violation to the same values as ours.
func TestGoCoapAgrees(t *testing.T) {
	ins := [][]byte{}
	for _, bi := range benchInputs {
		ins = append(ins, bi.in())
	}
	for _, fx := range fixtures {
		if fx.err == nil {
			ins = append(ins, fx.in)
		}
	}
	for _, in := range ins {
		var m Message
		require.NoError(t, Decode(in, &m))
		g := gocoap.Message{Options: make(gocoap.Options, 0, 64)}
		n, err := coder.DefaultCoder.Decode(in, &g)
		require.NoError(t, err, "% x", in)
		require.Equal(t, len(in), n)
		require.Equal(t, int(m.Type), int(g.Type))
		require.Equal(t, int(m.Code), int(g.Code))
		require.Equal(t, int32(m.MessageID), g.MessageID)
		require.Equal(t, m.Token, []byte(g.Token))
		require.Equal(t, m.Payload, g.Payload)
		var ours, theirs []optView
		for _, o := range m.Options() {
			ours = append(ours, optView{o.Number, string(o.Value)})
		}
		for _, o := range g.Options {
			theirs = append(theirs, optView{OptionNumber(o.ID), string(o.Value)})
		}
		if m.Dropped == 0 {
			require.Equal(t, theirs, ours, "% x", in)
		} else {
			require.Equal(t, theirs[:MaxOptions], ours)
		}
	}
}
