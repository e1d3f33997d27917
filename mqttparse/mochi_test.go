package mqttparse

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// Differential tests against mochi-mqtt's packets package, used only in
// tests: random well-formed packets are encoded by mochi, decoded by mochi
// and by us, and every field must agree.

var runes = []rune("abcXYZ019/_-. éß中😀")

func rstr(r *rand.Rand, max int) string {
	n := r.IntN(max + 1)
	s := make([]rune, n)
	for i := range s {
		s[i] = runes[r.IntN(len(runes))]
	}
	return string(s)
}

func rtopic(r *rand.Rand) string {
	for {
		if s := rstr(r, 30); s != "" {
			return s
		}
	}
}

func rbytes(r *rand.Rand, max int) []byte {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

func rprops(r *rand.Rand) mochi.Properties {
	var p mochi.Properties
	maybe := func() bool { return r.IntN(3) == 0 }
	if maybe() {
		p.CorrelationData = append(rbytes(r, 20), 1)
	}
	if maybe() {
		p.SubscriptionIdentifier = []int{1 + r.IntN(268435454)}
		if maybe() {
			p.SubscriptionIdentifier = append(p.SubscriptionIdentifier, 1+r.IntN(127))
		}
	}
	if maybe() {
		p.AuthenticationData = append(rbytes(r, 10), 2)
	}
	for range r.IntN(4) {
		p.User = append(p.User, mochi.UserProperty{Key: rstr(r, 8), Val: rstr(r, 12)})
	}
	str := func(s *string) {
		if maybe() {
			*s = rtopic(r)
		}
	}
	str(&p.ContentType)
	str(&p.ResponseTopic)
	str(&p.AssignedClientID)
	str(&p.AuthenticationMethod)
	str(&p.ResponseInfo)
	str(&p.ServerReference)
	str(&p.ReasonString)
	u32 := func(v *uint32) {
		if maybe() {
			*v = 1 + r.Uint32N(1<<31)
		}
	}
	u32(&p.MessageExpiryInterval)
	u32(&p.WillDelayInterval)
	u32(&p.MaximumPacketSize)
	u16 := func(v *uint16) {
		if maybe() {
			*v = 1 + uint16(r.UintN(65535))
		}
	}
	u16(&p.ReceiveMaximum)
	u16(&p.TopicAliasMaximum)
	if maybe() {
		p.SessionExpiryInterval, p.SessionExpiryIntervalFlag = r.Uint32(), true
	}
	if maybe() {
		p.ServerKeepAlive, p.ServerKeepAliveFlag = uint16(r.UintN(65536)), true
	}
	if maybe() {
		p.TopicAlias, p.TopicAliasFlag = 1+uint16(r.UintN(65535)), true
	}
	b := func(v *byte, f *bool) {
		if maybe() {
			*v, *f = byte(r.IntN(2)), true
		}
	}
	b(&p.PayloadFormat, &p.PayloadFormatFlag)
	b(&p.RequestProblemInfo, &p.RequestProblemInfoFlag)
	b(&p.MaximumQos, &p.MaximumQosFlag)
	b(&p.RetainAvailable, &p.RetainAvailableFlag)
	b(&p.WildcardSubAvailable, &p.WildcardSubAvailableFlag)
	b(&p.SubIDAvailable, &p.SubIDAvailableFlag)
	b(&p.SharedSubAvailable, &p.SharedSubAvailableFlag)
	if maybe() {
		p.RequestResponseInfo = 1
	}
	return p
}

// randomMochi builds a random well-formed packet of type typ.
func randomMochi(r *rand.Rand, typ byte, ver byte) mochi.Packet {
	pk := mochi.Packet{FixedHeader: mochi.FixedHeader{Type: typ}, ProtocolVersion: ver,
		Mods: mochi.Mods{AllowResponseInfo: true}, PacketID: 1 + uint16(r.UintN(65535))}
	if ver == 5 {
		pk.Properties = rprops(r)
		if typ != mochi.Publish && len(pk.Properties.SubscriptionIdentifier) > 1 {
			pk.Properties.SubscriptionIdentifier = pk.Properties.SubscriptionIdentifier[:1] // once only outside PUBLISH
		}
	}
	switch typ {
	case mochi.Connect:
		c := &pk.Connect
		c.ProtocolName = []byte("MQTT")
		if ver == 3 {
			c.ProtocolName = []byte("MQIsdp")
		}
		c.Clean = r.IntN(2) == 0
		c.Keepalive = uint16(r.UintN(65536))
		c.ClientIdentifier = rstr(r, 23)
		if r.IntN(2) == 0 {
			c.WillFlag, c.WillTopic, c.WillPayload = true, rtopic(r), rbytes(r, 30)
			c.WillQos, c.WillRetain = byte(r.IntN(3)), r.IntN(2) == 0
			if ver == 5 {
				c.WillProperties = rprops(r)
			}
		}
		if r.IntN(2) == 0 {
			c.UsernameFlag, c.Username = true, []byte(rstr(r, 10))
			if r.IntN(2) == 0 {
				c.PasswordFlag, c.Password = true, rbytes(r, 12)
			}
		}
	case mochi.Connack:
		pk.SessionPresent = r.IntN(2) == 0
		pk.ReasonCode = byte(r.IntN(6))
		if ver == 5 {
			pk.ReasonCode = []byte{0x00, 0x80, 0x85, 0x87, 0x9F}[r.IntN(5)]
		}
	case mochi.Publish:
		pk.FixedHeader.Qos = byte(r.IntN(3))
		pk.FixedHeader.Retain = r.IntN(2) == 0
		pk.FixedHeader.Dup = pk.FixedHeader.Qos > 0 && r.IntN(2) == 0
		if pk.FixedHeader.Qos == 0 {
			pk.PacketID = 0
		}
		pk.TopicName = rtopic(r)
		pk.Payload = rbytes(r, 300)
	case mochi.Puback, mochi.Pubrec, mochi.Pubrel, mochi.Pubcomp:
		if typ == mochi.Pubrel {
			pk.FixedHeader.Qos = 1
		}
		if ver == 5 && r.IntN(2) == 0 {
			pk.ReasonCode = 0x80
			if typ == mochi.Pubrel || typ == mochi.Pubcomp {
				pk.ReasonCode = 0x92
			}
		}
	case mochi.Subscribe, mochi.Unsubscribe:
		pk.FixedHeader.Qos = 1
		for range 1 + r.IntN(4) {
			s := mochi.Subscription{Filter: rtopic(r) + "/#"}
			if typ == mochi.Subscribe {
				s.Qos = byte(r.IntN(3))
				if ver == 5 {
					s.NoLocal, s.RetainAsPublished, s.RetainHandling = r.IntN(2) == 0, r.IntN(2) == 0, byte(r.IntN(3))
				}
			}
			pk.Filters = append(pk.Filters, s)
		}
	case mochi.Suback, mochi.Unsuback:
		codes := []byte{0, 1, 2, 0x80}
		if ver == 5 && typ == mochi.Unsuback {
			codes = []byte{0, 0x11, 0x80, 0x87}
		}
		for range 1 + r.IntN(5) {
			pk.ReasonCodes = append(pk.ReasonCodes, codes[r.IntN(len(codes))])
		}
	case mochi.Disconnect:
		if ver == 5 {
			pk.ReasonCode = []byte{0x00, 0x04, 0x8E, 0x9C}[r.IntN(4)]
		}
	case mochi.Auth:
		pk.ReasonCode = []byte{0x00, 0x18, 0x19}[r.IntN(3)]
	}
	return pk
}

func mochiEncode(t testing.TB, pk *mochi.Packet) []byte {
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case mochi.Connect:
		err = pk.ConnectEncode(&b)
	case mochi.Connack:
		err = pk.ConnackEncode(&b)
	case mochi.Publish:
		err = pk.PublishEncode(&b)
	case mochi.Puback:
		err = pk.PubackEncode(&b)
	case mochi.Pubrec:
		err = pk.PubrecEncode(&b)
	case mochi.Pubrel:
		err = pk.PubrelEncode(&b)
	case mochi.Pubcomp:
		err = pk.PubcompEncode(&b)
	case mochi.Subscribe:
		err = pk.SubscribeEncode(&b)
	case mochi.Suback:
		err = pk.SubackEncode(&b)
	case mochi.Unsubscribe:
		err = pk.UnsubscribeEncode(&b)
	case mochi.Unsuback:
		err = pk.UnsubackEncode(&b)
	case mochi.Pingreq:
		err = pk.PingreqEncode(&b)
	case mochi.Pingresp:
		err = pk.PingrespEncode(&b)
	case mochi.Disconnect:
		err = pk.DisconnectEncode(&b)
	case mochi.Auth:
		err = pk.AuthEncode(&b)
	}
	require.NoError(t, err)
	return b.Bytes()
}

// mochiDecode decodes a whole packet the way mochi's server does.
func mochiDecode(in []byte, ver byte) (mochi.Packet, error) {
	pk := mochi.Packet{ProtocolVersion: ver}
	if err := pk.FixedHeader.Decode(in[0]); err != nil {
		return pk, err
	}
	rl, bu, err := mochi.DecodeLength(bytes.NewBuffer(in[1:]))
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = rl
	body := in[1+bu:]
	switch pk.FixedHeader.Type {
	case mochi.Connect:
		err = pk.ConnectDecode(body)
	case mochi.Connack:
		err = pk.ConnackDecode(body)
	case mochi.Publish:
		err = pk.PublishDecode(body)
	case mochi.Puback:
		err = pk.PubackDecode(body)
	case mochi.Pubrec:
		err = pk.PubrecDecode(body)
	case mochi.Pubrel:
		err = pk.PubrelDecode(body)
	case mochi.Pubcomp:
		err = pk.PubcompDecode(body)
	case mochi.Subscribe:
		err = pk.SubscribeDecode(body)
	case mochi.Suback:
		err = pk.SubackDecode(body)
	case mochi.Unsubscribe:
		err = pk.UnsubscribeDecode(body)
	case mochi.Unsuback:
		err = pk.UnsubackDecode(body)
	case mochi.Disconnect:
		err = pk.DisconnectDecode(body)
	case mochi.Auth:
		err = pk.AuthDecode(body)
	}
	return pk, err
}

func bs(b []byte) string { return string(b) }

func compareProps(t *testing.T, where string, m *mochi.Properties, p *Properties) {
	t.Helper()
	require.Equal(t, string(m.CorrelationData), bs(p.CorrelationData), where+" correlation data")
	require.Equal(t, string(m.AuthenticationData), bs(p.AuthenticationData), where+" authentication data")
	var ids []int
	for _, v := range p.SubscriptionIdentifiers {
		ids = append(ids, int(v))
	}
	require.Equal(t, len(m.SubscriptionIdentifier), len(ids), where+" subscription ids")
	if len(ids) > 0 {
		require.Equal(t, m.SubscriptionIdentifier, ids, where+" subscription ids")
	}
	require.Equal(t, len(m.User), len(p.User), where+" user properties")
	for i, u := range m.User {
		require.Equal(t, u.Key, bs(p.User[i].Key), where)
		require.Equal(t, u.Val, bs(p.User[i].Value), where)
	}
	for _, c := range []struct {
		name string
		m    string
		o    []byte
	}{{"content type", m.ContentType, p.ContentType}, {"response topic", m.ResponseTopic, p.ResponseTopic},
		{"assigned client id", m.AssignedClientID, p.AssignedClientIdentifier}, {"auth method", m.AuthenticationMethod, p.AuthenticationMethod},
		{"response info", m.ResponseInfo, p.ResponseInformation}, {"server reference", m.ServerReference, p.ServerReference},
		{"reason string", m.ReasonString, p.ReasonString}} {
		require.Equal(t, c.m, bs(c.o), where+" "+c.name)
	}
	require.Equal(t, m.MessageExpiryInterval, p.MessageExpiryInterval, where)
	require.Equal(t, m.SessionExpiryInterval, p.SessionExpiryInterval, where)
	require.Equal(t, m.SessionExpiryIntervalFlag, p.Has(PropSessionExpiryInterval), where)
	require.Equal(t, m.WillDelayInterval, p.WillDelayInterval, where)
	require.Equal(t, m.MaximumPacketSize, p.MaximumPacketSize, where)
	require.Equal(t, m.ServerKeepAlive, p.ServerKeepAlive, where)
	require.Equal(t, m.ReceiveMaximum, p.ReceiveMaximum, where)
	require.Equal(t, m.TopicAliasMaximum, p.TopicAliasMaximum, where)
	require.Equal(t, m.TopicAlias, p.TopicAlias, where)
	require.Equal(t, m.TopicAliasFlag, p.Has(PropTopicAlias), where)
	require.Equal(t, m.PayloadFormat, p.PayloadFormatIndicator, where)
	require.Equal(t, m.PayloadFormatFlag, p.Has(PropPayloadFormatIndicator), where)
	require.Equal(t, m.RequestProblemInfo, p.RequestProblemInformation, where)
	require.Equal(t, m.RequestResponseInfo, p.RequestResponseInformation, where)
	require.Equal(t, m.MaximumQos, p.MaximumQoS, where)
	require.Equal(t, m.MaximumQosFlag, p.Has(PropMaximumQoS), where)
	require.Equal(t, m.RetainAvailable, p.RetainAvailable, where)
	require.Equal(t, m.WildcardSubAvailable, p.WildcardSubscriptionAvailable, where)
	require.Equal(t, m.SubIDAvailable, p.SubscriptionIdentifierAvailable, where)
	require.Equal(t, m.SharedSubAvailable, p.SharedSubscriptionAvailable, where)
}

// compareMochi checks every field mochi decoded against ours.
func compareMochi(t *testing.T, in []byte, ver byte) {
	t.Helper()
	m, err := mochiDecode(in, ver)
	require.NoError(t, err)
	var p Packet
	n, err := Decode(in, Version(ver), &p)
	require.NoError(t, err, "violations %s in % x", p.Violations, in)
	require.Equal(t, len(in), n)
	where := mochi.PacketNames[m.FixedHeader.Type] + " v" + strconv.Itoa(int(ver))
	require.Equal(t, m.FixedHeader.Type, byte(p.Header.Type), where)
	require.Equal(t, m.FixedHeader.Remaining, p.Header.RemainingLength, where)
	require.Equal(t, m.FixedHeader.Qos, (p.Header.Flags>>1)&3, where) // mochi reads QoS bits for PUBREL/SUBSCRIBE/UNSUBSCRIBE too
	require.Equal(t, m.FixedHeader.Retain, p.Header.Retain, where)
	require.Equal(t, m.FixedHeader.Dup, p.Header.Dup, where)
	require.Equal(t, m.PacketID, p.PacketID, where)
	switch p.Header.Type {
	case Connect:
		mc, c := &m.Connect, &p.Connect
		require.Equal(t, string(mc.ProtocolName), bs(c.ProtocolName), where)
		require.Equal(t, m.ProtocolVersion, c.ProtocolLevel, where)
		require.Equal(t, mc.Clean, c.CleanStart, where)
		require.Equal(t, mc.Keepalive, c.KeepAlive, where)
		require.Equal(t, mc.ClientIdentifier, bs(c.ClientID), where)
		require.Equal(t, mc.WillFlag, c.WillFlag, where)
		require.Equal(t, mc.WillQos, c.WillQoS, where)
		require.Equal(t, mc.WillRetain, c.WillRetain, where)
		require.Equal(t, mc.WillTopic, bs(c.WillTopic), where)
		require.Equal(t, string(mc.WillPayload), bs(c.WillPayload), where)
		require.Equal(t, mc.UsernameFlag, c.UsernameFlag, where)
		require.Equal(t, string(mc.Username), bs(c.Username), where)
		require.Equal(t, mc.PasswordFlag, c.PasswordFlag, where)
		require.Equal(t, len(mc.Password), c.PasswordLen, where)
		compareProps(t, where+" will", &mc.WillProperties, &c.WillProperties)
	case Connack:
		require.Equal(t, m.SessionPresent, p.SessionPresent, where)
		require.Equal(t, m.ReasonCode, byte(p.ReasonCode), where)
	case Publish:
		require.Equal(t, m.TopicName, bs(p.Topic), where)
		require.Equal(t, string(m.Payload), bs(p.Payload), where)
	case Puback, Pubrec, Pubrel, Pubcomp, Disconnect, Auth:
		require.Equal(t, m.ReasonCode, byte(p.ReasonCode), where)
	case Subscribe, Unsubscribe:
		require.Equal(t, len(m.Filters), len(p.Filters), where)
		for i, f := range m.Filters {
			s := p.Filters[i]
			require.Equal(t, f.Filter, bs(s.Filter), where)
			require.Equal(t, f.Qos, s.QoS, where)
			require.Equal(t, f.NoLocal, s.NoLocal, where)
			require.Equal(t, f.RetainAsPublished, s.RetainAsPublished, where)
			require.Equal(t, f.RetainHandling, s.RetainHandling, where)
		}
	case Suback, Unsuback:
		var codes []byte
		for _, c := range p.ReasonCodes {
			codes = append(codes, byte(c))
		}
		require.Equal(t, string(m.ReasonCodes), string(codes), where)
	}
	compareProps(t, where, &m.Properties, &p.Properties)
}

func TestMochiDifferentialRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		ver := []byte{3, 4, 5}[r.IntN(3)]
		typ := byte(1 + r.IntN(15))
		if typ == mochi.Auth && ver != 5 {
			continue
		}
		pk := randomMochi(r, typ, ver)
		in := mochiEncode(t, &pk)
		compareMochi(t, in, ver)
	}
}

// FuzzMochiPublish: fuzzer-chosen fields, encoded by mochi, decoded by both.
func FuzzMochiPublish(f *testing.F) {
	f.Add("a/b", []byte("payload"), byte(1), true, uint16(7), []byte("corr"), "traceparent", "00-01", uint16(3), byte(5))
	f.Add("t", []byte{}, byte(0), false, uint16(1), []byte{}, "", "", uint16(0), byte(4))
	f.Fuzz(func(t *testing.T, topic string, payload []byte, qos byte, retain bool, id uint16, corr []byte, k, v string, alias uint16, ver byte) {
		if topic == "" || !validUTF8NoNUL([]byte(topic)) || !validUTF8NoNUL([]byte(k)) || !validUTF8NoNUL([]byte(v)) ||
			bytes.ContainsAny([]byte(topic), "+#") || len(topic) > 65535 || len(k) > 65535 || len(v) > 65535 || len(corr) > 65535 {
			return
		}
		qos %= 3
		if qos > 0 && id == 0 {
			id = 1
		}
		if qos == 0 {
			id = 0
		}
		ver = 3 + ver%3
		pk := mochi.Packet{FixedHeader: mochi.FixedHeader{Type: mochi.Publish, Qos: qos, Retain: retain},
			ProtocolVersion: ver, TopicName: topic, Payload: payload, PacketID: id, Mods: mochi.Mods{AllowResponseInfo: true}}
		if ver == 5 {
			pk.Properties.CorrelationData = corr
			if k != "" || v != "" {
				pk.Properties.User = []mochi.UserProperty{{Key: k, Val: v}}
			}
			pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = alias, alias > 0
		}
		compareMochi(t, mochiEncode(t, &pk), ver)
	})
}

// TestMochiBugsReproduced documents two bugs of mochi-mqtt's decoder on the
// same bytes our fixtures reject.
func TestMochiBugsReproduced(t *testing.T) {
	// PUBLISH declaring 1 byte of properties: mochi reads TopicAlias=7 from the payload.
	in := []byte{0x30, 7, 0, 1, 't', 1, 0x23, 0, 7}
	m, err := mochiDecode(in, 5)
	require.NoError(t, err)
	require.Equal(t, uint16(7), m.Properties.TopicAlias, "mochi bug no longer reproduces")
	var p Packet
	_, err = Decode(in, Version5, &p)
	require.ErrorIs(t, err, ErrTruncated)
	require.ErrorIs(t, err, ErrMalformed)
	// 6-byte remaining length: mochi's DecodeLength accepts it.
	_, _, err = mochi.DecodeLength(bytes.NewBuffer([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}))
	require.NoError(t, err, "mochi bug no longer reproduces")
	_, err = Decode([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, Version5, &p)
	require.ErrorIs(t, err, ErrRemainingLength)
}
