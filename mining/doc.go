// Package mining is the process-mining core of MQTT and CoAP intrusion detection:
// it turns flow records into an event log, exports it, discovers
// a directly-follows graph, learns a model of normal behaviour, measures the
// model on held-out data and checks live flows against it.
//
// Event log, as in the original study: case = MQTT v5 correlation id
// (flow.CorrelationText of Record.CorrelationData), activity = "source
// client → topic", resource = source client, timestamp = flow start; only
// PUBLISH flows with a correlation id are in the process view. The broker
// side (flow.BrokerClientID, or an endpoint that received a CONNECT) is
// named "broker"; a client without client id is named by a names table
// (Names, mission --names) or by address:port. CoAP flows (coap.go) are
// activities "client → METHOD /path" ("server → NOTIFY /path" for an
// Observe notification), endpoints named by the names table or their IP
// address without port; they are checked case-free (coapcheck.go) and, with
// a correlation id, as process events.
//
// Typical use:
//
//	log, err := mining.ReadJSONLines(r)         // or mining.FromRecords(recs)
//	train, test := log.SplitByTime(0.7)
//	model, err := mining.Learn(train, mining.LearnOptions{})
//	q := mining.Evaluate(model, test)
//	mining.DiscoverDFG(log, mining.DFGOptions{MinEdgeCount: 5}).WriteDOT(w)
//	log.WriteXES(w); log.WriteCSV(w); model.WriteJSON(w)
//
//	d := mining.NewDetector(model, mining.DetectorOptions{})
//	for each flow:  alerts := d.Observe(&rec)
//	every second:   alerts := d.Advance(now)
//	at the end:     alerts := d.Flush()
//
// A Monitor runs a Detector as a service beside a collector: it takes
// flows from any goroutine (Observe, the collector's Flows hook), advances
// the detector on a clock (a 250 ms wall-clock ticker unless one is
// given), logs every alert, hands it to an AlertSink (the store's
// AlertWriter) and exports metrics:
//
//	model, err := mining.ReadModelFile(path)
//	mon := mining.NewMonitor(model, sink, log, mining.MonitorOptions{})
//	cfg.Flows = mon.Observe
//	metrics.Serve(ctx, addr, log, mon.Metrics)
//	err = mon.Close(ctx) // reports the cases still open, closes the sink
//
// The detector is split by job: its options (detect_options.go), the
// model compiled for look-ups (compile.go), the checks of each flow as it
// arrives and of each event once its order is settled (checks.go), the
// queue of events waiting for that (reorder.go), the table of open cases
// in least-recently-seen order (cases.go), the checks of a case when it
// ends (endcase.go), the connections picked up midstream without client
// id — identity inferred from the model, or one unidentified-connection
// notice, and the cases cut at capture boundaries (identity.go) — and the
// alerts (alert.go); detect.go ties them
// together. The log skeleton is written once (skeleton.go): what each
// relation means on a case, and a model's constraints compiled for
// checking, used by Learn, Evaluate and the Detector alike.
//
// Besides the Monitor and ReadModelFile, the package does no I/O except
// on the io.Reader/io.Writer it is given, starts no goroutines and does
// not log. A Detector is not safe for concurrent use; its memory is
// bounded (DetectorOptions). See docs/detection.md for the model format
// and the checks.
package mining
