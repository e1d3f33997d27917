package collector

import (
	"github.com/mission-ids/mission/internal/metrics"
)

// Metrics emits the collector's counters, per exporter (a metrics.Func).
func (c *Collector) Metrics(e metrics.Emitter) {
	t := c.Totals()
	e.Counter("mission_collector_messages_total", "IPFIX messages received.", float64(t.Messages))
	e.Counter("mission_collector_records_total", "Flow records decoded, by kind.", float64(t.MQTTFlows), "kind", "mqtt")
	e.Counter("mission_collector_records_total", "Flow records decoded, by kind.", float64(t.OtherFlows), "kind", "other")
	e.Counter("mission_collector_options_records_total", "Options data records (exporter statistics), not stored.", float64(t.OptionsRecords))
	e.Counter("mission_collector_malformed_messages_total", "IPFIX messages rejected as malformed.", float64(t.Malformed))
	e.Counter("mission_collector_denied_total", "Messages or connections from exporters outside the allow-list.", float64(t.Denied))
	e.Counter("mission_collector_store_errors_total", "Batches the store refused (documents dropped; see store metrics).", float64(t.StoreErrors))
	for addr, s := range c.Exporters() {
		ex := addr.String()
		if !addr.IsValid() {
			ex = "file"
		}
		e.Counter("mission_collector_exporter_messages_total", "IPFIX messages per exporter.", float64(s.Messages), "exporter", ex)
		e.Counter("mission_collector_exporter_records_total", "Data records per exporter.", float64(s.Records), "exporter", ex)
		e.Counter("mission_collector_exporter_malformed_total", "Malformed messages per exporter.", float64(s.Malformed), "exporter", ex)
		e.Counter("mission_collector_exporter_template_misses_total", "Data sets dropped without template, per exporter.", float64(s.TemplateMisses), "exporter", ex)
		e.Counter("mission_collector_exporter_records_lost_total", "Records lost according to sequence numbers, per exporter.", float64(s.RecordsLost), "exporter", ex)
		e.Counter("mission_collector_exporter_denied_total", "Messages refused by the allow-list, per exporter.", float64(s.Denied), "exporter", ex)
		e.Gauge("mission_collector_exporter_templates", "Templates held for the exporter's last session.", float64(s.TemplatesActive), "exporter", ex)
	}
	c.tcpMetrics(e)
}
