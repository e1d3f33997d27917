package mining

import (
	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
)

// CoAP flows as events (docs/detection.md, "CoAP"). A CoAP flow is one
// exchange (docs/coap.md, "Flows"); the event log sees it as one of:
//
//   - a request (CON or NON with a method): the activity
//     "client → METHOD /path", the client named by the Namer (its IP
//     address without the ephemeral port, or its names-table name), the
//     path "/" when the request has none, the query string left out;
//   - an Observe notification (server → client, carrying the
//     registration's method and path): the activity "server → NOTIFY
//     /path". The server sends it, unasked: it is the server's act, like a
//     broker's delivery in MQTT, and it must neither count as a request of
//     the client (a notification stream would look like a GET flood) nor
//     share the registration's activity (a case would show the GET twice).
//     It is case-free even with a correlation id: the probe gives a
//     notification its registration's case key, so every notification of
//     an observation would join one case that grows as long as the
//     observation lasts;
//   - an empty message (a ping: empty CON and its RST; or a flow opened by
//     a RST): no activity; it counts towards the client's rate of empty
//     messages only, like an MQTT PINGREQ carries no process step;
//   - a later block of a block-wise transfer (Block1 or Block2 number
//     above 0): no activity — the transfer is one step however many blocks
//     it takes — counted in the client's rate of blocks.

// CoAPKind is what a CoAP flow is to the event log.
type CoAPKind uint8

// CoAP kinds (0: not a CoAP flow).
const (
	CoAPRequest      CoAPKind = 1 + iota // a request with its response
	CoAPNotification                     // an Observe notification
	CoAPEmpty                            // a ping (empty CON) or a flow opened by a RST
	CoAPBlock                            // a block after the first of a block-wise transfer
)

var coapKindNames = [...]string{"", "CoAP request", "CoAP notification", "CoAP empty message", "CoAP block"}

// String names the kind ("CoAP request" …).
func (k CoAPKind) String() string {
	if int(k) < len(coapKindNames) {
		return coapKindNames[k]
	}
	return "CoAP"
}

// NotifyMethod is the method word of a notification's activity.
const NotifyMethod = "NOTIFY"

// CoAPTopic is the second half of a CoAP activity: "METHOD /path".
func CoAPTopic(method, path string) string {
	if path == "" {
		path = "/"
	}
	return method + " " + path
}

// coapEvent classifies a CoAP flow: its kind, method name, path and the
// topic of its activity ("" for kinds without one).
func coapEvent(c *flow.CoAP) (kind CoAPKind, method, path, topic string) {
	path = c.URIPath
	if path == "" {
		path = "/"
	}
	method = coapMethodName(c.Method)
	code := coapparse.Code(c.Code)
	switch {
	case code.IsEmpty() || coapparse.Type(c.Type) == coapparse.Reset:
		return CoAPEmpty, "", "", ""
	case c.BlockOption != flow.BlockNone && c.Block>>4 > 0:
		return CoAPBlock, method, path, ""
	case code.IsResponse():
		return CoAPNotification, method, path, CoAPTopic(NotifyMethod, path)
	}
	return CoAPRequest, method, path, CoAPTopic(method, path)
}

// caseFree reports a CoAP flow that is in no case whatever its
// correlation id: an Observe notification (it carries its registration's).
func caseFree(c *flow.CoAP) bool { return coapparse.Code(c.Code).IsResponse() }

// coapError reports a request (or block) answered with a client or server
// error (4.xx, 5.xx).
func coapError(k CoAPKind, c *flow.CoAP) bool {
	cl := coapparse.Code(c.ResponseCode).Class()
	return (k == CoAPRequest || k == CoAPBlock) && c.ResponseCode != 0 && (cl == 4 || cl == 5)
}

// coapMethodName is the method's registered name ("GET"), or its code
// ("0.08") for an unassigned one.
func coapMethodName(m uint8) string {
	if m == 0 {
		return ""
	}
	if n := coapparse.Code(m).Name(); n != "" {
		return n
	}
	return coapparse.Code(m).String()
}

// coapMethodCode is the inverse of coapMethodName.
func coapMethodCode(name string) (uint8, bool) {
	for c := coapparse.Code(1); c < 32; c++ {
		if c.Name() == name || c.String() == name {
			return uint8(c), true
		}
	}
	return 0, false
}

// safeMethod reports a method that does not change the resource (GET,
// FETCH).
func safeMethod(m uint8) bool {
	return coapparse.Code(m) == coapparse.GET || coapparse.Code(m) == coapparse.FETCH
}

// isCoAP reports a flow with a CoAP part.
func isCoAP(r *flow.Record) bool { return r.CoAP != nil && r.ApplicationProtocol == flow.AppCoAP }
