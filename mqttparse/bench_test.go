package mqttparse

import (
	"bytes"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2/packets"
)

// Benchmark inputs, built once with the test-only mochi encoder so both
// decoders see identical bytes.
func benchPublish5() []byte {
	pk := mochi.Packet{
		FixedHeader:     mochi.FixedHeader{Type: mochi.Publish, Qos: 2},
		ProtocolVersion: 5,
		TopicName:       "factory/line1/sensor/temperature",
		PacketID:        4242,
		Payload:         bytes.Repeat([]byte("x"), 64),
		Mods:            mochi.Mods{AllowResponseInfo: true},
		Properties: mochi.Properties{
			CorrelationData: []byte("0123456789abcdef"),
			User: []mochi.UserProperty{
				{Key: "traceparent", Val: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
				{Key: "site", Val: "plant-7"},
			},
			TopicAlias: 3, TopicAliasFlag: true,
		},
	}
	var b bytes.Buffer
	if err := pk.PublishEncode(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func benchPublish311() []byte {
	pk := mochi.Packet{
		FixedHeader:     mochi.FixedHeader{Type: mochi.Publish},
		ProtocolVersion: 4,
		TopicName:       "factory/line1/sensor/temperature",
		Payload:         bytes.Repeat([]byte("x"), 64),
	}
	var b bytes.Buffer
	if err := pk.PublishEncode(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func benchConnect() []byte {
	pk := mochi.Packet{
		FixedHeader:     mochi.FixedHeader{Type: mochi.Connect},
		ProtocolVersion: 5,
		Connect: mochi.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60, ClientIdentifier: "sensor-0042",
			UsernameFlag: true, Username: []byte("probe"), PasswordFlag: true, Password: []byte("secret"),
			WillFlag: true, WillTopic: "status/sensor-0042", WillPayload: []byte("offline"), WillQos: 1,
		},
		Properties: mochi.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true, ReceiveMaximum: 100},
	}
	var b bytes.Buffer
	if err := pk.ConnectEncode(&b); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func benchOurs(b *testing.B, in []byte, v Version) {
	var p Packet
	if _, err := Decode(in, v, &p); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Decode(in, v, &p); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMochi decodes the same bytes the way mochi's server does: fixed
// header byte, remaining length, then the type's decoder on the body.
func benchMochi(b *testing.B, in []byte, v byte) {
	decode := func() error {
		pk := mochi.Packet{ProtocolVersion: v}
		if err := pk.FixedHeader.Decode(in[0]); err != nil {
			return err
		}
		rl, bu, err := mochi.DecodeLength(bytes.NewBuffer(in[1:]))
		if err != nil {
			return err
		}
		pk.FixedHeader.Remaining = rl
		body := in[1+bu:]
		if pk.FixedHeader.Type == mochi.Connect {
			return pk.ConnectDecode(body)
		}
		return pk.PublishDecode(body)
	}
	if err := decode(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := decode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	p5, p311, c := benchPublish5(), benchPublish311(), benchConnect()
	b.Run("publish-v5-qos2-props/ours", func(b *testing.B) { benchOurs(b, p5, Version5) })
	b.Run("publish-v5-qos2-props/mochi", func(b *testing.B) { benchMochi(b, p5, 5) })
	b.Run("publish-v311-qos0/ours", func(b *testing.B) { benchOurs(b, p311, Version311) })
	b.Run("publish-v311-qos0/mochi", func(b *testing.B) { benchMochi(b, p311, 4) })
	b.Run("connect-v5/ours", func(b *testing.B) { benchOurs(b, c, Version5) })
	b.Run("connect-v5/mochi", func(b *testing.B) { benchMochi(b, c, 5) })
}

// BenchmarkFramer: many PUBLISH packets per chunk, framed and decoded.
func BenchmarkFramerPublish5(b *testing.B) {
	one := benchPublish5()
	chunk := bytes.Repeat(one, 64)
	f := NewFramer(0)
	var p Packet
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		f.Feed(chunk)
		for {
			pkt, err := f.Next()
			if err != nil {
				b.Fatal(err)
			}
			if pkt == nil {
				break
			}
			if _, err := Decode(pkt, Version5, &p); err != nil {
				b.Fatal(err)
			}
		}
	}
}
