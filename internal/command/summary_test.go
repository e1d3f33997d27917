package command

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/store"
)

func TestSummary(t *testing.T) {
	s := newSummary()
	add := func(n int, r flow.Record) {
		for i := 0; i < n; i++ {
			s.add(&r)
		}
	}
	add(3, flow.Record{ControlType: flow.Publish, QoS: 0, SrcClientID: "sensor", DstClientID: flow.BrokerClientID, Topic: "plant/a", CorrelationData: []byte("c1")})
	add(2, flow.Record{ControlType: flow.Publish, QoS: 2, SrcClientID: "sensor", Topic: "plant/b", CorrelationData: []byte("c2")})
	add(2, flow.Record{ControlType: flow.Connect, SrcClientID: "actuator"})
	add(1, flow.Record{ControlType: flow.Subscribe, SrcClientID: "actuator", Topic: "plant/#"})
	for i := 0; i < namesShown+3; i++ {
		s.add(&flow.Record{ControlType: flow.PingReq, SrcClientID: fmt.Sprintf("c%02d", i)})
	}
	var ps probe.Stats
	ps.Packets = 99
	ps.FlowsDropped = 4
	ps.Tracker.Packets[3] = 7
	ps.Tracker.Packets[1] = 2
	in := summaryInfo{file: "x.pcap", elapsed: 1500 * time.Millisecond, probe: ps, store: store.Stats{Inserted: 20, Duplicates: 3, Dropped: 1},
		database: "mission", collection: "mqtt", dataDir: "/d"}

	var out bytes.Buffer
	s.print(&out, in)
	got := out.String()
	total := 3 + 2 + 2 + 1 + namesShown + 3
	require.Contains(t, got, fmt.Sprintf("mission all-in-one: %d flows from x.pcap (99 packets, 9 MQTT packets) in 1.50 s\n", total))
	require.Contains(t, got, fmt.Sprintf("flows by type   PINGREQ %d · PUBLISH 5 (QoS 0: 3, QoS 1: 0, QoS 2: 2) · CONNECT 2 · SUBSCRIBE 1\n", namesShown+3),
		"types by count, then by type")
	require.Contains(t, got, fmt.Sprintf("clients (%d)", namesShown+3+2), "the broker is no client")
	require.Contains(t, got, ", … (5 more)")
	require.Contains(t, got, "topics (3)     plant/#, plant/a, plant/b\n")
	require.Contains(t, got, "correlation ids 2 distinct")
	require.Contains(t, got, "export queue full 4")
	require.Contains(t, got, "store dropped 1")
	require.Contains(t, got, "stored          23 documents in database \"mission\", collection \"mqtt\" of the embedded store in /d")
	require.Contains(t, got, "mission query --data-dir /d")

	in.url = "mongodb://user:secret@db.example:27017/?authSource=admin"
	out.Reset()
	s.print(&out, in)
	require.NotContains(t, out.String(), "secret")
	require.Contains(t, out.String(), "mongodb://user:xxxxx@db.example:27017/")
	require.True(t, strings.HasPrefix(out.String(), "mission all-in-one:"))
}

func TestSummaryBoundsDistinctNames(t *testing.T) {
	s := newSummary()
	for i := 0; i < summaryLimit+10; i++ {
		s.add(&flow.Record{ControlType: flow.Publish, Topic: fmt.Sprint("t/", i)})
	}
	require.Len(t, s.topics, summaryLimit)
	require.Equal(t, summaryLimit+10, s.total, "all flows counted")
}

// A CoAP run is summarised by kind, client and resource, and the query
// hint selects CoAP flows; MQTT lines appear only with MQTT flows.
func TestSummaryCoAP(t *testing.T) {
	s := newSummary()
	client, server := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")
	add := func(n int, c flow.CoAP, src, dst netip.Addr) {
		for i := 0; i < n; i++ {
			cc := c
			s.add(&flow.Record{ApplicationProtocol: flow.AppCoAP, CoAP: &cc, SrcAddr: src, DstAddr: dst})
		}
	}
	add(3, flow.CoAP{Type: 0, Code: 0x02, Method: 0x02, URIPath: "/sensors/a"}, client, server)   // CON POST
	add(2, flow.CoAP{Type: 1, Code: 0x01, Method: 0x01, URIPath: "/actuators/b"}, client, server) // NON GET
	add(4, flow.CoAP{Type: 1, Code: 0x45, Method: 0x01, URIPath: "/sensors/a"}, server, client)   // 2.05 notification
	add(1, flow.CoAP{Type: 0, Code: 0}, netip.MustParseAddr("10.0.0.3"), server)                  // ping
	var ps probe.Stats
	ps.CoAP.Messages = [4]uint64{10, 6, 4, 1}
	ps.CoAP.Malformed = 2
	var out bytes.Buffer
	s.print(&out, summaryInfo{file: "c.pcap", elapsed: time.Second, probe: ps, database: "mission", collection: "mqtt", dataDir: "/d"})
	got := out.String()
	require.Contains(t, got, "10 flows from c.pcap (0 packets, 0 MQTT packets, 21 CoAP messages)")
	require.Contains(t, got, "CoAP flows      10: notification 4 · POST 3 · GET 2 · ping 1\n")
	require.Contains(t, got, "CoAP clients (2) 10.0.0.2, 10.0.0.3\n", "a notification's client is its observer")
	require.Contains(t, got, "resources (2)  /actuators/b, /sensors/a\n")
	require.Contains(t, got, "not CoAP 2")
	require.Contains(t, got, "mission query --data-dir /d --protocol coap --limit 5\n")
	require.NotContains(t, got, "flows by type", "no MQTT flows")
	require.NotContains(t, got, "PUBLISH")
}
