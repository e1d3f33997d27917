package mining

import "time"

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
}

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
