package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

func encodedDocs(t *testing.T, from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		d := testDoc(from + i)
		d.ID = DocumentID(&d)
		raw, err := AppendBSON(nil, &d)
		require.NoError(t, err)
		out[i] = raw
	}
	return out
}

// replayAll reads every record through the replay path, removing segments.
func replayAll(t *testing.T, s *spool) [][]byte {
	var all [][]byte
	for {
		seg, err := s.oldest()
		require.NoError(t, err)
		if seg == nil {
			return all
		}
		r, err := openSegmentReader(seg)
		require.NoError(t, err)
		for !r.done() {
			recs := r.next(7)
			all = append(all, recs...)
			r.advance(len(recs))
			s.replayed(seg, int64(len(recs)))
		}
		require.NoError(t, s.remove(seg))
	}
}

func TestSpoolRoundTripAcrossSegmentsAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir, 1<<20, zerolog.Nop()) // 256 KiB segments
	require.NoError(t, err)
	docs := encodedDocs(t, 0, 1000)
	n, err := s.append(docs[:600])
	require.NoError(t, err)
	require.Equal(t, 600, n)
	n, err = s.append(docs[600:])
	require.NoError(t, err)
	require.Equal(t, 400, n)
	st := s.stats()
	require.EqualValues(t, 1000, st.records)
	require.Greater(t, st.segments, 1, "rotates at the segment size")

	_, err = openSpool(dir, 1<<20, zerolog.Nop())
	require.ErrorIs(t, err, ErrDirInUse, "one process per spool")
	require.NoError(t, s.close())

	s, err = openSpool(dir, 1<<20, zerolog.Nop())
	require.NoError(t, err)
	require.EqualValues(t, 1000, s.stats().records)
	require.Equal(t, st.bytes, s.stats().bytes)
	got := replayAll(t, s)
	require.Equal(t, docs, got, "same records, same order")
	st = s.stats()
	require.Zero(t, st.records)
	require.Zero(t, st.bytes)
	require.NoError(t, s.close())
	left, err := filepath.Glob(filepath.Join(dir, "seg-*"))
	require.NoError(t, err)
	require.Empty(t, left, "replayed segments are deleted")
}

func TestSpoolBoundIsExact(t *testing.T) {
	docs := encodedDocs(t, 0, 500)
	per := int64(spoolRecHeader + len(docs[0])) // all test docs have one size ± a few bytes
	maxBytes := int64(len(spoolMagic)) + 40*per
	s, err := openSpool(t.TempDir(), maxBytes, zerolog.Nop())
	require.NoError(t, err)
	defer s.close()
	total := 0
	for i := 0; i < len(docs); i += 13 {
		n, err := s.append(docs[i:min(i+13, len(docs))])
		require.NoError(t, err)
		total += n
	}
	st := s.stats()
	require.EqualValues(t, total, st.records)
	require.LessOrEqual(t, st.bytes, maxBytes)
	require.InDelta(t, 40, total, 1, "fills up to the bound, then refuses")
	require.Equal(t, docs[:total], replayAll(t, s))
	n, err := s.append(docs[:5])
	require.NoError(t, err)
	require.Equal(t, 5, n, "room again after replay")
}

func TestSpoolTornTail(t *testing.T) {
	docs := encodedDocs(t, 0, 10)
	for name, damage := range map[string]func(t *testing.T, path string){
		"truncated last record": func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, fi.Size()-17))
		},
		"truncated inside a record header": func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, fi.Size()-int64(len(docs[9]))-3))
		},
		"flipped byte in the last record": func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			b[len(b)-40] ^= 0xff
			require.NoError(t, os.WriteFile(path, b, 0o640))
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openSpool(dir, 1<<20, zerolog.Nop())
			require.NoError(t, err)
			n, err := s.append(docs)
			require.NoError(t, err)
			require.Equal(t, 10, n)
			require.NoError(t, s.close())
			segs, err := filepath.Glob(filepath.Join(dir, "seg-*"))
			require.NoError(t, err)
			require.Len(t, segs, 1)
			damage(t, segs[0])

			s, err = openSpool(dir, 1<<20, zerolog.Nop())
			require.NoError(t, err)
			defer s.close()
			st := s.stats()
			require.EqualValues(t, 9, st.records)
			require.EqualValues(t, 1, st.torn)
			require.Equal(t, docs[:9], replayAll(t, s))

			// New appends go to a new segment, never after the torn tail.
			n, err = s.append(docs[:2])
			require.NoError(t, err)
			require.Equal(t, 2, n)
			require.Equal(t, docs[:2], replayAll(t, s))
		})
	}
}

func TestSpoolIgnoresForeignFilesAndEmptySegments(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("hello"), 0o640))
	require.NoError(t, os.WriteFile(filepath.Join(dir, segmentName(3)), nil, 0o640)) // crashed at create
	s, err := openSpool(dir, 1<<20, zerolog.Nop())
	require.NoError(t, err)
	defer s.close()
	require.Zero(t, s.stats().records)
	require.Zero(t, s.stats().torn)
	docs := encodedDocs(t, 0, 3)
	_, err = s.append(docs)
	require.NoError(t, err)
	require.Equal(t, docs, replayAll(t, s))
	_, err = os.Stat(filepath.Join(dir, segmentName(4)))
	require.ErrorIs(t, err, os.ErrNotExist, "removed after replay; numbering continues after the old segments")
}
