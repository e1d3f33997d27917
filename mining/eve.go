package mining

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/mission-ids/mission/flow"
)

// EVE output: alerts (and anomalies) as Suricata EVE JSON lines, so that
// pipelines built for Suricata (Filebeat's Suricata module, Wazuh, EveBox,
// jq) read them unchanged. docs/detection.md ("EVE output") has the field
// table and the signature ids.

// EVETimeFormat is Suricata's EVE timestamp: microseconds and a numeric
// zone without colon (2026-12-02T04:13:03.123456+0000).
const EVETimeFormat = "2006-01-02T15:04:05.000000-0700"

// EVESignature is how one check appears in EVE alerts.
type EVESignature struct {
	ID       int    // signature_id
	Name     string // signature
	Category string // category, from Suricata's classification.config
}

// EVESignatures are the signature ids of the checks: stable, one per
// check, gid 1, rev 1.
var EVESignatures = map[Check]EVESignature{
	CheckUnknownActivity:        {9990001, "MISSION MQTT unknown activity (client published to a topic never seen with it)", "Potentially Bad Traffic"},
	CheckUnknownClient:          {9990002, "MISSION MQTT unknown client", "Unknown Traffic"},
	CheckDirectlyFollows:        {9990003, "MISSION MQTT process step out of the learned order (directly-follows)", "Potentially Bad Traffic"},
	CheckSkeleton:               {9990004, "MISSION MQTT process case breaks the log skeleton", "Potentially Bad Traffic"},
	CheckTemporal:               {9990005, "MISSION MQTT process step off the learned timing", "Misc activity"},
	CheckRate:                   {9990006, "MISSION MQTT flood (rate above the learned bound)", "Attempted Denial of Service"},
	CheckSubscription:           {9990007, "MISSION MQTT wildcard or $SYS subscription (reconnaissance)", "Attempted Information Leak"},
	CheckMissingCorrelation:     {9990008, "MISSION MQTT PUBLISH without correlation id", "Generic Protocol Command Decode"},
	CheckUnsubscribedDelivery:   {9990009, "MISSION MQTT delivery to a client without matching subscription", "Attempted Information Leak"},
	CheckProtocolAnomaly:        {9990011, "MISSION MQTT protocol anomaly (packet breaking the specification or the session)", "Generic Protocol Command Decode"},
	CheckUnidentifiedConnection: {9990010, "MISSION MQTT connection picked up midstream, client not identified", "Not Suspicious Traffic"},
	CheckUnusualMethod:          {9990012, "MISSION CoAP unusual method on a resource (a method never seen on that path)", "Potentially Bad Traffic"},
	CheckErrorBurst:             {9990013, "MISSION CoAP burst of error responses (resource scanning)", "Attempted Information Leak"},
}

// evePrivate is the signature of a check missing from EVESignatures.
var evePrivate = EVESignature{9990099, "MISSION MQTT detection", "Misc activity"}

// EVESeverity is Suricata's severity of an alert's: 1 (high) to 3 (low).
func EVESeverity(s Severity) int {
	switch s {
	case SeverityHigh:
		return 1
	case SeverityMedium:
		return 2
	}
	return 3
}

// EVEWriter writes EVE events, one JSON object per line, buffered until
// Flush (the Monitor flushes after every batch, mission detect at the
// end). Not safe for concurrent use.
type EVEWriter struct {
	under io.Writer
	w     *bufio.Writer
}

// NewEVEWriter writes to w (closed by Close if it is an io.Closer).
func NewEVEWriter(w io.Writer) *EVEWriter {
	return &EVEWriter{under: w, w: bufio.NewWriterSize(w, 64<<10)}
}

type eveEvent struct {
	Timestamp string      `json:"timestamp"`
	FlowID    uint64      `json:"flow_id"`
	EventType string      `json:"event_type"`
	SrcIP     string      `json:"src_ip,omitempty"`
	SrcPort   uint16      `json:"src_port"`
	DestIP    string      `json:"dest_ip,omitempty"`
	DestPort  uint16      `json:"dest_port"`
	Proto     string      `json:"proto"`
	AppProto  string      `json:"app_proto"`
	Alert     *eveAlert   `json:"alert,omitempty"`
	Anomaly   *eveAnomaly `json:"anomaly,omitempty"`
	MQTT      *eveMQTT    `json:"mqtt,omitempty"`
	CoAP      *CoAPRef    `json:"coap,omitempty"`
	Mission   *eveMission `json:"mission,omitempty"`
}

type eveAlert struct {
	Action      string `json:"action"`
	GID         int    `json:"gid"`
	SignatureID int    `json:"signature_id"`
	Rev         int    `json:"rev"`
	Signature   string `json:"signature"`
	Category    string `json:"category"`
	Severity    int    `json:"severity"`
}

type eveAnomaly struct {
	Type  string `json:"type"`
	Event string `json:"event"`
	Layer string `json:"layer"`
}

// eveMQTT mirrors Suricata's EVE "mqtt" object: one member named after
// the message type, with Suricata's field names.
type eveMQTT struct {
	Connect     *eveMQTTConnect   `json:"connect,omitempty"`
	Publish     *eveMQTTPublish   `json:"publish,omitempty"`
	Subscribe   *eveMQTTSubscribe `json:"subscribe,omitempty"`
	Unsubscribe *eveMQTTUnsub     `json:"unsubscribe,omitempty"`
}

type eveMQTTHeader struct {
	QoS    uint8 `json:"qos"`
	Retain bool  `json:"retain"`
	Dup    bool  `json:"dup"`
}

type eveMQTTConnect struct {
	eveMQTTHeader
	ClientID string `json:"client_id"`
}

type eveMQTTPublish struct {
	eveMQTTHeader
	Topic      string         `json:"topic"`
	MessageID  *uint16        `json:"message_id,omitempty"`
	Properties *eveProperties `json:"properties,omitempty"`
}

type eveProperties struct {
	CorrelationData string `json:"correlation_data,omitempty"`
}

type eveTopic struct {
	Topic string `json:"topic"`
	QoS   uint8  `json:"qos"`
}

type eveMQTTSubscribe struct {
	eveMQTTHeader
	MessageID uint16     `json:"message_id"`
	Topics    []eveTopic `json:"topics"`
}

type eveMQTTUnsub struct {
	eveMQTTHeader
	MessageID uint16   `json:"message_id"`
	Topics    []string `json:"topics"`
}

// eveMission is mission's own context (Suricata has no such object;
// consumers keep or ignore it).
type eveMission struct {
	Check    Check    `json:"check"`
	Client   string   `json:"client,omitempty"`
	Topic    string   `json:"topic,omitempty"`
	Case     string   `json:"case,omitempty"`
	Flows    []uint64 `json:"flows,omitempty"`
	Message  string   `json:"message"`
	Severity Severity `json:"severity"`
	// Identity is "inferred" when the client was inferred from the model.
	Identity string `json:"identity,omitempty"`
}

// Alert writes one alert event.
func (e *EVEWriter) Alert(a *Alert) error {
	sig, ok := EVESignatures[a.Check]
	if !ok {
		sig = evePrivate
	}
	ev := eveEvent{EventType: "alert", Timestamp: a.Time.UTC().Format(EVETimeFormat), Proto: "TCP", AppProto: "mqtt",
		Alert: &eveAlert{Action: "allowed", GID: 1, SignatureID: sig.ID, Rev: 1, Signature: sig.Name,
			Category: sig.Category, Severity: EVESeverity(a.Severity)},
		Mission: &eveMission{Check: a.Check, Client: a.Client, Topic: a.Topic, Case: a.Case, Flows: a.Flows,
			Message: a.Message, Severity: a.Severity},
	}
	if f := a.Flow; f != nil {
		ev.FlowID = f.ID
		ev.Mission.Identity = f.Identity
		ev.setEndpoints(f.Src, f.Dst)
		if f.CoAP != nil {
			// The same check on a CoAP flow: the same signature id, the
			// signature naming the protocol.
			ev.Proto, ev.AppProto, ev.CoAP = "UDP", flow.AppCoAP.String(), f.CoAP
			ev.Alert.Signature = strings.Replace(ev.Alert.Signature, "MISSION MQTT ", "MISSION CoAP ", 1)
		} else {
			ev.MQTT = eveMQTTOf(f, a)
		}
	} else if n := len(a.Flows); n > 0 {
		ev.FlowID = a.Flows[n-1]
	}
	return e.write(&ev)
}

// Anomaly writes one anomaly event for flow r: event names what the
// decoder found (e.g. "mqtt.invalid_qos"), as Suricata's application
// layer anomalies do.
func (e *EVEWriter) Anomaly(r *flow.Record, event string) error {
	f := refOf(r)
	ev := eveEvent{EventType: "anomaly", Timestamp: r.Start.UTC().Format(EVETimeFormat), FlowID: r.FlowID,
		Proto: "TCP", AppProto: "mqtt", Anomaly: &eveAnomaly{Type: "applayer", Event: event, Layer: "proto_parser"}}
	ev.setEndpoints(f.Src, f.Dst)
	ev.MQTT = eveMQTTOf(&f, &Alert{Client: r.SrcClientID, Topic: r.Topic, Case: flow.CorrelationText(r.CorrelationData)})
	return e.write(&ev)
}

// Anomalies writes one anomaly event per protocol anomaly of flow r
// (events "mqtt.<name>", the names of docs/anomalies.md).
func (e *EVEWriter) Anomalies(r *flow.Record) error {
	for _, n := range r.Anomalies.Names() {
		if err := e.Anomaly(r, "mqtt."+n); err != nil {
			return err
		}
	}
	return nil
}

func (ev *eveEvent) setEndpoints(src, dst netip.AddrPort) {
	if src.IsValid() {
		ev.SrcIP, ev.SrcPort = src.Addr().String(), src.Port()
	}
	if dst.IsValid() {
		ev.DestIP, ev.DestPort = dst.Addr().String(), dst.Port()
	}
}

func eveMQTTOf(f *FlowRef, a *Alert) *eveMQTT {
	h := eveMQTTHeader{QoS: f.QoS, Retain: f.Retain, Dup: f.Dup}
	switch f.Type {
	case flow.Connect.String():
		return &eveMQTT{Connect: &eveMQTTConnect{eveMQTTHeader: eveMQTTHeader{}, ClientID: f.ClientID}}
	case flow.Publish.String():
		p := &eveMQTTPublish{eveMQTTHeader: h, Topic: a.Topic}
		if f.QoS > 0 {
			id := f.PacketID
			p.MessageID = &id
		}
		if a.Case != "" {
			p.Properties = &eveProperties{CorrelationData: a.Case}
		}
		return &eveMQTT{Publish: p}
	case flow.Subscribe.String():
		s := &eveMQTTSubscribe{eveMQTTHeader: eveMQTTHeader{QoS: 1}, MessageID: f.PacketID, Topics: []eveTopic{}}
		if a.Topic != "" {
			s.Topics = append(s.Topics, eveTopic{Topic: a.Topic, QoS: f.QoS})
		}
		return &eveMQTT{Subscribe: s}
	case flow.Unsubscribe.String():
		u := &eveMQTTUnsub{eveMQTTHeader: eveMQTTHeader{QoS: 1}, MessageID: f.PacketID, Topics: []string{}}
		if a.Topic != "" {
			u.Topics = append(u.Topics, a.Topic)
		}
		return &eveMQTT{Unsubscribe: u}
	}
	return nil
}

func (e *EVEWriter) write(ev *eveEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("mining: EVE event: %w", err)
	}
	b = append(b, '\n')
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("mining: write EVE event: %w", err)
	}
	return nil
}

// Flush writes the buffered events out (one batch).
func (e *EVEWriter) Flush() error {
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("mining: flush EVE log: %w", err)
	}
	return nil
}

// Close flushes and closes the underlying writer if it is an io.Closer.
func (e *EVEWriter) Close() error {
	err := e.Flush()
	if c, ok := e.under.(io.Closer); ok {
		if cerr := c.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("mining: close EVE log: %w", cerr)
		}
	}
	return err
}
