package collector

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/probe"
)

// hostileTemplate is a template record of n fields (ids 256–65535) that
// names MQTT enterprise elements (control type 0 on the wire) and random
// IANA elements, but no flow times and no addresses: its records are not
// flows.
func hostileTemplate(rng *rand.Rand, id uint16, n int) (rec []byte, width int) {
	rec = binary.BigEndian.AppendUint16(nil, id)
	rec = binary.BigEndian.AppendUint16(rec, uint16(n))
	for i := range n {
		if i%4 == 0 {
			e := []uint16{ipfix.MQTTControlType, ipfix.MQTTQoS, ipfix.MQTTTopic, ipfix.MQTTPacketID}[rng.IntN(4)]
			rec = binary.BigEndian.AppendUint16(rec, 0x8000|e)
			rec = binary.BigEndian.AppendUint16(rec, 2)
			rec = binary.BigEndian.AppendUint32(rec, ipfix.DefaultMQTTPEN)
		} else {
			rec = binary.BigEndian.AppendUint16(rec, uint16(300+rng.IntN(2000)))
			rec = binary.BigEndian.AppendUint16(rec, 2)
		}
		width += 2
	}
	return rec, width
}

// hostileMessages makes a pool of hostile messages: random templates of
// 50–600 fields with ids 256–65535 (some with data that decodes to
// garbage records), and data sets for templates never sent, over 64
// observation domains.
func hostileMessages(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([][]byte, 0, n)
	for range n {
		domain := uint32(rng.IntN(64))
		id := uint16(256 + rng.IntN(65536-256))
		b := ipfix.MessageHeader{Version: ipfix.Version, ObservationDomainID: domain, ExportTime: uint32(time.Now().Unix())}.Append(nil)
		switch k := rng.IntN(10); {
		case k < 6: // a template, with data for it one time in two
			rec, width := hostileTemplate(rng, id, 50+rng.IntN(551))
			b = binary.BigEndian.AppendUint16(b, ipfix.SetIDTemplate)
			b = binary.BigEndian.AppendUint16(b, uint16(4+len(rec)))
			b = append(b, rec...)
			if k%2 == 0 && width*3+4 < 60000-len(b) {
				b = binary.BigEndian.AppendUint16(b, id)
				b = binary.BigEndian.AppendUint16(b, uint16(4+3*width))
				b = append(b, make([]byte, 3*width)...)
			}
		default: // data for an unknown template
			size := 512 + rng.IntN(8192)
			b = binary.BigEndian.AppendUint16(b, id)
			b = binary.BigEndian.AppendUint16(b, uint16(4+size))
			b = append(b, make([]byte, size)...)
		}
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		out = append(out, b)
	}
	return out
}

// heapAfterGC is the live Go heap.
func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestFloodKeepsStateBoundedAndLegitFlowsFlowing floods the collector over
// real loopback UDP from 160 sockets on another address (127.0.0.2) with
// hostile templates and unknown data over 64 domains, while the probe's
// exporter sends real MQTT flows from 127.0.0.1: every legit flow is
// stored, nothing else is, the state gauges stay within the limits, the
// flooder's state is evicted and counted, and the Go heap stays under the
// documented bound.
func TestFloodKeepsStateBoundedAndLegitFlowsFlowing(t *testing.T) {
	if testing.Short() {
		t.Skip("floods for seconds")
	}
	base := heapAfterGC()
	sink := &memSink{}
	// The default limits: 160 ports × 64 domains overflow the sessions
	// bound, the templates the fields bound, the unknown data the pending
	// bound.
	c, addrs := start(t, Config{}, sink)
	budgetLim := c.Budget().Limits()
	dst, err := net.ResolveUDPAddr("udp", addrs["udp"])
	require.NoError(t, err)

	const sockets, workers = 160, 4
	flooder := netip.MustParseAddr("127.0.0.2")
	conns := make([]*net.UDPConn, sockets)
	for i := range conns {
		conns[i], err = net.ListenUDP("udp", &net.UDPAddr{IP: flooder.AsSlice()})
		require.NoError(t, err)
		defer conns[i].Close()
	}
	pools := make([][][]byte, workers)
	for w := range pools {
		pools[w] = hostileMessages(uint64(w+1), 1500)
	}

	var (
		stop     atomic.Bool
		sent     atomic.Uint64
		overLim  atomic.Value // first Usage seen over the limits
		maxHeap  atomic.Uint64
		wg       sync.WaitGroup
		deadline = time.Now().Add(8 * time.Second)
	)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			pool := pools[w]
			for i := 0; !stop.Load() && time.Now().Before(deadline); i++ {
				conn := conns[w*sockets/workers+rng.IntN(sockets/workers)]
				m := pool[rng.IntN(len(pool))]
				binary.BigEndian.PutUint32(m[12:], uint32(rng.IntN(64))) // domain
				if _, err := conn.WriteToUDP(m, dst); err == nil {
					sent.Add(1)
				}
				if i%8 == 7 {
					time.Sleep(time.Millisecond) // let the collector keep up, so UDP drops stay rare
				}
			}
		})
	}
	wg.Go(func() { // watch the gauges and the heap while flooding
		for !stop.Load() {
			u := c.Budget().Usage()
			if u.Sessions > budgetLim.MaxSessions || u.Templates > budgetLim.MaxTemplates ||
				u.Fields > budgetLim.MaxTemplateFields || u.PendingBytes > budgetLim.MaxPendingBytes {
				overLim.CompareAndSwap(nil, u)
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > maxHeap.Load() {
				maxHeap.Store(m.HeapAlloc)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	// The legit exporter: the probe's IPFIX export of real MQTT flows.
	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "udp", Address: addrs["udp"], ObservationDomainID: 7, Logger: zerolog.Nop()})
	require.NoError(t, err)
	in := records(3000)
	time.Sleep(500 * time.Millisecond) // the flood has filled the budget
	for i := 0; i < len(in); i += 20 {
		require.NoError(t, exp.Export(in[i:i+20]))
		require.NoError(t, exp.Flush())
		time.Sleep(2 * time.Millisecond)
	}
	require.NoError(t, exp.Close())
	docs := sink.waitFor(t, len(in))

	// Measure while the state is still held.
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	live := heapAfterGC()
	stop.Store(true)
	wg.Wait()

	require.Nil(t, overLim.Load(), "state over the limits %+v", budgetLim)
	got := map[uint64]bool{}
	for _, d := range docs {
		got[d.FlowID] = true
		require.NotEqual(t, "RESERVED", d.MQTTControlTypeName)
		require.Equal(t, "127.0.0.1", netip.MustParseAddrPort(d.ExporterAddress).Addr().String(), "only legit flows are stored")
	}
	for _, r := range in {
		require.True(t, got[r.FlowID], "legit flow %d stored", r.FlowID)
	}
	require.Len(t, sink.snapshot(), len(in))

	u := c.Budget().Usage()
	var flood, legit ipfix.ExporterUsage
	for _, x := range c.Budget().Exporters() {
		switch x.Exporter {
		case flooder:
			flood = x
		case netip.MustParseAddr("127.0.0.1"):
			legit = x
		}
	}
	t.Logf("flood: %d messages sent; state %+v; evictions %+v; invalid %v; heap base %d MiB, live with state %d MiB, peak sampled %d MiB",
		sent.Load(), u, flood.Evictions, c.InvalidRecords(), base>>20, live>>20, maxHeap.Load()>>20)
	require.Zero(t, legit.Evictions, "the legit exporter lost nothing")
	require.Equal(t, 1, legit.Usage.Sessions)
	require.Equal(t, 2, legit.Usage.Templates)
	require.NotZero(t, flood.Evictions.Sessions)
	require.NotZero(t, flood.Evictions.Fields+flood.Evictions.Templates)
	require.NotZero(t, c.InvalidRecords()[flow.InvalidNoStart], "garbage records of hostile templates are counted")

	// Bound from ipfix.Limits' arithmetic (≈ 84 MiB of state at the
	// defaults) plus the test's own message pools (≈ 20 MiB).
	const bound = 128 << 20
	require.Less(t, live, uint64(bound), "live heap with the state held")
	// Between collections the heap grows to about twice the live heap
	// (GOGC=100): that is what RSS follows.
	require.Less(t, maxHeap.Load(), uint64(256<<20), "peak heap sampled during the flood")
}

// TestHostileTemplateRecordsAreNotStored reproduces the garbage users saw
// (records of a template naming MQTT elements stored as RESERVED flows
// starting in year 1): over UDP nothing invalid reaches the sink, each
// record is counted by reason, and valid flows still are stored.
func TestHostileTemplateRecordsAreNotStored(t *testing.T) {
	sink := &memSink{}
	c, addrs := start(t, Config{}, sink)
	conn, err := net.Dial("udp", addrs["udp"])
	require.NoError(t, err)
	defer conn.Close()
	rng := rand.New(rand.NewPCG(3, 3))
	rec, width := hostileTemplate(rng, 4242, 12)
	const records = 315
	b := ipfix.MessageHeader{Version: ipfix.Version, ObservationDomainID: 1}.Append(nil)
	b = binary.BigEndian.AppendUint16(b, ipfix.SetIDTemplate)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(rec)))
	b = append(b, rec...)
	b = binary.BigEndian.AppendUint16(b, 4242)
	b = binary.BigEndian.AppendUint16(b, uint16(4+records*width))
	b = append(b, make([]byte, records*width)...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	_, err = conn.Write(b)
	require.NoError(t, err)

	// A template with times and addresses but control type 0.
	reg := ipfix.NewRegistry(ipfix.DefaultMQTTPEN)
	tm, err := ipfix.NewTemplate(reg, 4243,
		ipfix.FieldSpec{ID: 8, Length: 4}, ipfix.FieldSpec{ID: 12, Length: 4}, ipfix.FieldSpec{ID: 150, Length: 4},
		ipfix.FieldSpec{PEN: ipfix.DefaultMQTTPEN, ID: ipfix.MQTTControlType, Length: 1})
	require.NoError(t, err)
	b = ipfix.MessageHeader{Version: ipfix.Version, ObservationDomainID: 1, SequenceNumber: records}.Append(nil)
	b = ipfix.AppendTemplateSet(b, tm)
	b = binary.BigEndian.AppendUint16(b, 4243)
	b = binary.BigEndian.AppendUint16(b, 4+13)
	b = append(b, 10, 0, 0, 1, 10, 0, 0, 2)
	b = binary.BigEndian.AppendUint32(b, uint32(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()))
	b = append(b, 0)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	_, err = conn.Write(b)
	require.NoError(t, err)

	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "udp", Address: addrs["udp"], Logger: zerolog.Nop()})
	require.NoError(t, err)
	require.NoError(t, exp.Export(recordsN(5)))
	require.NoError(t, exp.Close())
	docs := sink.waitFor(t, 5)
	require.Eventually(t, func() bool {
		inv := c.InvalidRecords()
		return inv[flow.InvalidNoStart] == records && inv[flow.InvalidControlType] == 1
	}, 5*time.Second, 5*time.Millisecond, "%v", c.InvalidRecords())
	for _, d := range docs {
		require.NotEqual(t, "RESERVED", d.MQTTControlTypeName)
		require.Greater(t, d.FlowStart.Year(), 2000)
	}
	require.Len(t, sink.snapshot(), 5)
	require.Equal(t, uint64(records+1), c.Exporters()[netip.MustParseAddr("127.0.0.1")].InvalidRecords)
}

func recordsN(n int) []flow.Record { return records(n) }
