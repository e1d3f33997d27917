package mining

import (
	"fmt"
	"strings"

	"github.com/mission-ids/mission/flow"
)

// The checks of a CoAP flow (docs/detection.md, "CoAP"). CoAP has no
// sessions and no broker: endpoints are named by the names table or
// their IP address (Namer.Host), so a client that sends from a new
// ephemeral port is the same client. Case-free checks: unknown client,
// unknown activity, rates (per client and kind, per activity, all
// clients together), unusual method. Case-based checks: a request or
// notification with a correlation id (the probe's --coap-case-option) is
// a process event like a PUBLISH with one, when the model has CoAP cases.

// CheckUnusualMethod: a CoAP request with a method the model never saw on
// that resource (server and path), which saw others.
const CheckUnusualMethod Check = "unusual-method"

// CheckErrorBurst: more CoAP requests of a client (or of all clients
// together) answered 4.xx or 5.xx in one rate window than the learned
// bound (resource scanning).
const CheckErrorBurst Check = "error-burst"

// coap checks one CoAP flow.
func (d *Detector) coap(out []Alert, r *flow.Record) []Alert {
	kind, method, path, topic := coapEvent(r.CoAP)
	client := d.namer.Host(r.SrcAddr, r.SrcPort)
	t := r.Start
	if d.coapCutUntil.IsZero() {
		// The first CoAP flow is where the capture starts for CoAP:
		// cases starting within the cut window may miss their first
		// events (there is no session start to tell).
		d.coapCutUntil = t.Add(d.cutWindow)
	}
	if d.clients[client] == nil && d.once(CheckUnknownClient, client, "", t) {
		what := kind.String()
		if topic != "" {
			what = "CoAP " + topic
		}
		out = d.emit(out, Alert{
			Check: CheckUnknownClient, Severity: SeverityMedium, Time: t, Client: client, Topic: topic,
			Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
			Message: fmt.Sprintf("%s from client %q, never seen in training", what, client),
		})
	}
	if a := r.Anomalies &^ d.benign; a != 0 {
		out = d.anomaly(out, client, r, a)
	}
	if r.EndReason == flow.EndAnomaly {
		return out
	}
	rk := coapRate(kind)
	out = d.rateOf(out, [2]string{client, TotalClient}, rk, r)
	if coapError(kind, r.CoAP) {
		out = d.rateOf(out, [2]string{client, TotalClient}, rateCoAPErrors, r)
	}
	if topic == "" {
		return out // a ping, a reset, a later block: counted, no activity
	}
	if act, ok := d.actID[actKey{client, topic}]; ok {
		out = d.activityRate(out, client, act, rk, r)
	}
	if kind == CoAPRequest {
		out = d.unusualMethod(out, client, d.namer.Host(r.DstAddr, r.DstPort), method, path, r)
	}
	return d.activity(out, client, topic, r, false)
}

// unusualMethod alerts on a request whose method the model never saw on
// the resource, which saw other methods: high for a method that changes
// the resource (POST, PUT, DELETE, PATCH, iPATCH) where only safe ones
// (GET, FETCH) were seen, medium otherwise. Once per client and
// "METHOD /path" within Repeat.
func (d *Detector) unusualMethod(out []Alert, client, server, method, path string, r *flow.Record) []Alert {
	seen, known := d.resources[resourceKey{server, path}]
	m := r.CoAP.Method
	if !known || m >= 32 || seen&(1<<m) != 0 {
		return out
	}
	topic := CoAPTopic(method, path)
	if !d.once(CheckUnusualMethod, client, topic, r.Start) {
		return out
	}
	var names []string
	onlySafe := true
	for c := uint8(1); c < 32; c++ {
		if seen&(1<<c) != 0 {
			names = append(names, coapMethodName(c))
			onlySafe = onlySafe && safeMethod(c)
		}
	}
	sev := SeverityMedium
	if onlySafe && !safeMethod(m) {
		sev = SeverityHigh
	}
	return d.emit(out, Alert{
		Check: CheckUnusualMethod, Severity: sev, Time: r.Start, Client: client, Topic: topic,
		Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
		Message: fmt.Sprintf("%s on %s of %s by %q; only %s in training", method, path, server, client, strings.Join(names, ", ")),
	})
}
