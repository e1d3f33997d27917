package coapparse

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: arbitrary datagrams never panic, every error is classified,
// every view lies inside the input, decoding is deterministic, and a decoded
// message re-encodes (no longer than the input: the encoder uses the
// shortest forms) to bytes that decode to the same values.
func FuzzDecode(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(fx.in)
	}
	for _, bi := range benchInputs {
		f.Add(bi.in())
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var m Message
		err := Decode(in, &m)
		switch {
		case err == nil, err == ErrViolation:
		case errors.Is(err, ErrMalformed):
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			require.GreaterOrEqual(t, de.Offset, 0)
			require.LessOrEqual(t, de.Offset, len(in))
			return
		default:
			t.Fatalf("unclassified error %v", err)
		}
		require.Equal(t, err == nil, m.Violations == 0)
		require.Zero(t, m.Violations&^AllViolations)
		requireViews(t, in, &m)
		require.LessOrEqual(t, len(m.Options())+m.Dropped, len(in))

		// The inlined per-option checks of Decode agree with checkOption.
		for i, o := range m.Options() {
			repeat := i > 0 && m.Options()[i-1].Number == o.Number
			require.Zero(t, checkOption(o.Number, o.Value, repeat, m.Code)&^m.Violations, "option %d", i)
		}

		var q Message
		require.Equal(t, err, Decode(in, &q))
		requireSame(t, &m, &q)
		require.Equal(t, err, Decode(in, &m)) // into a used message
		requireSame(t, &q, &m)

		if m.Dropped > 0 {
			return // dropped options are not re-encoded
		}
		out, eerr := AppendMessage(nil, &m)
		require.NoError(t, eerr)
		require.LessOrEqual(t, len(out), len(in))
		var r Message
		require.Equal(t, err, Decode(out, &r))
		requireSame(t, &m, &r)
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecode from the fixtures
// when COAPPARSE_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("COAPPARSE_WRITE_SEEDS") != "1" {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for i, fx := range fixtures {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", fx.in)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("fixture-%02d", i)), []byte(body), 0o644))
	}
}
