package collector

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/ipfix"
)

// softflowdStyleFile is an IPFIX file as softflowd writes one: an options
// template and record carrying systemInitTimeMilliseconds, then flows timed
// in milliseconds of system uptime (flowStart/EndSysUpTime); followed by
// the probe's own MQTT flows (records(20)). It returns the file and the
// system init time.
func softflowdStyleFile(t *testing.T) ([]byte, time.Time) {
	t.Helper()
	var file bytes.Buffer
	fw := ipfix.NewFileWriter(&file)
	b := ipfix.NewBuilder(ipfix.BuilderConfig{ObservationDomainID: 3, Transport: ipfix.File}, fw.WriteMessage)
	reg := ipfix.NewRegistry(ipfix.DefaultMQTTPEN)
	opt, err := ipfix.NewOptionsTemplate(reg, 256, 1,
		ipfix.FieldSpec{ID: 144, Length: 4}, // scope: exportingProcessId
		ipfix.FieldSpec{ID: 160, Length: 8}, // systemInitTimeMilliseconds
	)
	require.NoError(t, err)
	data, err := ipfix.NewTemplate(reg, 257,
		ipfix.FieldSpec{ID: 8, Length: 4},  // sourceIPv4Address
		ipfix.FieldSpec{ID: 12, Length: 4}, // destinationIPv4Address
		ipfix.FieldSpec{ID: 7, Length: 2},  // sourceTransportPort
		ipfix.FieldSpec{ID: 11, Length: 2}, // destinationTransportPort
		ipfix.FieldSpec{ID: 4, Length: 1},  // protocolIdentifier
		ipfix.FieldSpec{ID: 22, Length: 4}, // flowStartSysUpTime
		ipfix.FieldSpec{ID: 21, Length: 4}, // flowEndSysUpTime
		ipfix.FieldSpec{ID: 2, Length: 8},  // packetDeltaCount
		ipfix.FieldSpec{ID: 1, Length: 8},  // octetDeltaCount
	)
	require.NoError(t, err)
	sysInit := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	enc := ipfix.NewRecordEncoder(opt)
	enc.PutUint(1)
	enc.PutTime(sysInit)
	rec, err := enc.Bytes()
	require.NoError(t, err)
	require.NoError(t, b.Add(opt, rec))
	for i := range 5 {
		enc.Reset(data)
		enc.PutIP(netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}))
		enc.PutIP(netip.MustParseAddr("10.1.0.100"))
		enc.PutUint(uint64(40000 + i))
		enc.PutUint(1883)
		enc.PutUint(6)
		enc.PutUint(uint64(3_600_000 + i*1000)) // an hour after boot, one flow a second
		enc.PutUint(uint64(3_600_000 + i*1000 + 250))
		enc.PutUint(uint64(i + 2))
		enc.PutUint(uint64(100 * (i + 2)))
		rec, err := enc.Bytes()
		require.NoError(t, err)
		require.NoError(t, b.Add(data, rec))
	}
	require.NoError(t, b.Flush())

	// The probe's MQTT flows, in another observation domain.
	menc, err := flow.NewEncoder(ipfix.DefaultMQTTPEN)
	require.NoError(t, err)
	mb := ipfix.NewBuilder(ipfix.BuilderConfig{ObservationDomainID: 7, Transport: ipfix.File}, fw.WriteMessage)
	for _, tm := range menc.Templates() {
		require.NoError(t, mb.AddTemplate(tm))
	}
	in := records(20)
	for i := range in {
		tm, rec, err := menc.Encode(&in[i])
		require.NoError(t, err)
		require.NoError(t, mb.Add(tm, rec))
	}
	require.NoError(t, mb.Flush())
	return file.Bytes(), sysInit
}

// TestReadRecordsMatchesCollector: ReadRecords gives the records the
// collector stores for the same file, options records and system-uptime
// times included.
func TestReadRecordsMatchesCollector(t *testing.T) {
	file, sysInit := softflowdStyleFile(t)
	ctx := context.Background()

	sink := &memSink{}
	c := New(Config{Logger: zerolog.Nop()}, sink)
	require.NoError(t, c.ReadIPFIX(ctx, bytes.NewReader(file)))
	docs := sink.snapshot()
	require.Len(t, docs, 25)
	tot := c.Stats()
	require.EqualValues(t, 1, tot.OptionsRecords)
	require.EqualValues(t, 20, tot.MQTTFlows)
	require.EqualValues(t, 5, tot.OtherFlows)

	var recs []flow.Record
	var mqtt []bool
	require.NoError(t, ReadRecords(ctx, bytes.NewReader(file), Config{}, func(r *flow.Record, m bool) error {
		recs = append(recs, *r)
		mqtt = append(mqtt, m)
		return nil
	}))
	require.Len(t, recs, len(docs))
	want := records(20)
	for i := range recs {
		d := recs[i].ToDocument()
		stored := docs[i]
		require.NotNil(t, stored.CollectorReceiveTime)
		stored.CollectorReceiveTime, d.CollectorReceiveTime = nil, nil
		if i < 5 {
			require.False(t, mqtt[i], "third-party flow %d", i)
			require.NotEmpty(t, stored.IPFIXFields)
			stored.IPFIXFields = nil
			d.MQTTControlTypeName, d.MQTTCorrelationSource = "", ""
			start := sysInit.Add(time.Hour + time.Duration(i)*time.Second)
			require.Equal(t, start, recs[i].Start, "system uptime resolved with the options record's init time")
			require.Equal(t, start.Add(250*time.Millisecond), recs[i].End)
			require.Equal(t, netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}), recs[i].SrcAddr)
			require.EqualValues(t, i+2, recs[i].Packets)
			require.EqualValues(t, 3, recs[i].ObservationDomain)
		} else {
			require.True(t, mqtt[i], "MQTT flow %d", i)
			w := want[i-5]
			w.ObservationDomain = 7
			got := recs[i]
			got.Received = time.Time{}
			require.Equal(t, w, got)
		}
		require.Equal(t, stored, d, "record %d as the collector stores it", i)
	}

	t.Run("error from fn", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := ReadRecords(ctx, bytes.NewReader(file), Config{}, func(*flow.Record, bool) error {
			if n++; n == 3 {
				return stop
			}
			return nil
		})
		require.Same(t, stop, err)
		require.Equal(t, 3, n)
	})

	t.Run("truncated file", func(t *testing.T) {
		n := 0
		err := ReadRecords(ctx, bytes.NewReader(file[:len(file)-3]), Config{}, func(*flow.Record, bool) error {
			n++
			return nil
		})
		require.ErrorIs(t, err, ipfix.ErrIncomplete)
		require.Positive(t, n, "the flows before the cut")
	})

	t.Run("canceled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := ReadRecords(cctx, bytes.NewReader(file), Config{}, func(*flow.Record, bool) error { return nil })
		require.ErrorIs(t, err, context.Canceled)
	})
}
