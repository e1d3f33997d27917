package mining

import (
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
)

// Check names a detection check; every alert has exactly one.
type Check string

// Checks.
const (
	CheckUnknownActivity    Check = "unknown-activity"    // PUBLISH by a client on a topic never seen together
	CheckUnknownClient      Check = "unknown-client"      // a flow from a client the model does not know
	CheckDirectlyFollows    Check = "directly-follows"    // case start, step or end not in the directly-follows model
	CheckSkeleton           Check = "skeleton"            // log-skeleton constraint violated
	CheckTemporal           Check = "temporal"            // time between two activities of a case far from normal
	CheckRate               Check = "rate"                // PUBLISH / SUBSCRIBE / CONNECT rate above the learned bound
	CheckSubscription       Check = "subscription"        // wildcard or $SYS subscription by a client that never made one
	CheckMissingCorrelation Check = "missing-correlation" // PUBLISH without correlation id on a topic that always has one
	// CheckUnsubscribedDelivery: the broker delivered a PUBLISH to a client
	// none of whose subscriptions seen in this run matches the topic.
	CheckUnsubscribedDelivery Check = "unsubscribed-delivery"
	// CheckProtocolAnomaly: a flow carries protocol anomalies of its
	// packets (flow.Anomaly; docs/anomalies.md) that are not benign
	// (DetectorOptions.BenignAnomalies).
	CheckProtocolAnomaly Check = "protocol-anomaly"
	// CheckUnidentifiedConnection (identity.go) and CheckUnusualMethod
	// (coapcheck.go) are declared there.
)

// Severity ranks alerts.
type Severity string

// Severities.
const (
	SeverityLow    Severity = "low"
	SeverityMedium Severity = "medium"
	SeverityHigh   Severity = "high"
)

// Alert is one detection. Flows are the flow ids involved (at most
// maxAlertFlows, the most recent last).
type Alert struct {
	Check    Check     `json:"check"`
	Severity Severity  `json:"severity"`
	Time     time.Time `json:"time"`
	Client   string    `json:"client,omitempty"`
	Topic    string    `json:"topic,omitempty"`
	Case     string    `json:"case,omitempty"`
	Flows    []uint64  `json:"flows,omitempty"`
	Message  string    `json:"message"`
	// Anomalies are the protocol anomalies of a protocol-anomaly alert.
	Anomalies []string `json:"anomalies,omitempty"`
	// Flow is the flow that raised the alert (the last of Flows): its
	// endpoints and MQTT header, for incidents and EVE output.
	Flow *FlowRef `json:"flow,omitempty"`
}

// FlowRef is what an alert keeps of its triggering flow.
type FlowRef struct {
	ID    uint64         `json:"id"`
	Start time.Time      `json:"start"`
	Type  string         `json:"type"`
	Src   netip.AddrPort `json:"src"`
	Dst   netip.AddrPort `json:"dst"`
	QoS   uint8          `json:"qos"`
	// Retain, Dup and PacketID are the MQTT header's.
	Retain   bool   `json:"retain,omitempty"`
	Dup      bool   `json:"dup,omitempty"`
	PacketID uint16 `json:"packetId,omitempty"`
	// ClientID is the MQTT client id of the flow's source as captured
	// (empty for the broker side); DstClientID that of its destination.
	ClientID    string `json:"clientId,omitempty"`
	DstClientID string `json:"dstClientId,omitempty"`
	// Identity is "inferred" when the client id was inferred by the
	// detector from the model (identity.go), empty otherwise.
	Identity string `json:"identity,omitempty"`
	// CoAP is the CoAP header of a CoAP flow (nil for MQTT). Type is then
	// the flow's kind ("CoAP request", CoAPKind).
	CoAP *CoAPRef `json:"coap,omitempty"`
}

// CoAPRef is what an alert keeps of a CoAP flow.
type CoAPRef struct {
	Type         string `json:"type"`             // of the initiating message: CON, NON, ACK, RST
	Code         string `json:"code"`             // of the initiating message: "0.01"
	Method       string `json:"method,omitempty"` // the request's (a notification: the registration's)
	Path         string `json:"path,omitempty"`
	Query        string `json:"query,omitempty"`
	MessageID    uint16 `json:"messageId"`
	Token        string `json:"token,omitempty"`        // lowercase hex
	ResponseCode string `json:"responseCode,omitempty"` // "2.05"
}

// refOf returns the FlowRef of r.
func refOf(r *flow.Record) FlowRef {
	ref := FlowRef{ID: r.FlowID, Start: r.Start, Type: r.ControlType.String(), QoS: r.QoS,
		Retain: r.Retain, Dup: r.Dup, PacketID: r.PacketID,
		ClientID: r.SrcClientID, DstClientID: r.DstClientID}
	if r.SrcAddr.IsValid() {
		ref.Src = netip.AddrPortFrom(r.SrcAddr.Unmap(), r.SrcPort)
	}
	if r.DstAddr.IsValid() {
		ref.Dst = netip.AddrPortFrom(r.DstAddr.Unmap(), r.DstPort)
	}
	if r.IdentitySource == flow.IdentityInferred {
		ref.Identity = flow.IdentityInferred.String()
	}
	if c := r.CoAP; isCoAP(r) {
		kind, method, path, _ := coapEvent(c)
		ref.Type, ref.QoS, ref.Retain, ref.Dup, ref.PacketID = kind.String(), 0, false, false, 0
		ref.CoAP = &CoAPRef{Type: coapparse.Type(c.Type).String(), Code: coapparse.Code(c.Code).String(),
			Method: method, Path: path, Query: c.URIQuery, MessageID: c.MessageID, Token: hex.EncodeToString(c.Token)}
		if kind == CoAPEmpty {
			ref.CoAP.Path = ""
		}
		if c.ResponseCode != 0 {
			ref.CoAP.ResponseCode = coapparse.Code(c.ResponseCode).String()
		}
	}
	if ref.ClientID == flow.BrokerClientID {
		ref.ClientID = ""
	}
	if ref.DstClientID == flow.BrokerClientID {
		ref.DstClientID = ""
	}
	return ref
}

// ref returns a copy of f for an alert.
func ref(f FlowRef) *FlowRef { return &f }

const maxAlertFlows = 16

// lastFlows returns the flow ids of an alert: flows, ending with cur, at
// most maxAlertFlows of them (the most recent), in a new slice.
func lastFlows(flows []uint64, cur uint64) []uint64 {
	if n := len(flows); n == 0 || flows[n-1] != cur {
		flows = append(flows[:n:n], cur)
	}
	if len(flows) > maxAlertFlows {
		flows = flows[len(flows)-maxAlertFlows:]
	}
	return append([]uint64(nil), flows...)
}
