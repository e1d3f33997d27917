package collector

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe"
)

// coapRecords are CoAP flows of every shape (piggybacked, separate, NON,
// ping, Observe notification, Block1/Block2, no optional field, case
// keys), IPv4 and IPv6 alternating, mixed with MQTT flows.
func coapRecords(n int) []flow.Record {
	start := time.Date(2026, 11, 30, 8, 0, 0, 987654321, time.UTC)
	const get, post, put = 1, 2, 3
	content, changed, created := uint8(2<<5|5), uint8(2<<5|4), uint8(2<<5|1)
	shapes := []struct {
		notification bool
		c            flow.CoAP
		key          []byte
	}{
		{false, flow.CoAP{Type: 0, Code: get, Token: []byte{0xca, 0xfe}, Method: get, URIHost: "h", URIPath: "/sensors/temp",
			URIQuery: "u=C", ContentFormat: 50, HasContentFormat: true, ResponseCode: content, PayloadLength: 5}, nil},
		{false, flow.CoAP{Type: 0, Code: post, Token: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Method: post, URIPath: "/actuators/led",
			ResponseCode: created, Retransmissions: 2, PayloadLength: 3}, []byte("case-1")},
		{false, flow.CoAP{Type: 1, Code: put, Token: []byte{3}, Method: put, URIPath: "/config", ResponseCode: changed}, []byte{0, 0xff}},
		{false, flow.CoAP{Type: 0}, nil}, // ping
		{true, flow.CoAP{Type: 1, Code: content, Token: []byte{0xab}, Method: get, URIPath: "/time", ContentFormat: 0,
			HasContentFormat: true, ResponseCode: content, Observe: 1 << 23, HasObserve: true, PayloadLength: 8}, []byte("case-1")},
		{false, flow.CoAP{Type: 0, Code: get, Token: []byte{6}, Method: get, URIPath: "/big", ResponseCode: content,
			Block: 3<<4 | 8 | 2, BlockOption: flow.Block2, PayloadLength: 64}, nil},
		{false, flow.CoAP{Type: 0, Code: put, Token: []byte{7}, Method: put, URIPath: "/big", ResponseCode: changed,
			Block: 7<<4 | 6, BlockOption: flow.Block1, PayloadLength: 1024}, nil},
		{false, flow.CoAP{Type: 0, Code: get, Method: get}, nil}, // no optional field, unanswered
	}
	mqtt := records(n)
	out := make([]flow.Record, 0, 2*n)
	for i := range n {
		s := shapes[i%len(shapes)]
		c := s.c
		c.MessageID = uint16(1000 + i)
		client, server := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(40000+i)), netip.MustParseAddrPort("192.0.2.1:5683")
		if i%2 == 1 {
			client, server = netip.AddrPortFrom(netip.MustParseAddr("2001:db8::10"), uint16(40000+i)), netip.MustParseAddrPort("[2001:db8::1]:5683")
		}
		src, dst := client, server
		if s.notification {
			src, dst = server, client
		}
		r := flow.Record{FlowID: uint64(1<<40 + i), SrcAddr: src.Addr(), DstAddr: dst.Addr(), SrcPort: src.Port(), DstPort: dst.Port(),
			Protocol: 17, Start: start.Add(time.Duration(i) * time.Millisecond), Packets: 2, Octets: uint64(30 + i),
			EndReason: flow.EndOfFlow, ApplicationProtocol: flow.AppCoAP, CoAP: &c}
		r.End = r.Start.Add(812 * time.Microsecond)
		if c.ResponseCode == 0 && c.Code != 0 {
			r.EndReason, r.Packets, r.End = flow.EndIdleTimeout, 1, r.Start
		}
		if s.key != nil {
			r.CorrelationData, r.CorrelationSource = s.key, flow.CorrelationCoAPOption
		}
		out = append(out, r, mqtt[i])
	}
	return out
}

// TestCoAPExportInterop: the probe's exporter sends CoAP flows mixed with
// MQTT flows over UDP and TCP; every document the collector hands the
// sink is the record's document, reads back as the record, and the flows
// hook (detection) sees the CoAP flows with their case keys.
func TestCoAPExportInterop(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			sink := &memSink{}
			var mu sync.Mutex
			hooked := map[uint64]flow.Record{}
			c, addrs := start(t, Config{Flows: func(r *flow.Record) {
				mu.Lock()
				defer mu.Unlock()
				hooked[r.FlowID] = *r // decoded into fresh slices: a shallow copy keeps them
			}}, sink)
			exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: transport, Address: addrs[transport],
				ObservationDomainID: 7, Logger: zerolog.Nop()})
			require.NoError(t, err)
			in := coapRecords(120)
			for i := 0; i < len(in); i += 40 {
				require.NoError(t, exp.Export(in[i:i+40]))
				require.NoError(t, exp.Flush())
				if transport == "udp" {
					time.Sleep(time.Millisecond) // stay within the socket buffer
				}
			}
			require.NoError(t, exp.Close())
			docs := sink.waitFor(t, len(in))
			require.Len(t, docs, len(in))
			byID := map[uint64]flow.Document{}
			for _, d := range docs {
				byID[d.FlowID] = d
			}
			nCoAP := 0
			for i := range in {
				got, ok := byID[in[i].FlowID]
				require.True(t, ok, "flow %d stored", in[i].FlowID)
				require.Equal(t, uint32(7), got.ObservationDomainID)
				require.NotEmpty(t, got.ExporterAddress)
				require.NotNil(t, got.CollectorReceiveTime)
				rec, err := got.Record()
				require.NoError(t, err)
				want := in[i]
				want.Exporter, want.ObservationDomain, want.Received = rec.Exporter, 7, rec.Received
				require.True(t, want.Start.Equal(rec.Start))
				rec.Start, rec.End = want.Start, want.End
				require.Equal(t, want, rec, "flow %d", i)

				wantDoc := in[i].ToDocument()
				got.ObservationDomainID, got.ExporterAddress, got.CollectorReceiveTime = 0, "", nil
				got.FlowStart, got.FlowEnd = wantDoc.FlowStart, wantDoc.FlowEnd
				require.Equal(t, wantDoc, got)
				if in[i].ApplicationProtocol == flow.AppCoAP {
					nCoAP++
					require.True(t, got.IsCoAP())
					require.Empty(t, got.MQTTControlTypeName)
				}
			}
			require.Equal(t, len(in)/2, nCoAP)

			mu.Lock()
			defer mu.Unlock()
			require.Len(t, hooked, len(in))
			cases := 0
			for i := range in {
				if in[i].ApplicationProtocol != flow.AppCoAP {
					continue
				}
				h := hooked[in[i].FlowID]
				require.Equal(t, flow.AppCoAP, h.ApplicationProtocol)
				require.Equal(t, in[i].CoAP, h.CoAP)
				require.Equal(t, in[i].CorrelationData, h.CorrelationData)
				require.Equal(t, in[i].CorrelationSource, h.CorrelationSource)
				if len(h.CorrelationData) > 0 {
					cases++
				}
			}
			require.Positive(t, cases, "CoAP flows with case keys reach detection")
			st := c.Stats()
			coap := 0
			for i := range in {
				if in[i].ApplicationProtocol == flow.AppCoAP {
					coap++
				}
			}
			require.Positive(t, coap)
			require.EqualValues(t, coap, st.CoAPFlows, "the probe's CoAP flows")
			require.EqualValues(t, len(in)-coap, st.MQTTFlows, "the probe's MQTT flows")
			require.EqualValues(t, len(in), st.Records)
			require.Zero(t, st.OtherFlows)
		})
	}
}
