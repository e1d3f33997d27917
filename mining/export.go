package mining

import (
	"bufio"
	"encoding/csv"
	"encoding/xml"
	"io"
	"strconv"
	"time"
)

// TimeFormat is the timestamp format of the XES and CSV exports: ISO 8601
// in UTC with nanoseconds (xs:dateTime; pandas and PM4Py parse it).
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// CSVHeader is the header of WriteCSV: PM4Py's standard column names,
// then the topic and the flow id.
var CSVHeader = []string{"case:concept:name", "concept:name", "time:timestamp", "org:resource", "topic", "flowId"}

// WriteCSV writes the process view as CSV, one row per event, cases in
// order of their first event and events in time order. PM4Py reads it with
// pm4py.format_dataframe(pd.read_csv(f), case_id="case:concept:name",
// activity_key="concept:name", timestamp_key="time:timestamp").
func (l *EventLog) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	row := make([]string, len(CSVHeader))
	for _, tr := range l.Traces() {
		for i := range tr.Events {
			e := &tr.Events[i]
			row[0], row[1], row[2], row[3] = e.Case, e.Activity(), e.Time.UTC().Format(TimeFormat), e.Client
			row[4], row[5] = e.Topic, strconv.FormatUint(e.FlowID, 10)
			if err := cw.Write(row); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

const xesHeader = `<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016" xes.features="" xmlns="http://www.xes-standard.org/">
  <extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
  <extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
  <extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
  <global scope="trace">
    <string key="concept:name" value="__INVALID__"/>
  </global>
  <global scope="event">
    <string key="concept:name" value="__INVALID__"/>
    <date key="time:timestamp" value="1970-01-01T00:00:00.000000000Z"/>
    <string key="org:resource" value="__INVALID__"/>
  </global>
  <classifier name="Activity" keys="concept:name"/>
  <classifier name="Resource" keys="org:resource"/>
  <string key="concept:name" value="MQTT flows (mission)"/>
`

// WriteXES writes the process view as an IEEE 1849-2016 XES log: one trace
// per case (concept:name = correlation id), one event per PUBLISH with
// concept:name (activity), org:resource (source client), time:timestamp
// (flow start) and two plain attributes, topic and flowId.
func (l *EventLog) WriteXES(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(xesHeader)
	for _, tr := range l.Traces() {
		bw.WriteString("  <trace>\n")
		xesAttr(bw, "    ", "string", "concept:name", tr.Case)
		for i := range tr.Events {
			e := &tr.Events[i]
			bw.WriteString("    <event>\n")
			xesAttr(bw, "      ", "string", "concept:name", e.Activity())
			xesAttr(bw, "      ", "string", "org:resource", e.Client)
			xesAttr(bw, "      ", "date", "time:timestamp", e.Time.UTC().Format(TimeFormat))
			xesAttr(bw, "      ", "string", "topic", e.Topic)
			xesAttr(bw, "      ", "int", "flowId", strconv.FormatUint(e.FlowID, 10))
			bw.WriteString("    </event>\n")
		}
		bw.WriteString("  </trace>\n")
	}
	bw.WriteString("</log>\n")
	return bw.Flush()
}

func xesAttr(w *bufio.Writer, indent, typ, key, value string) {
	w.WriteString(indent)
	w.WriteString("<")
	w.WriteString(typ)
	w.WriteString(` key="`)
	xml.EscapeText(w, []byte(key))
	w.WriteString(`" value="`)
	xml.EscapeText(w, []byte(value))
	w.WriteString("\"/>\n")
}

// formatDuration renders a duration for DOT labels: 3 significant digits.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'g', 3, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'g', 3, 64) + "ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'g', 3, 64) + "s"
	}
}
