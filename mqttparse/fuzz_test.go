package mqttparse

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecode: arbitrary bytes under every version never panic, never claim
// more than the input, classify every error, and decode deterministically.
func FuzzDecode(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(fx.in, byte(fx.ver))
	}
	f.Fuzz(func(t *testing.T, in []byte, ver byte) {
		v := Version(ver % 6)
		var p, q Packet
		n, err := Decode(in, v, &p)
		if n < 0 || n > len(in) {
			t.Fatalf("n=%d for %d bytes", n, len(in))
		}
		switch {
		case err == nil, errors.Is(err, ErrViolation):
			if n == 0 {
				t.Fatal("decoded packet with n == 0")
			}
			if (err == nil) != (p.Violations == 0) {
				t.Fatalf("err %v with violations %s", err, p.Violations)
			}
		case errors.Is(err, ErrIncomplete), errors.Is(err, ErrMalformed):
		default:
			t.Fatalf("unclassified error %v", err)
		}
		// The same bytes into a fresh and into a used packet give the same result.
		n2, err2 := Decode(in, v, &q)
		n3, err3 := Decode(in, v, &p)
		if n2 != n || n3 != n || !sameErr(err, err2) || !sameErr(err, err3) {
			t.Fatalf("not deterministic: %d %v / %d %v / %d %v", n, err, n2, err2, n3, err3)
		}
		if err == nil || errors.Is(err, ErrViolation) {
			require.Equal(t, q, p)
			if v == Version31 || v == Version311 {
				// The 3.x PUBLISH fast path agrees with the general decoder.
				var g Packet
				g.Header = p.Header
				gerr := decodeWith(in[p.Header.HeaderLen:n], v, &g)
				require.Equal(t, err, gerr)
				require.Equal(t, p, g)
			}
		}
	})
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// FuzzFramer: any split of any stream yields the same packets as one chunk.
func FuzzFramer(f *testing.F) {
	all := []byte{}
	for _, fx := range fixtures {
		all = append(all, fx.in...)
	}
	f.Add(all, uint16(7), uint16(100))
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01, 0xC0, 0x00}, uint16(1), uint16(64))
	f.Add(bytes.Repeat([]byte{0xC0, 0}, 10), uint16(3), uint16(2))
	f.Fuzz(func(t *testing.T, in []byte, step uint16, max uint16) {
		frame := func(chunk int) (pkts [][]byte, final error) {
			fr := NewFramer(int(max%512) + 2)
			for i := 0; i < len(in); i += chunk {
				fr.Feed(in[i:min(i+chunk, len(in))])
				for {
					pkt, err := fr.Next()
					if errors.Is(err, ErrTooLarge) {
						pkts = append(pkts, []byte("skipped"))
						continue
					}
					if err != nil {
						require.ErrorIs(t, err, ErrMalformed)
						return pkts, err
					}
					if pkt == nil {
						break
					}
					if len(pkt) > int(max%512)+2 {
						t.Fatalf("packet of %d bytes over the maximum", len(pkt))
					}
					pkts = append(pkts, bytes.Clone(pkt))
				}
			}
			return pkts, nil
		}
		want, wantErr := frame(len(in) + 1)
		got, gotErr := frame(int(step%64) + 1)
		require.Equal(t, want, got)
		require.Equal(t, wantErr == nil, gotErr == nil)
	})
}

// FuzzFindSync: never panics, offset inside the input, and the chain it
// found really starts with a plausible fixed header.
func FuzzFindSync(f *testing.F) {
	all := []byte{}
	for _, fx := range fixtures {
		if fx.err == nil {
			all = append(all, fx.in...)
		}
	}
	f.Add(all[3:], uint8(2))
	f.Add([]byte{0xff, 0xC0, 0, 0xD0, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, minChain uint8) {
		off, ok := FindSync(in, int(minChain%20), 0)
		if !ok {
			return
		}
		require.Less(t, off, len(in))
		h, err := ParseFixedHeader(in[off:])
		if err == nil {
			require.True(t, plausible(h, DefaultMaxPacketSize))
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecode from the fixtures
// when MQTTPARSE_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("MQTTPARSE_WRITE_SEEDS") != "1" {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for i, fx := range fixtures {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbyte(%q)\n", fx.in, rune(fx.ver))
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("fixture-%02d", i)), []byte(body), 0o644))
	}
}
