package mqttparse

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Midstream pickup: no CONNECT seen, VersionUnknown.
func TestVersionUnknown(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Version
		guessed bool
		err     error
		check   func(t *testing.T, p *Packet)
	}{
		{
			name: "5.0 publish with consistent properties", want: Version5, guessed: true,
			in: []byte{
				0x30, 11, // PUBLISH QoS 0
				0, 1, 't', // topic
				5,                      // properties length
				0x09, 0, 2, 0xca, 0xfe, // Correlation Data
				'p', 'q', // payload
			},
			check: func(t *testing.T, p *Packet) {
				require.Equal(t, []byte{0xca, 0xfe}, p.Properties.CorrelationData)
				require.Equal(t, "pq", string(p.Payload))
			},
		},
		{
			name: "3.1.1 publish with text payload", want: Version311, guessed: true,
			in: []byte{
				0x30, 8, // PUBLISH QoS 0
				0, 1, 't', // topic
				'h', 'e', 'l', 'l', 'o', // payload: 'h' = 104 would be a property length past the end
			},
			check: func(t *testing.T, p *Packet) { require.Equal(t, "hello", string(p.Payload)) },
		},
		{
			name: "3.1.1 publish with json payload", want: Version311, guessed: true,
			in: []byte{
				0x30, 7, // PUBLISH QoS 0
				0, 1, 't', // topic
				2, 0x22, 0, 0, // payload: as 5.0 it would be Topic Alias Maximum (not allowed in PUBLISH)
			},
			check: func(t *testing.T, p *Packet) { require.Len(t, p.Payload, 4) },
		},
		{
			name: "3.1.1 publish with empty payload", want: Version311, guessed: true,
			in: []byte{0x32, 5, 0, 1, 't', 0, 9}, // PUBLISH QoS 1, topic t, id 9, no payload
			check: func(t *testing.T, p *Packet) {
				require.Equal(t, uint16(9), p.PacketID)
				require.Empty(t, p.Payload)
			},
		},
		{
			// Documented ambiguity: 3.1.1 payload starting with 0x00 reads as 5.0.
			name: "ambiguous payload starting with 0", want: Version5, guessed: true,
			in:    []byte{0x30, 5, 0, 1, 't', 0, 'x'},
			check: func(t *testing.T, p *Packet) { require.Equal(t, "x", string(p.Payload)) },
		},
		{
			name: "3.1.1 suback with 0x80", want: Version311, guessed: true,
			// As 5.0: property length 0, codes 1, 0x80 → valid too; so 5.0 wins.
			// Use a code list whose first byte is not a valid property block.
			in: []byte{0x90, 4, 0, 1, 0x01, 0x80}, // SUBACK id 1, codes 1, 0x80 (5.0: property length 1, id 0x80 unknown)
			check: func(t *testing.T, p *Packet) {
				require.Equal(t, []ReasonCode{1, 0x80}, p.ReasonCodes)
			},
		},
		{
			name: "connect is self-describing", want: Version5, guessed: false,
			in: []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 0, 0},
		},
		{
			name: "malformed in both keeps 3.1.1 error", want: Version311, guessed: true, err: ErrTruncated,
			in: []byte{0x30, 3, 0, 5, 't'},
		},
		{
			name: "5.0 violation beats 3.1.1 malformed", want: Version5, guessed: true, err: ErrViolation,
			in: []byte{
				0x82, 7, // SUBSCRIBE
				0, 1, // packet id
				0,         // 5.0: properties length 0 (3.1.1: first byte of an empty filter's length)
				0, 1, 'f', // filter f (3.1.1: options 1, then a filter length 'f',0xC0 past the end)
				0xC0, // options with reserved bits: a 5.0 violation
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			n, err := Decode(tc.in, VersionUnknown, &p)
			if tc.err == nil {
				require.NoError(t, err, p.Violations.String())
			} else {
				require.ErrorIs(t, err, tc.err)
			}
			require.Equal(t, len(tc.in), n)
			require.Equal(t, tc.want, p.Version)
			require.Equal(t, tc.guessed, p.VersionGuessed)
			if tc.check != nil {
				tc.check(t, &p)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	require.Equal(t, "PUBLISH", Publish.String())
	require.Equal(t, "3.1.1", Version311.String())
	require.Equal(t, "Correlation Data", PropCorrelationData.String())
	require.Equal(t, TypeBinary, PropCorrelationData.Type())
	require.True(t, PropTopicAlias.AllowedIn(Publish))
	require.False(t, PropTopicAlias.AllowedIn(Connect))
	require.True(t, PropWillDelayInterval.AllowedInWill())
	require.Equal(t, "Packet Identifier not found", PacketIdentifierNotFound.String())
	require.Equal(t, "reason code 0x3", ReasonCode(3).String())
	require.Equal(t, "dup-qos0,topic", (ViolationDupQoS0 | ViolationTopic).String())
	n := 0
	for id := 0; id < 256; id++ {
		if PropertyID(id).Type() != 0 {
			n++
		}
	}
	require.Equal(t, 27, n, "all MQTT 5.0 properties")
}

func TestCaps(t *testing.T) {
	// A 5.0 PUBLISH with more user properties than the cap: read, not kept.
	var props []byte
	for i := 0; i < MaxUserProperties+5; i++ {
		props = append(props, 0x26, 0, 1, 'k', 0, 1, 'v') // User Property k=v
	}
	body := append([]byte{0, 1, 't'}, byte(len(props)&0x7f|0x80), byte(len(props)>>7))
	body = append(body, props...)
	pkt := append([]byte{0x30, byte(len(body)&0x7f | 0x80), byte(len(body) >> 7)}, body...)
	var p Packet
	_, err := Decode(pkt, Version5, &p)
	require.NoError(t, err)
	require.True(t, p.Truncated)
	require.Len(t, p.Properties.User, MaxUserProperties)
}
