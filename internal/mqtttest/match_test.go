package mqtttest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/mission-ids/mission/flow"
)

func TestMatchRecording(t *testing.T) {
	doc := func(sport, packetID uint16, startMs float64) flow.Document {
		return flow.Document{SourceIPv4Address: "10.0.0.1", DestinationIPv4Address: "10.0.0.2",
			SourceTransportPort: sport, DestinationTransportPort: 1883, Protocol: 6,
			MQTTControlTypeName: "PUBLISH", MQTTPacketID: packetID, FlowStartNs: int64(startMs * 1e6)}
	}
	type counts struct{ matched, wide, lost, extra, dup int }
	for _, tc := range []struct {
		name        string
		ref, stored []flow.Document
		want        counts
		worst       time.Duration
	}{
		{"same", []flow.Document{doc(1, 1, 0), doc(1, 2, 10)}, []flow.Document{doc(1, 2, 10.5), doc(1, 1, 0.2)},
			counts{matched: 2}, 500 * time.Microsecond},
		{"stamped 6 ms apart", []flow.Document{doc(1, 1, 0), doc(1, 1, 1000)}, []flow.Document{doc(1, 1, -6.3), doc(1, 1, 1000)},
			counts{matched: 1, wide: 1}, 6300 * time.Microsecond},
		{"lost and extra beyond the wide tolerance", []flow.Document{doc(1, 1, 0)}, []flow.Document{doc(1, 1, 150)},
			counts{lost: 1, extra: 1}, 0},
		{"other key", []flow.Document{doc(1, 1, 0)}, []flow.Document{doc(2, 1, 0)}, counts{lost: 1, extra: 1}, 0},
		{"duplicate", []flow.Document{doc(1, 1, 0)}, []flow.Document{doc(1, 1, 0), doc(1, 1, 0)},
			counts{matched: 1, extra: 1, dup: 1}, 0},
		{"nothing stored", []flow.Document{doc(1, 1, 0), doc(1, 2, 0)}, nil, counts{lost: 2}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := MatchRecording(tc.ref, tc.stored, 2*time.Millisecond, WideTolerance)
			assert.Equal(t, tc.want, counts{m.Matched, m.MatchedWide, m.Lost, m.Extra, m.Duplicates})
			assert.Equal(t, tc.worst, m.Worst)
			assert.Equal(t, len(tc.ref), m.Reference)
			assert.Equal(t, m.Lost, m.LostByType["PUBLISH"])
		})
	}
}
