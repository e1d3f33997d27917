package ipfix

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// setIDs lists the set ids of a message.
func setIDs(t *testing.T, m []byte) []uint16 {
	t.Helper()
	var ids []uint16
	for off := HeaderLen; off < len(m); {
		h, next, err := parseSetHeader(m, off)
		require.NoError(t, err)
		ids = append(ids, h.ID)
		off = next
	}
	return ids
}

func TestBuilderPacksAndNumbers(t *testing.T) {
	clk := newClock()
	tm := mqttTemplate(t, nil, 256)
	flows := make([]mqttFlow, 50)
	for i := range flows {
		flows[i] = sampleFlow(i)
	}
	msgs := buildMessages(t, BuilderConfig{MaxMessageSize: 512, ObservationDomainID: 3, Now: clk.Now}, tm, flows)
	require.Greater(t, len(msgs), 5)
	s := NewSession(Config{}, testKey)
	seq := uint32(0)
	total := 0
	for i, m := range msgs {
		require.LessOrEqual(t, len(m), 512)
		h, err := ParseHeader(m)
		require.NoError(t, err)
		require.Equal(t, int(h.Length), len(m))
		require.Equal(t, seq, h.SequenceNumber, "message %d", i)
		require.Equal(t, uint32(clk.t.Unix()), h.ExportTime)
		require.Equal(t, uint32(3), h.ObservationDomainID)
		n := 0
		require.NoError(t, s.Decode(m, func(r Record) error {
			require.Equal(t, flows[total], decodeFlow(t, r))
			n++
			total++
			return nil
		}))
		seq += uint32(n)
	}
	require.Equal(t, 50, total)
	require.Equal(t, []uint16{2, 256}, setIDs(t, msgs[0]))
	require.Equal(t, []uint16{256}, setIDs(t, msgs[1]), "UDP: no refresh before the interval")
	require.Zero(t, s.Counters().RecordsLost)
}

func TestBuilderSequenceWraps(t *testing.T) {
	tm := mqttTemplate(t, nil, 256)
	var hs []MessageHeader
	b := NewBuilder(BuilderConfig{}, func(m []byte) error {
		h, err := ParseHeader(m)
		require.NoError(t, err)
		hs = append(hs, h)
		return nil
	})
	b.seq = 0xFFFFFFFF
	enc := NewRecordEncoder(tm)
	f := sampleFlow(1)
	encodeFlow(enc, tm, &f)
	for range 2 {
		require.NoError(t, b.Add(tm, mustBytes(t, enc)))
	}
	require.NoError(t, b.Flush())
	require.NoError(t, b.Add(tm, mustBytes(t, enc)))
	require.NoError(t, b.Flush())
	require.Equal(t, uint32(0xFFFFFFFF), hs[0].SequenceNumber)
	require.Equal(t, uint32(1), hs[1].SequenceNumber)
	require.Equal(t, uint32(2), b.SequenceNumber())
}

func TestBuilderUDPTemplateRefresh(t *testing.T) {
	clk := newClock()
	tm := mqttTemplate(t, nil, 256)
	var msgs [][]byte
	b := NewBuilder(BuilderConfig{TemplateRefresh: time.Minute, TemplateRefreshMessages: 3, Now: clk.Now},
		func(m []byte) error { msgs = append(msgs, append([]byte(nil), m...)); return nil })
	enc := NewRecordEncoder(tm)
	f := sampleFlow(1)
	encodeFlow(enc, tm, &f)
	rec := mustBytes(t, enc)
	send := func() {
		require.NoError(t, b.Add(tm, rec))
		require.NoError(t, b.Flush())
	}
	send() // template
	send()
	clk.Advance(61 * time.Second)
	send() // refresh by time
	send()
	send()
	send()
	send() // refresh by count: 3 messages without it
	var withTemplate []int
	for i, m := range msgs {
		if setIDs(t, m)[0] == SetIDTemplate {
			withTemplate = append(withTemplate, i)
		}
	}
	require.Equal(t, []int{0, 2, 6}, withTemplate)
}

func TestBuilderTCPTemplatePolicy(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	tm := mqttTemplate(t, reg, 256)
	var msgs [][]byte
	clk := newClock()
	b := NewBuilder(BuilderConfig{Transport: TCP, Now: clk.Now},
		func(m []byte) error { msgs = append(msgs, append([]byte(nil), m...)); return nil })
	enc := NewRecordEncoder(tm)
	f := sampleFlow(1)
	encodeFlow(enc, tm, &f)
	rec := mustBytes(t, enc)
	for range 3 {
		require.NoError(t, b.Add(tm, rec))
		require.NoError(t, b.Flush())
		clk.Advance(time.Hour)
	}
	require.Equal(t, []uint16{2, 256}, setIDs(t, msgs[0]))
	require.Equal(t, []uint16{256}, setIDs(t, msgs[1]))
	require.Equal(t, []uint16{256}, setIDs(t, msgs[2]))

	// A changed definition: withdraw, then the new template.
	tm2, err := NewTemplate(reg, 256, FieldSpec{ID: 7, Length: 2})
	require.NoError(t, err)
	enc2 := NewRecordEncoder(tm2)
	enc2.PutUint(1883)
	require.NoError(t, b.Add(tm2, mustBytes(t, enc2)))
	require.NoError(t, b.Flush())
	require.Equal(t, []uint16{2, 2, 256}, setIDs(t, msgs[3]))

	// A new connection gets the template again.
	b.Reconnect()
	require.NoError(t, b.Add(tm2, mustBytes(t, enc2)))
	require.NoError(t, b.Flush())
	require.Equal(t, []uint16{2, 256}, setIDs(t, msgs[4]))

	// Explicit withdrawal.
	require.NoError(t, b.WithdrawTemplate(256))
	require.NoError(t, b.Flush())
	require.Equal(t, []uint16{2}, setIDs(t, msgs[5]))

	// A TCP collector session follows all of it.
	s := NewSession(Config{Registry: reg}, SessionKey{Transport: TCP})
	var ports []uint64
	for _, m := range msgs[:4] {
		require.NoError(t, s.Decode(m, func(r Record) error {
			if v, ok := r.Get(0, 7); ok {
				ports = append(ports, v.Uint())
			}
			return nil
		}))
	}
	require.Equal(t, []uint64{40001, 40001, 40001, 1883}, ports)
	require.NoError(t, s.Decode(msgs[5], nop))
	require.Equal(t, 0, s.NumTemplates())
}

func TestBuilderSendTemplatesAndTooLarge(t *testing.T) {
	tm := mqttTemplate(t, nil, 256)
	var msgs [][]byte
	b := NewBuilder(BuilderConfig{MaxMessageSize: 200}, func(m []byte) error {
		msgs = append(msgs, append([]byte(nil), m...))
		return nil
	})
	require.NoError(t, b.AddTemplate(tm))
	require.NoError(t, b.SendTemplates())
	require.NoError(t, b.Flush())
	require.Len(t, msgs, 1)
	require.Equal(t, []uint16{2}, setIDs(t, msgs[0]))
	enc := NewRecordEncoder(tm)
	f := sampleFlow(1)
	f.Topic = string(make([]byte, 300))
	encodeFlow(enc, tm, &f)
	require.ErrorIs(t, b.Add(tm, mustBytes(t, enc)), ErrRecordTooLarge)
	require.ErrorIs(t, b.Add(tm, []byte{1}), ErrFieldMismatch)
	require.Equal(t, 100, UDPMessageSize(148, true))
	require.Equal(t, 1472, UDPMessageSize(1500, false))
}

func TestEncodeZeroAllocs(t *testing.T) {
	tm := mqttTemplate(t, nil, 256)
	b := NewBuilder(BuilderConfig{Transport: UDP}, func([]byte) error { return nil })
	enc := NewRecordEncoder(tm)
	f := sampleFlow(1)
	allocs := testing.AllocsPerRun(1000, func() {
		encodeFlow(enc, tm, &f)
		rec, err := enc.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Add(tm, rec); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
	s := NewSession(Config{}, testKey)
	var m []byte
	b2 := NewBuilder(BuilderConfig{}, func(x []byte) error { m = append(m[:0], x...); return nil })
	require.NoError(t, b2.Add(tm, mustBytes(t, enc)))
	require.NoError(t, b2.Flush())
	require.NoError(t, s.Decode(m, nop))
	binary.BigEndian.PutUint32(m[8:], 1) // keep sequence tracking quiet
	allocs = testing.AllocsPerRun(1000, func() {
		_ = s.Decode(m, func(r Record) error {
			_ = r.Value(14).Text()
			v, _ := r.Get(0, 156)
			_ = v.Time()
			return nil
		})
	})
	require.Zero(t, allocs, "steady-state decode")
}
