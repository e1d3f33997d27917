package mqttparse

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// streamOf concatenates the well-formed fixtures (success or violation) into one byte stream.
func streamOf(t *testing.T) ([]byte, [][]byte) {
	t.Helper()
	var all []byte
	var pkts [][]byte
	for _, f := range fixtures {
		if f.err == nil || f.err == ErrViolation {
			all = append(all, f.in...)
			pkts = append(pkts, f.in)
		}
	}
	require.Greater(t, len(pkts), 30)
	return all, pkts
}

// drain feeds chunks and collects copies of all packets.
func drain(t *testing.T, f *Framer, chunks [][]byte) [][]byte {
	t.Helper()
	var got [][]byte
	for _, c := range chunks {
		f.Feed(c)
		for {
			pkt, err := f.Next()
			if err != nil {
				require.ErrorIs(t, err, ErrTooLarge)
				continue
			}
			if pkt == nil {
				break
			}
			got = append(got, bytes.Clone(pkt))
		}
	}
	return got
}

func TestFramerEverySplit(t *testing.T) {
	all, pkts := streamOf(t)
	// One chunk: everything at once, zero copy.
	f := NewFramer(0)
	require.Equal(t, pkts, drain(t, f, [][]byte{all}))
	require.Equal(t, uint64(len(pkts)), f.Stats().Packets)
	require.Zero(t, f.Buffered())
	// Two chunks split at every offset.
	for i := 0; i <= len(all); i++ {
		f := NewFramer(0)
		a := bytes.Clone(all[:i])
		b := bytes.Clone(all[i:])
		require.Equal(t, pkts, drain(t, f, [][]byte{a, b}), "split at %d", i)
	}
	// One byte at a time, with the chunk buffer reused (as gopacket does).
	f = NewFramer(0)
	buf := make([]byte, 1)
	var got [][]byte
	for _, c := range all {
		buf[0] = c
		f.Feed(buf)
		for {
			pkt, err := f.Next()
			require.NoError(t, err)
			if pkt == nil {
				break
			}
			got = append(got, bytes.Clone(pkt))
		}
	}
	require.Equal(t, pkts, got)
}

func TestFramerFeedWithUnreadBytes(t *testing.T) {
	all, pkts := streamOf(t)
	f := NewFramer(0)
	f.Feed(all[:len(all)/2])
	first, err := f.Next() // read one packet only, then feed again
	require.NoError(t, err)
	first = bytes.Clone(first)
	got := append([][]byte{first}, drain(t, f, [][]byte{all[len(all)/2:]})...)
	require.Equal(t, pkts, got)
}

func TestFramerTooLargeSkippedInSync(t *testing.T) {
	big := append([]byte{0x30, 0x80, 0x08}, make([]byte, 1024)...) // PUBLISH, remaining length 1024
	big[3], big[4], big[5] = 0, 1, 't'                             // topic "t"
	small := []byte{0xC0, 0}                                       // PINGREQ
	stream := append(append(append([]byte{}, small...), big...), small...)
	for split := 0; split <= len(stream); split++ {
		f := NewFramer(100)
		var got [][]byte
		var skipped []*TooLargeError
		for _, c := range [][]byte{stream[:split], stream[split:]} {
			f.Feed(c)
			for {
				pkt, err := f.Next()
				if err != nil {
					var tl *TooLargeError
					require.ErrorAs(t, err, &tl)
					require.ErrorIs(t, err, ErrTooLarge)
					skipped = append(skipped, tl)
					continue
				}
				if pkt == nil {
					break
				}
				got = append(got, bytes.Clone(pkt))
			}
		}
		require.Equal(t, [][]byte{small, small}, got, "split %d", split)
		require.Len(t, skipped, 1)
		require.Equal(t, Publish, skipped[0].Header.Type)
		require.Equal(t, int64(2), skipped[0].StreamOffset)
		st := f.Stats()
		require.Equal(t, uint64(1), st.Skipped)
		require.Equal(t, uint64(len(big)), st.SkippedBytes)
		require.LessOrEqual(t, cap(f.pend), 100, "oversized packet must not be buffered")
	}
}

func TestFramerBrokenIsSticky(t *testing.T) {
	f := NewFramer(0)
	f.Feed([]byte{0xC0, 0, 0x30, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xC0, 0})
	pkt, err := f.Next()
	require.NoError(t, err)
	require.Equal(t, []byte{0xC0, 0}, pkt)
	_, err = f.Next()
	require.ErrorIs(t, err, ErrMalformed)
	require.ErrorIs(t, err, ErrRemainingLength)
	var fe *FramingError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, int64(2), fe.StreamOffset)
	f.Feed([]byte{0xC0, 0})
	_, err = f.Next()
	require.ErrorIs(t, err, ErrMalformed, "sticky until Reset")
	f.Reset(100)
	f.Feed([]byte{0xD0, 0})
	pkt, err = f.Next()
	require.NoError(t, err)
	require.Equal(t, []byte{0xD0, 0}, pkt)
}

func TestFramerBrokenAcrossChunks(t *testing.T) {
	f := NewFramer(0)
	for _, c := range []byte{0x30, 0x80, 0x80, 0x80} {
		f.Feed([]byte{c})
		pkt, err := f.Next()
		require.NoError(t, err)
		require.Nil(t, pkt)
	}
	f.Feed([]byte{0x80})
	_, err := f.Next()
	require.ErrorIs(t, err, ErrRemainingLength)
}

func TestFindSync(t *testing.T) {
	all, pkts := streamOf(t)
	// Drop the non-sync-plausible fixtures (violations) for a clean chain.
	var clean []byte
	var starts []int
	for _, f := range fixtures {
		if f.err == nil && !bytes.Equal(f.in[:2], []byte{0xC0, 0x80}) {
			starts = append(starts, len(clean))
			clean = append(clean, f.in...)
		}
	}
	_ = all
	_ = pkts
	tests := []struct {
		name string
		in   []byte
		off  int
		ok   bool
	}{
		{"aligned", clean, 0, true},
		{"garbage prefix", append([]byte{0xff, 0x00, 0x42, 0x17}, clean...), 4, true},
		{"cut inside first packet", clean[starts[1]-3:], 3, true},
		{"two pings", []byte{0xC0, 0, 0xD0, 0}, 0, true},
		{"one ping is not proof", []byte{0xC0, 0}, 0, false},
		{"ping then partial publish header", []byte{0xC0, 0, 0xD0, 0, 0x32}, 0, true},
		{"bad flags", []byte{0xC1, 0, 0xD0, 0}, 0, false},
		{"reserved type", []byte{0x00, 0, 0x00, 0}, 0, false},
		{"chain does not end on a boundary", []byte{0xC0, 0, 0xD0, 0, 0x40, 2, 0}, 0, true},
		{"non-minimal length", []byte{0xC0, 0x80, 0, 0xD0, 0}, 0, false},
		{"empty", nil, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			off, ok := FindSync(tc.in, 2, 0)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, tc.off, off)
			}
		})
	}
	// After the sync point, a framer reads whole packets from there on.
	off, ok := FindSync(clean[starts[3]+1:], 2, 0)
	require.True(t, ok)
	f := NewFramer(0)
	f.Feed(clean[starts[3]+1+off:])
	var p Packet
	for {
		pkt, err := f.Next()
		require.NoError(t, err)
		if pkt == nil {
			break
		}
		_, err = Decode(pkt, VersionUnknown, &p)
		require.NotErrorIs(t, err, ErrIncomplete)
	}
	require.Zero(t, f.Buffered())
}

func TestFramerRemaining(t *testing.T) {
	// PUBLISH QoS 0, topic "a/b", 20-byte payload: 2 + 2 + 3 + 20 = 27 bytes.
	pkt := append([]byte{0x30, 25, 0, 3, 'a', '/', 'b'}, make([]byte, 20)...)
	f := NewFramer(0)
	_, ok := f.Remaining()
	require.False(t, ok, "nothing unfinished")
	f.Feed(pkt[:1])
	p, err := f.Next()
	require.NoError(t, err)
	require.Nil(t, p)
	_, ok = f.Remaining()
	require.False(t, ok, "fixed header incomplete")
	f.Feed(pkt[1:10])
	require.Equal(t, 10, len(pkt[:10]))
	_, ok = f.Remaining()
	require.False(t, ok, "unread bytes: Next first")
	p, err = f.Next()
	require.NoError(t, err)
	require.Nil(t, p)
	n, ok := f.Remaining()
	require.True(t, ok)
	require.Equal(t, 17, n)
	f.Feed(pkt[10:])
	p, err = f.Next()
	require.NoError(t, err)
	require.Equal(t, pkt, p)
	_, ok = f.Remaining()
	require.False(t, ok, "packet complete")

	// An oversized packet being skipped.
	big := NewFramer(16)
	big.Feed(pkt[:12])
	_, err = big.Next()
	require.ErrorIs(t, err, ErrTooLarge)
	p, err = big.Next()
	require.NoError(t, err)
	require.Nil(t, p)
	n, ok = big.Remaining()
	require.True(t, ok)
	require.Equal(t, 15, n)
}
