package flow

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"
)

func jsonLines(t testing.TB, recs []Record) []byte {
	var b bytes.Buffer
	w := NewJSONLinesWriter(&b)
	for i := range recs {
		require.NoError(t, w.Write(&recs[i]))
	}
	return b.Bytes()
}

func readAll(r io.Reader) ([]Record, error) {
	var out []Record
	err := ReadJSONLines(r, func(rec *Record) error {
		out = append(out, *rec)
		return nil
	})
	return out, err
}

// TestJSONLinesRoundTrip: what JSONLinesWriter writes, ReadJSONLines reads
// back as the same records.
func TestJSONLinesRoundTrip(t *testing.T) {
	in := append(sampleRecords(), fullRecord(), Record{})
	v6 := fullRecord()
	v6.SrcAddr, v6.DstAddr, v6.Exporter = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddrPort("[fd00::9]:4739")
	in = append(in, v6)
	for i := range in {
		in[i].Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
		in[i].Received = time.Date(2026, 11, 25, 10, 0, 1, 999999999, time.UTC)
	}
	data := jsonLines(t, in)
	require.Equal(t, len(in), bytes.Count(data, []byte("\n")), "one line per record")
	require.NotContains(t, string(data), `\u003c`, "no HTML escaping")
	got, err := readAll(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, in, got)

	// Empty and blank lines are skipped; CRLF line ends are accepted.
	data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n\n  \n"))
	got, err = readAll(iotest.OneByteReader(bytes.NewReader(data)))
	require.NoError(t, err)
	require.Equal(t, in, got)
}

func TestReadJSONLinesErrors(t *testing.T) {
	valid := string(jsonLines(t, sampleRecords()[:1]))
	stop := errors.New("stop")
	for _, tc := range []struct {
		name     string
		in       string
		max      int
		line     int   // of the *LineError; 0: none
		is       error // errors.Is target
		contains string
	}{
		{name: "malformed JSON", in: valid + "{\"mqttTopic\": 5}\n", line: 2},
		{name: "not JSON", in: "\n\nnope\n", line: 3},
		{name: "bad address", in: `{"sourceIPv4Address":"nope"}`, line: 1, contains: `address "nope"`},
		{name: "bad exporter", in: valid + `{"exporterAddress":"1.2.3.4"}`, line: 2, contains: "exporter address"},
		{name: "line too long", in: valid + `{"mqttTopic":"` + strings.Repeat("x", 2000) + `"}` + "\n" + valid, max: 1024,
			line: 2, is: ErrLineTooLong},
		{name: "line too long at the real limit", in: `{"mqttTopic":"` + strings.Repeat("x", MaxJSONLine) + `"}`,
			line: 1, is: ErrLineTooLong},
		{name: "read error after two lines", line: 3, is: iotest.ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(tc.in)
			if tc.is == iotest.ErrTimeout {
				r = iotest.TimeoutReader(strings.NewReader(valid + valid))
			}
			max := MaxJSONLine
			if tc.max > 0 {
				max = tc.max
			}
			err := readJSONLines(r, max, func(*Record) error { return nil })
			var le *LineError
			require.ErrorAs(t, err, &le)
			require.Equal(t, tc.line, le.Line)
			require.Contains(t, err.Error(), "flow: JSON line ")
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			if tc.contains != "" {
				require.ErrorContains(t, err, tc.contains)
			}
		})
	}

	t.Run("error from fn", func(t *testing.T) {
		n := 0
		err := ReadJSONLines(strings.NewReader(valid+valid+valid), func(*Record) error {
			if n++; n == 2 {
				return stop
			}
			return nil
		})
		require.Same(t, stop, err, "returned as is")
		require.Equal(t, 2, n)
	})
}

// FuzzReadJSONLines: any input reads without panic, with a bounded line,
// and fails only with a *LineError. A record read, written and read again
// is stable from then on.
func FuzzReadJSONLines(f *testing.F) {
	f.Add(jsonLines(f, append(sampleRecords(), fullRecord())))
	f.Add([]byte("{}\n\n{\"mqttTopic\": 5}\n"))
	f.Add([]byte(`{"sourceIPv4Address":"::ffff:1.2.3.4","flowStartNanoseconds":"1969-12-31T23:59:59.5+01:00","flowEndReason":"end of flow"}`))
	f.Add([]byte(`{"mqttCorrelationData":"caf\u00e9","mqttCorrelationDataRaw":"AP8=","mqttReasonCode":0,"mqttTopicFilters":["a",""]}`))
	f.Add([]byte(`{"flowStartNs":-1,"flowEndNs":9223372036854775807,"collectorReceiveTime":null,"ipfixFields":{"a":[1,{"b":null}]}}`))
	const maxLine = 1 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		var recs []Record
		err := readJSONLines(bytes.NewReader(data), maxLine, func(r *Record) error {
			recs = append(recs, *r)
			return nil
		})
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error is not a *LineError with a line: %v", err)
			}
		}
		once, err := readAll(bytes.NewReader(jsonLines(t, recs)))
		if err != nil {
			t.Fatalf("re-reading what was written: %v", err)
		}
		twice, err := readAll(bytes.NewReader(jsonLines(t, once)))
		if err != nil {
			t.Fatalf("re-reading what was written twice: %v", err)
		}
		require.Equal(t, once, twice)
	})
}
