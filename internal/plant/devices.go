// Package plant is the workload of the original MISSION study: a simulated
// plant of MQTT v5 sensors, one controller and actuators, run against a
// real broker. It is ordinary (non-test) code so that tests, the sample
// generator (cmd/record-sample) and later the process-mining work can all
// drive the same traffic.
//
// One reading makes one chain of PUBLISH transactions, all carrying the
// same MQTT v5 Correlation Data, fresh per reading:
//
//	temperatureSensor ─PUBLISH plant/sensors/temperature─► broker ─► controller
//	controller ─PUBLISH plant/actuators/thermostat/toggleState─► broker ─► thermostat
//	thermostat ─PUBLISH plant/actuators/thermostat/state─► broker (─► controller, with WatchStates)
//
// The sensors are temperature, motion, window, door and smoke; their
// actuators thermostat, LED, shutter, door opener and fire alarm.
//
// Everything the clients did — connections, subscriptions, publications,
// deliveries, disconnections, and each chain's correlation id — is kept in a
// Report, so a test can compute the flows a probe must see without looking
// at the probe's output.
package plant

// Sensor is one sensor client: it publishes a JSON reading to Topic in
// every round; the controller forwards it to Actuator.
type Sensor struct {
	Kind     string // "temperature", …
	ClientID string // MQTT client id, e.g. "temperatureSensor"
	Topic    string // e.g. "plant/sensors/temperature"
	Actuator string // Name of the actuator the controller forwards to
	Unit     string // unit of the value in the JSON reading
	Min, Max float64
}

// Actuator is one actuator client: it subscribes to ToggleTopic and answers
// every toggle with its new state on StateTopic, echoing the correlation data.
type Actuator struct {
	Name        string // "thermostat", …
	ClientID    string // MQTT client id, e.g. "thermostat"
	ToggleTopic string // e.g. "plant/actuators/thermostat/toggleState"
	StateTopic  string // e.g. "plant/actuators/thermostat/state"
}

// DefaultDevices returns the study's five sensors and their actuators,
// with topics under prefix (e.g. "plant").
func DefaultDevices(prefix string) ([]Sensor, []Actuator) {
	type pair struct {
		kind, unit   string
		min, max     float64
		name, client string
	}
	pairs := []pair{
		{"temperature", "°C", 15, 30, "thermostat", "thermostat"},
		{"motion", "", 0, 1, "led", "led"},
		{"window", "", 0, 1, "shutter", "shutter"},
		{"door", "", 0, 1, "doorOpener", "doorOpener"},
		{"smoke", "ppm", 0, 400, "fireAlarm", "fireAlarm"},
	}
	var ss []Sensor
	var as []Actuator
	for _, p := range pairs {
		ss = append(ss, Sensor{
			Kind: p.kind, ClientID: p.kind + "Sensor", Topic: prefix + "/sensors/" + p.kind,
			Actuator: p.name, Unit: p.unit, Min: p.min, Max: p.max,
		})
		as = append(as, Actuator{
			Name: p.name, ClientID: p.client,
			ToggleTopic: prefix + "/actuators/" + p.name + "/toggleState",
			StateTopic:  prefix + "/actuators/" + p.name + "/state",
		})
	}
	return ss, as
}
