package flow

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/mission-ids/mission/ipfix"
	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mqtt bool
		edit func(r *Record)
		want InvalidReason
	}{
		{"valid MQTT flow", true, func(*Record) {}, ValidRecord},
		{"no start", true, func(r *Record) { r.Start = time.Time{} }, InvalidNoStart},
		{"start in 1900", true, func(r *Record) { r.Start = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC) }, InvalidTime},
		{"start in 2500", true, func(r *Record) { r.Start, r.End = time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{} }, InvalidTime},
		{"end before start", true, func(r *Record) { r.End = r.Start.Add(-time.Second) }, InvalidTime},
		{"no end is fine", true, func(r *Record) { r.End = time.Time{} }, ValidRecord},
		{"no source", true, func(r *Record) { r.SrcAddr = netip.Addr{} }, InvalidNoSource},
		{"no destination", true, func(r *Record) { r.DstAddr = netip.Addr{} }, InvalidNoDestination},
		{"RESERVED control type", true, func(r *Record) { r.ControlType = 0 }, InvalidControlType},
		{"control type 16", true, func(r *Record) { r.ControlType = 16 }, InvalidControlType},
		{"third-party flow without control type", false, func(r *Record) { r.ControlType = 0 }, ValidRecord},
		{"third-party flow without start", false, func(r *Record) { r.Start = time.Time{} }, InvalidNoStart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleRecords()[0]
			tc.edit(&r)
			require.Equal(t, tc.want, Validate(&r, tc.mqtt))
		})
	}
	require.Len(t, InvalidReasons(), 5)
	for _, r := range InvalidReasons() {
		require.NotEqual(t, "valid", r.String())
	}
}

// hostileMessage is a template naming MQTT enterprise elements but no
// times, no addresses and a control type of 0, with one data record.
func hostileMessage(t *testing.T, pen uint32) []byte {
	reg := ipfix.NewRegistry(pen)
	tm, err := ipfix.NewTemplate(reg, 300,
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTControlType, Length: 2},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTQoS, Length: 2},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTTopic, Length: ipfix.VarLen})
	require.NoError(t, err)
	b := ipfix.MessageHeader{Version: ipfix.Version, ObservationDomainID: 1}.Append(nil)
	b = ipfix.AppendTemplateSet(b, tm)
	b = binary.BigEndian.AppendUint16(b, 300)
	b = binary.BigEndian.AppendUint16(b, 4+2+2+1+3)
	b = append(b, 0, 0, 0, 1, 3, 'a', '/', 'b')
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// TestHostileTemplateIsNotAFlow: the records that used to be stored as
// RESERVED flows starting in year 1 are rejected with a reason.
func TestHostileTemplateIsNotAFlow(t *testing.T) {
	pen := ipfix.DefaultMQTTPEN
	sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(pen)}, ipfix.SessionKey{})
	dec := NewDecoder(pen)
	n := 0
	require.NoError(t, sess.Decode(hostileMessage(t, pen), func(rec ipfix.Record) error {
		n++
		var r Record
		mqtt, err := dec.DecodeRecord(rec, &r, time.Time{})
		require.True(t, mqtt)
		require.ErrorIs(t, err, ErrInvalidRecord)
		var ie *InvalidRecordError
		require.ErrorAs(t, err, &ie)
		require.Equal(t, InvalidNoStart, ie.Reason)
		require.Equal(t, "no_start_time", ie.Reason.String())
		require.False(t, dec.Decode(rec, &r), "Decode refuses it too")
		allocs := testing.AllocsPerRun(10, func() { _, _ = dec.DecodeRecord(rec, &r, time.Time{}) })
		require.LessOrEqual(t, allocs, 1.0, "only the topic string")
		return nil
	}))
	require.Equal(t, 1, n)
}

// TestPlanCacheBounded: the decoding plans of many wide templates do not
// keep them all alive.
func TestPlanCacheBounded(t *testing.T) {
	reg := ipfix.NewRegistry(ipfix.DefaultMQTTPEN)
	dec := NewDecoder(ipfix.DefaultMQTTPEN)
	specs := make([]ipfix.FieldSpec, 500)
	for i := range specs {
		specs[i] = ipfix.FieldSpec{ID: uint16(1000 + i), Length: 1}
	}
	for range 200 {
		tm, err := ipfix.NewTemplate(reg, 256, specs...)
		require.NoError(t, err)
		require.False(t, dec.IsMQTT(tm))
		require.LessOrEqual(t, dec.planFields, maxPlanFields)
	}
}
