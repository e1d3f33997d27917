package probe

import (
	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/mqttparse"
	"github.com/mission-ids/mission/probe/coaptrack"
)

// Metrics emits the probe's counters (a metrics.Func).
func (p *Probe) Metrics(e metrics.Emitter) {
	s := p.Stats()
	c := func(name, help string, v uint64, labels ...string) {
		e.Counter("mission_probe_"+name, help, float64(v), labels...)
	}
	g := func(name, help string, v int) { e.Gauge("mission_probe_"+name, help, float64(v)) }
	c("packets_total", "Frames read from the capture source.", s.Packets)
	c("bytes_total", "Bytes of the frames read (wire length).", s.Bytes)
	c("kernel_received_total", "Packets the kernel delivered to the capture socket.", s.KernelReceived)
	c("kernel_dropped_total", "Packets the kernel dropped because the capture socket was full.", s.KernelDropped)
	c("frames_skipped_total", "Frames not used, by reason.", s.Filtered, "reason", "filtered")
	c("frames_skipped_total", "Frames not used, by reason.", s.NotTCP, "reason", "not_tcp")
	c("frames_skipped_total", "Frames not used, by reason.", s.Fragments, "reason", "ip_fragment")
	c("frames_skipped_total", "Frames not used, by reason.", s.DecodeErrors, "reason", "malformed")
	c("frames_skipped_total", "Frames not used, by reason.", s.Unsupported, "reason", "unsupported_link")
	c("frames_skipped_total", "Frames not used, by reason.", s.TLSPackets, "reason", "mqtt_tls")
	c("frames_skipped_total", "Frames not used, by reason.", s.OtherTCP, "reason", "other_port")
	c("mqtt_segments_total", "TCP segments on the MQTT ports.", s.MQTTSegments)
	c("frames_skipped_total", "Frames not used, by reason.", s.DTLSPackets, "reason", "coap_dtls")
	c("frames_skipped_total", "Frames not used, by reason.", s.OtherUDP, "reason", "other_udp_port")
	c("coap_datagrams_total", "UDP datagrams on the CoAP ports.", s.CoAPDatagrams)
	k := s.CoAP
	for typ, v := range k.Messages {
		c("coap_messages_total", "CoAP messages decoded, by type.", v, "type", coapparse.Type(typ).String())
	}
	c("coap_parse_errors_total", "CoAP datagrams that are not CoAP messages, and messages that broke a rule.", k.Malformed, "kind", "malformed")
	c("coap_parse_errors_total", "CoAP datagrams that are not CoAP messages, and messages that broke a rule.", k.Violations, "kind", "violation")
	c("coap_retransmissions_total", "Repeated CON/NON messages that joined their flow.", k.Retransmissions)
	c("coap_duplicates_total", "Copies of messages of exchanges that had ended.", k.Duplicates)
	c("coap_unmatched_total", "ACK, RST or responses with no exchange or observation to join.", k.Unmatched)
	c("coap_ignored_total", "Messages that start nothing (NON Empty, reserved codes).", k.Ignored)
	c("coap_superseded_total", "Open exchanges ended by a new request with their token.", k.Superseded)
	c("coap_case_keys_total", "Requests with the case option (--coap-case-option), by result.", k.CaseKeys, "result", "taken")
	c("coap_case_keys_total", "Requests with the case option (--coap-case-option), by result.", k.CaseKeysTooLong, "result", "too_long")
	c("coap_evicted_total", "Exchanges and observations dropped by a table bound, by table.", k.Evicted, "table", "open")
	c("coap_evicted_total", "Exchanges and observations dropped by a table bound, by table.", k.LingerEvicted, "table", "ended")
	c("coap_evicted_total", "Exchanges and observations dropped by a table bound, by table.", k.ObservationsEvicted, "table", "observations")
	for kind, v := range k.Flows {
		c("coap_flows_total", "CoAP flows emitted, by kind.", v, "kind", coaptrack.KindName(kind))
	}
	for reason := 1; reason < len(k.FlowsByEnd); reason++ {
		c("coap_flows_ended_total", "CoAP flows emitted, by flowEndReason.", k.FlowsByEnd[reason], "reason", flow.EndReason(reason).String())
	}
	g("coap_open_exchanges", "Open CoAP exchanges now.", k.Open)
	g("coap_ended_exchanges", "Ended CoAP exchanges kept to recognise late copies now.", k.Lingering)
	g("coap_observations", "CoAP Observe registrations known now.", k.Observations)

	r := s.Reassembly
	c("tcp_gaps_total", "Holes in TCP streams (lost segments).", r.Gaps)
	c("tcp_lost_bytes_total", "Bytes in those holes.", r.LostBytes)
	c("tcp_retransmitted_bytes_total", "Duplicate TCP bytes dropped.", r.RetransmitBytes)
	c("tcp_out_of_order_total", "Segments buffered because they came early.", r.OutOfOrder)
	c("tcp_buffer_overflows_total", "Gaps forced by a buffer bound.", r.BufferOverflows)
	c("tcp_midstream_total", "Stream directions picked up without their SYN.", r.Midstream)
	for reason, v := range map[string]uint64{"fin": r.ClosedFIN, "rst": r.ClosedRST, "idle": r.ClosedIdle,
		"evicted": r.Evicted, "reused": r.ClosedReused, "shutdown": r.ClosedShutdown} {
		c("tcp_connections_closed_total", "TCP connections released, by reason.", v, "reason", reason)
	}
	g("tcp_connections", "TCP connections tracked now.", r.Connections)
	g("tcp_buffered_bytes", "Out-of-order bytes held now.", r.BufferedBytes)

	t := s.Tracker
	for typ := 1; typ < 16; typ++ {
		name := mqttparse.Type(typ).String()
		c("mqtt_packets_total", "MQTT control packets decoded, by type.", t.Packets[typ], "type", name)
		if t.Unmatched[typ] > 0 {
			c("mqtt_unmatched_responses_total", "Responses without an open request, by type.", t.Unmatched[typ], "type", name)
		}
		c("flows_total", "Flows emitted, by initiating packet type.", t.Flows[typ], "type", flow.ControlType(typ).String())
	}
	for reason := 1; reason < len(t.FlowsByEnd); reason++ {
		c("flows_ended_total", "Flows emitted, by flowEndReason.", t.FlowsByEnd[reason], "reason", flow.EndReason(reason).String())
	}
	c("mqtt_parse_errors_total", "MQTT parse problems, by kind.", t.Malformed, "kind", "malformed")
	c("mqtt_parse_errors_total", "MQTT parse problems, by kind.", t.TooLarge, "kind", "too_large")
	c("mqtt_parse_errors_total", "MQTT parse problems, by kind.", t.FramingErrors, "kind", "framing")
	c("mqtt_parse_errors_total", "MQTT parse problems, by kind.", t.Violations, "kind", "violation")
	for bit, v := range t.ViolationsByBit {
		if v > 0 {
			c("mqtt_violations_total", "Specification MUSTs broken, by violation.", v, "violation", mqttparse.Violations(1<<bit).String())
		}
	}
	for i, a := range flow.AllAnomalies() {
		c("anomalies_total", "MQTT packets with a protocol anomaly, by anomaly (docs/anomalies.md).", t.Anomalies[i], "name", a.String())
	}
	c("mqtt_unmatched_excused_total", "Responses without request not taken as anomalies: their request may have passed unseen (midstream pickup, gap, early end).", t.Excused)
	c("mqtt_resyncs_total", "Times a stream found an MQTT packet boundary again.", t.Resyncs)
	c("mqtt_resync_dropped_bytes_total", "Bytes discarded while looking for a packet boundary.", t.ResyncDropped)
	c("mqtt_version_guessed_total", "Packets decoded without a known protocol level.", t.VersionGuessed)
	c("mqtt_superseded_total", "Open transactions replaced by a new request with the same key.", t.Superseded)
	g("mqtt_sessions", "MQTT connections tracked now.", t.Sessions)
	g("mqtt_open_transactions", "Open MQTT transactions now.", t.Open)

	c("flows_queued_total", "Flows handed to the export queue.", s.FlowsQueued)
	c("flows_dropped_total", "Flows dropped because the export queue was full (live capture; files wait).", s.FlowsDropped)
	c("flows_exported_total", "Flows exported.", s.FlowsExported)
	c("flows_lost_total", "Flows lost because export failed (write or send errors, collector unavailable past the connect timeout).", s.FlowsLost)
	c("export_errors_total", "Failed export attempts.", s.ExportErrors)
	g("export_queue_depth", "Flows waiting for export.", s.QueueDepth)
	e.Counter("mission_probe_export_wait_seconds_total", "Time a file capture waited for the exporter (backpressure on a full queue).", s.ExportWait.Seconds())
	c("flows_deferred_total", "Flows of batches an unavailable collector refused, kept in the queue and offered again.", s.FlowsDeferred)
	x := s.Export
	c("flows_resent_total", "Flows sent again after a TCP/TLS reconnect (the resend window).", x.FlowsResent)
	g("export_flows_held", "Flows waiting to be resent to the collector now.", x.FlowsHeld)
	c("export_datagrams_refused_total", "UDP datagrams refused by the collector host (ICMP port unreachable), sent again.", x.DatagramsRefused)
	c("export_reconnects_total", "TCP/TLS collector connections lost and re-established.", x.Reconnects)
	c("export_connect_failures_total", "Failed TCP/TLS connection attempts to the collector.", x.ConnectFailures)
	c("export_tls_rejected_total", "TLS connection attempts the collector rejected (e.g. our client certificate).", x.TLSRejected)
}
