package mqtttest

import (
	"fmt"
	"slices"
	"time"

	"github.com/mission-ids/mission/flow"
)

// RecordingKey identifies a flow in the store and in the replay of a
// recording of the same traffic: 5-tuple, type and packet id. The start
// time is compared apart, with a tolerance: dumpcap and the probe stamp
// the same packet at slightly different moments.
type RecordingKey struct {
	Src, Dst     string
	SPort, DPort uint16
	Proto        uint8
	Type         string
	PacketID     uint16
}

// RecordingKeyOf returns the key of a stored flow.
func RecordingKeyOf(d *flow.Document) RecordingKey {
	return RecordingKey{Src: d.SourceIPv4Address + d.SourceIPv6Address, Dst: d.DestinationIPv4Address + d.DestinationIPv6Address,
		SPort: d.SourceTransportPort, DPort: d.DestinationTransportPort, Proto: d.Protocol,
		Type: d.MQTTControlTypeName, PacketID: d.MQTTPacketID}
}

// RecordingMatch is the comparison of stored flows with reference flows
// (a replay of a recording of the same traffic).
type RecordingMatch struct {
	Reference, Stored int
	// Matched pairs have the same key and start times within the tight
	// tolerance; MatchedWide pairs are what is left over with the same key
	// and starts within the wide one (see MatchRecording).
	Matched, MatchedWide int
	// Lost are reference flows without a stored one, Extra stored flows
	// without a reference one.
	Lost, Extra int
	// DistinctKeys counts the stored flows by key and exact start time;
	// Duplicates = Stored − DistinctKeys.
	DistinctKeys, Duplicates int
	Worst                    time.Duration // largest start-time difference of a pair
	LostByType               map[string]int
	Examples                 []string // the first lost, extra and wide pairs
}

// WideTolerance is the default wide tolerance of MatchRecording: far
// above any timestamp skew seen, far below a packet id's reuse on one
// connection.
const WideTolerance = 100 * time.Millisecond

// MatchRecording pairs stored flows with reference flows of the same key
// in start-time order, first within tol, then what is left within wide.
//
// Two passes because the probe and dumpcap each read their own packet
// socket, and the kernel stamps a TCP packet for each socket as it
// delivers it there (a locally sent segment carries a delivery time, not
// a capture time, until then): the deliveries are microseconds apart,
// unless the softirq doing them is preempted between the two sockets on
// a loaded machine — seen as 6.3 and 6.4 ms for one flow in thousands.
// The wide pass takes those as one flow stamped twice instead of one lost
// and one extra; the caller logs MatchedWide.
func MatchRecording(ref, stored []flow.Document, tol, wide time.Duration) RecordingMatch {
	m := RecordingMatch{Reference: len(ref), Stored: len(stored), LostByType: map[string]int{}}
	exact := map[string]bool{}
	for i := range stored {
		exact[fmt.Sprintf("%v@%d", RecordingKeyOf(&stored[i]), stored[i].FlowStartNs)] = true
	}
	m.DistinctKeys = len(exact)
	m.Duplicates = len(stored) - m.DistinctKeys
	group := func(docs []flow.Document) map[RecordingKey][]int64 {
		g := map[RecordingKey][]int64{}
		for i := range docs {
			k := RecordingKeyOf(&docs[i])
			g[k] = append(g[k], docs[i].FlowStartNs)
		}
		for _, s := range g {
			slices.Sort(s)
		}
		return g
	}
	example := func(format string, args ...any) {
		if len(m.Examples) < 20 {
			m.Examples = append(m.Examples, fmt.Sprintf(format, args...))
		}
	}
	note := func(what string, k RecordingKey, ns int64) {
		if what == "lost" {
			m.Lost++
			m.LostByType[k.Type]++
		} else {
			m.Extra++
		}
		example("%s: %s %s:%d → %s:%d packet id %d, start %s", what, k.Type, k.Src, k.SPort, k.Dst, k.DPort,
			k.PacketID, time.Unix(0, ns).UTC().Format("15:04:05.000000"))
	}
	// pair walks two sorted start-time lists, pairing starts within t; it
	// returns what is left of each.
	pair := func(r, s []int64, t time.Duration, paired func(d time.Duration)) (lost, extra []int64) {
		i, j := 0, 0
		for i < len(r) && j < len(s) {
			d := time.Duration(s[j] - r[i])
			switch {
			case d.Abs() <= t:
				paired(d.Abs())
				i, j = i+1, j+1
			case d < 0:
				extra = append(extra, s[j])
				j++
			default:
				lost = append(lost, r[i])
				i++
			}
		}
		return append(lost, r[i:]...), append(extra, s[j:]...)
	}
	gref, gsto := group(ref), group(stored)
	for k, r := range gref {
		lost, extra := pair(r, gsto[k], tol, func(d time.Duration) {
			m.Matched++
			m.Worst = max(m.Worst, d)
		})
		lost, extra = pair(lost, extra, wide, func(d time.Duration) {
			m.MatchedWide++
			m.Worst = max(m.Worst, d)
			example("start %s apart: %s %s:%d → %s:%d packet id %d", d, k.Type, k.Src, k.SPort, k.Dst, k.DPort, k.PacketID)
		})
		for _, ns := range lost {
			note("lost", k, ns)
		}
		for _, ns := range extra {
			note("extra", k, ns)
		}
	}
	for k, s := range gsto {
		if _, ok := gref[k]; !ok {
			for _, ns := range s {
				note("extra", k, ns)
			}
		}
	}
	return m
}
