package command

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/store"
)

// summary tallies the flows all-in-one stored, for the report printed
// after a file run.
type summary struct {
	mu       sync.Mutex
	byType   map[flow.ControlType]int
	pubQoS   [3]int
	clients  map[string]bool
	topics   map[string]bool
	corrs    map[string]bool
	versions map[uint8]int
	total    int
	mqtt     int // MQTT flows (the fields above)

	// CoAP flows: by kind (method, "notification", "ping", "reset"), their
	// clients (addresses) and resources (paths).
	coap        int
	coapKinds   map[string]int
	coapClients map[string]bool
	coapPaths   map[string]bool
}

func newSummary() *summary {
	return &summary{byType: map[flow.ControlType]int{}, clients: map[string]bool{}, topics: map[string]bool{},
		corrs: map[string]bool{}, versions: map[uint8]int{}, coapKinds: map[string]int{}, coapClients: map[string]bool{},
		coapPaths: map[string]bool{}}
}

const summaryLimit = 100_000 // distinct names kept; beyond, only counted

func (s *summary) add(r *flow.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if r.ApplicationProtocol == flow.AppCoAP && r.CoAP != nil {
		s.addCoAP(r)
		return
	}
	s.mqtt++
	s.byType[r.ControlType]++
	if r.ControlType == flow.Publish && r.QoS < 3 {
		s.pubQoS[r.QoS]++
	}
	s.versions[r.ProtocolVersion]++
	for _, id := range []string{r.SrcClientID, r.DstClientID} {
		if id != "" && id != flow.BrokerClientID && len(s.clients) < summaryLimit {
			s.clients[id] = true
		}
	}
	if r.Topic != "" && len(s.topics) < summaryLimit {
		s.topics[r.Topic] = true
	}
	if len(r.CorrelationData) > 0 && len(s.corrs) < summaryLimit {
		s.corrs[string(r.CorrelationData)] = true
	}
}

func (s *summary) addCoAP(r *flow.Record) {
	s.coap++
	c := r.CoAP
	code := coapparse.Code(c.Code)
	kind := code.Name()
	switch {
	case coapparse.Type(c.Type) == coapparse.Reset:
		kind = "reset"
	case c.Code == 0:
		kind = "ping"
	case code.Class() >= 2:
		kind = "notification"
	case kind == "":
		kind = code.String()
	}
	s.coapKinds[kind]++
	client := r.SrcAddr.String()
	if kind == "notification" {
		client = r.DstAddr.String() // the observer
	}
	if len(s.coapClients) < summaryLimit {
		s.coapClients[client] = true
	}
	if c.URIPath != "" && len(s.coapPaths) < summaryLimit {
		s.coapPaths[c.URIPath] = true
	}
}

type summaryInfo struct {
	file                      string
	elapsed                   time.Duration
	probe                     probe.Stats
	collector                 collector.Stats
	store                     store.Stats
	url, database, collection string
	dataDir                   string
}

// namesShown is how many clients and topics the summary lists by name.
const namesShown = 12

func (s *summary) print(w io.Writer, in summaryInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := func(m map[string]bool, max int) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) > max {
			return strings.Join(keys[:max], ", ") + fmt.Sprintf(", … (%d more)", len(keys)-max)
		}
		return strings.Join(keys, ", ")
	}
	types := make([]flow.ControlType, 0, len(s.byType))
	for t := range s.byType {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool {
		return s.byType[types[i]] > s.byType[types[j]] || s.byType[types[i]] == s.byType[types[j]] && types[i] < types[j]
	})
	var parts []string
	for _, t := range types {
		p := fmt.Sprintf("%s %d", t, s.byType[t])
		if t == flow.Publish {
			p += fmt.Sprintf(" (QoS 0: %d, QoS 1: %d, QoS 2: %d)", s.pubQoS[0], s.pubQoS[1], s.pubQoS[2])
		}
		parts = append(parts, p)
	}
	ps, tr := in.probe, in.probe.Tracker
	coapMsgs := ps.CoAP.Messages[0] + ps.CoAP.Messages[1] + ps.CoAP.Messages[2] + ps.CoAP.Messages[3]
	packets := fmt.Sprintf("%d packets, %d MQTT packets", ps.Packets, sumPackets(tr.Packets))
	if s.coap > 0 || coapMsgs > 0 {
		packets += fmt.Sprintf(", %d CoAP messages", coapMsgs)
	}
	fmt.Fprintf(w, "mission all-in-one: %d flows from %s (%s) in %.2f s\n", s.total, in.file, packets, in.elapsed.Seconds())
	if s.mqtt > 0 || s.coap == 0 {
		fmt.Fprintf(w, "  flows by type   %s\n", strings.Join(parts, " · "))
		fmt.Fprintf(w, "  clients (%d)    %s\n", len(s.clients), list(s.clients, namesShown))
		fmt.Fprintf(w, "  topics (%d)     %s\n", len(s.topics), list(s.topics, namesShown))
		fmt.Fprintf(w, "  correlation ids %d distinct\n", len(s.corrs))
	}
	if s.coap > 0 {
		kinds := make([]string, 0, len(s.coapKinds))
		for k := range s.coapKinds {
			kinds = append(kinds, k)
		}
		sort.Slice(kinds, func(i, j int) bool {
			a, b := s.coapKinds[kinds[i]], s.coapKinds[kinds[j]]
			return a > b || a == b && kinds[i] < kinds[j]
		})
		var cp []string
		for _, k := range kinds {
			cp = append(cp, fmt.Sprintf("%s %d", k, s.coapKinds[k]))
		}
		fmt.Fprintf(w, "  CoAP flows      %d: %s\n", s.coap, strings.Join(cp, " · "))
		fmt.Fprintf(w, "  CoAP clients (%d) %s\n", len(s.coapClients), list(s.coapClients, namesShown))
		fmt.Fprintf(w, "  resources (%d)  %s\n", len(s.coapPaths), list(s.coapPaths, namesShown))
	}
	notStored := fmt.Sprintf("export queue full %d · export errors %d · store dropped %d · malformed MQTT %d · TCP gaps %d · responses without request %d",
		ps.FlowsDropped, ps.FlowsLost, in.store.Dropped, tr.Malformed, ps.Reassembly.Gaps, sumPackets(tr.Unmatched))
	if s.coap > 0 || coapMsgs > 0 {
		notStored += fmt.Sprintf(" · not CoAP %d · CoAP replies without request %d", ps.CoAP.Malformed, ps.CoAP.Unmatched)
	}
	fmt.Fprintf(w, "  not stored      %s\n", notStored)
	where := fmt.Sprintf("database %q, collection %q", in.database, in.collection)
	if in.url != "" {
		url := store.RedactURL(in.url)
		fmt.Fprintf(w, "  stored          %d documents in %s at %s\n", in.store.Inserted+in.store.Duplicates, where, url)
		fmt.Fprintf(w, "  query           mongosh '%s' --eval 'db.getSiblingDB(\"%s\").%s.find().limit(5)'\n", url, in.database, in.collection)
		return
	}
	fmt.Fprintf(w, "  stored          %d documents in %s of the embedded store in %s\n", in.store.Inserted+in.store.Duplicates, where, in.dataDir)
	if s.mqtt == 0 && s.coap > 0 {
		fmt.Fprintf(w, "  query           mission query --data-dir %s --protocol coap --limit 5\n", in.dataDir)
		return
	}
	fmt.Fprintf(w, "  query           mission query --data-dir %s --limit 5 '{\"mqttControlTypeName\": \"PUBLISH\"}'\n", in.dataDir)
}

func sumPackets(a [16]uint64) uint64 {
	var n uint64
	for _, v := range a {
		n += v
	}
	return n
}
