package ipfix

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFileRoundTrip(t *testing.T) {
	tm := mqttTemplate(t, nil, 256)
	var buf bytes.Buffer
	fw := NewFileWriter(&buf)
	b := NewBuilder(BuilderConfig{Transport: File, MaxMessageSize: 1000}, fw.WriteMessage)
	enc := NewRecordEncoder(tm)
	flows := make([]mqttFlow, 200)
	for i := range flows {
		flows[i] = sampleFlow(i)
		encodeFlow(enc, tm, &flows[i])
		require.NoError(t, b.Add(tm, mustBytes(t, enc)))
	}
	require.NoError(t, b.Flush())

	s := NewSession(Config{}, SessionKey{Transport: File})
	i := 0
	require.NoError(t, DecodeFile(bytes.NewReader(buf.Bytes()), s, func(r Record) error {
		require.Equal(t, flows[i], decodeFlow(t, r))
		i++
		return nil
	}))
	require.Equal(t, 200, i)

	// Streaming: one message at a time, buffer bounded by the message size.
	fr := NewFileReader(bytes.NewReader(buf.Bytes()))
	msgs := 0
	for {
		m, err := fr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.LessOrEqual(t, len(m), 1000)
		msgs++
	}
	require.Greater(t, msgs, 10)
	require.LessOrEqual(t, cap(fr.buf), 4096)

	// Truncated file.
	err := DecodeFile(bytes.NewReader(buf.Bytes()[:buf.Len()-5]), NewSession(Config{}, SessionKey{Transport: File}), nop)
	require.ErrorIs(t, err, ErrIncomplete)
	err = DecodeFile(bytes.NewReader(buf.Bytes()[:2]), NewSession(Config{}, SessionKey{Transport: File}), nop)
	require.ErrorIs(t, err, ErrIncomplete)
	// Not IPFIX.
	err = DecodeFile(bytes.NewReader([]byte("GET / HTTP/1.1\r\n")), NewSession(Config{}, SessionKey{Transport: File}), nop)
	require.ErrorIs(t, err, ErrMalformed)
	// Write checks the header.
	require.ErrorIs(t, fw.WriteMessage([]byte{0, 10, 0, 20, 0}), ErrMalformed)
	// Read errors are passed on.
	boom := errors.New("disk on fire")
	_, err = NewFileReader(io.MultiReader(bytes.NewReader([]byte{0, 10}), errReader{boom})).Next()
	require.ErrorIs(t, err, boom)
	require.ErrorIs(t, err, ErrIncomplete)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
