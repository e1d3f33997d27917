package collector

import (
	"net/netip"
	"sort"

	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/ipfix"
)

// Metrics emits the collector's counters, per exporter (a metrics.Func).
func (c *Collector) Metrics(e metrics.Emitter) {
	t := c.Stats()
	e.Counter("mission_collector_messages_total", "IPFIX messages received.", float64(t.Messages))
	e.Counter("mission_collector_records_total", "Flow records decoded, by kind.", float64(t.MQTTFlows), "kind", "mqtt")
	e.Counter("mission_collector_records_total", "Flow records decoded, by kind.", float64(t.CoAPFlows), "kind", "coap")
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
		e.Counter("mission_collector_exporter_records_invalid_total", "Data records dropped as not valid flows, per exporter.", float64(s.InvalidRecords), "exporter", ex)
		e.Counter("mission_collector_exporter_malformed_total", "Malformed messages per exporter.", float64(s.Malformed), "exporter", ex)
		e.Counter("mission_collector_exporter_template_misses_total", "Data sets dropped without template, per exporter.", float64(s.TemplateMisses), "exporter", ex)
		e.Counter("mission_collector_exporter_records_lost_total", "Records lost according to sequence numbers, per exporter.", float64(s.RecordsLost), "exporter", ex)
		e.Counter("mission_collector_exporter_denied_total", "Messages refused by the allow-list, per exporter.", float64(s.Denied), "exporter", ex)
		e.Gauge("mission_collector_exporter_templates", "Templates held for the exporter's last session.", float64(s.TemplatesActive), "exporter", ex)
	}
	c.tcpMetrics(e)
	c.ids.metrics(e)
	for reason, n := range c.InvalidRecords() {
		e.Counter("mission_collector_records_invalid_total", "Data records dropped as not valid flows, by reason.", float64(n), "reason", reason.String())
	}
	c.budgetMetrics(e)
	if c.cfg.Journal != nil {
		c.cfg.Journal.Metrics(e)
	}
}

// Metrics emits the journal's counters (a metrics.Func).
func (j *Journal) Metrics(e metrics.Emitter) {
	s := j.Stats()
	e.Gauge("mission_collector_journal_bytes", "Bytes of received messages journaled and not yet known stored.", float64(s.Bytes))
	e.Gauge("mission_collector_journal_max_bytes", "Bound on the journal.", float64(s.MaxBytes))
	e.Gauge("mission_collector_journal_segments", "Journal segment files.", float64(s.Segments))
	e.Counter("mission_collector_journal_messages_total", "Received messages journaled.", float64(s.Messages))
	e.Counter("mission_collector_journal_full_total", "Messages that met a full journal: UDP dropped, TCP held back.", float64(s.FullDropped), "transport", "udp")
	e.Counter("mission_collector_journal_full_total", "Messages that met a full journal: UDP dropped, TCP held back.", float64(s.FullWaits), "transport", "tcp")
	e.Counter("mission_collector_journal_unjournaled_total", "Messages decoded without a journal record (journal failed, or full at shutdown).", float64(s.Unjournaled))
	e.Counter("mission_collector_journal_write_errors_total", "Journal writes, fsyncs or deletions that failed.", float64(s.WriteErrors))
	e.Counter("mission_collector_journal_replayed_total", "Messages of an earlier run decoded again at start.", float64(s.Replayed))
	e.Counter("mission_collector_journal_torn_total", "Unreadable journal records at replay (each ends its segment).", float64(s.Torn))
}

// maxExporterSeries bounds the per-exporter state series (a spoofed flood
// has thousands of addresses): the exporters holding the most are named,
// the rest summed under exporter="other".
const maxExporterSeries = 256

// budgetMetrics emits the template state gauges and evictions.
func (c *Collector) budgetMetrics(e metrics.Emitter) {
	b := c.Budget()
	u, lim := b.Usage(), b.Limits()
	e.Gauge("mission_collector_sessions", "IPFIX template scopes held (transport session × observation domain).", float64(u.Sessions))
	e.Gauge("mission_collector_templates", "IPFIX templates held.", float64(u.Templates))
	e.Gauge("mission_collector_template_fields", "Fields of the IPFIX templates held.", float64(u.Fields))
	e.Gauge("mission_collector_pending_bytes", "Bytes of data sets held waiting for their template (with bookkeeping).", float64(u.PendingBytes))
	limits := ipfix.Usage{Sessions: lim.MaxSessions, Templates: lim.MaxTemplates, Fields: lim.MaxTemplateFields, PendingBytes: lim.MaxPendingBytes}
	for _, r := range ipfix.AllResources() {
		e.Gauge("mission_collector_state_limit", "Bound on the IPFIX template state, by resource.", float64(limits.Get(r)), "resource", r.String())
	}
	exs := b.Exporters()
	sort.Slice(exs, func(i, j int) bool {
		a, b := exs[i], exs[j]
		if a.Usage.Fields != b.Usage.Fields {
			return a.Usage.Fields > b.Usage.Fields
		}
		if a.Usage.PendingBytes != b.Usage.PendingBytes {
			return a.Usage.PendingBytes > b.Usage.PendingBytes
		}
		return a.Usage.Sessions > b.Usage.Sessions
	})
	var other ipfix.ExporterUsage
	for i, x := range exs {
		if i >= maxExporterSeries {
			other.Usage.Sessions += x.Usage.Sessions
			other.Usage.Templates += x.Usage.Templates
			other.Usage.Fields += x.Usage.Fields
			other.Usage.PendingBytes += x.Usage.PendingBytes
			other.Evictions.Sessions += x.Evictions.Sessions
			other.Evictions.Templates += x.Evictions.Templates
			other.Evictions.Fields += x.Evictions.Fields
			other.Evictions.PendingBytes += x.Evictions.PendingBytes
			continue
		}
		emitExporterState(e, exporterLabel(x.Exporter), x)
	}
	if len(exs) > maxExporterSeries {
		emitExporterState(e, "other", other)
	}
}

func exporterLabel(a netip.Addr) string {
	if !a.IsValid() {
		return "file"
	}
	return a.String()
}

func emitExporterState(e metrics.Emitter, ex string, x ipfix.ExporterUsage) {
	e.Gauge("mission_collector_exporter_sessions", "IPFIX template scopes held, per exporter.", float64(x.Usage.Sessions), "exporter", ex)
	e.Gauge("mission_collector_exporter_templates_held", "IPFIX templates held, per exporter.", float64(x.Usage.Templates), "exporter", ex)
	e.Gauge("mission_collector_exporter_template_fields", "Fields of the IPFIX templates held, per exporter.", float64(x.Usage.Fields), "exporter", ex)
	e.Gauge("mission_collector_exporter_pending_bytes", "Bytes waiting for their template, per exporter.", float64(x.Usage.PendingBytes), "exporter", ex)
	for _, r := range ipfix.AllResources() {
		if n := x.Evictions.Get(r); n > 0 {
			e.Counter("mission_collector_evictions_total", "IPFIX template state evicted because a bound was hit, per exporter and resource.", float64(n), "exporter", ex, "resource", r.String())
		}
	}
}
