// Package ipfix is a pure IPFIX codec (RFC 7011, 7012, 5655, 6313) with the
// per-session template state of RFC 7011 §8.
//
// The package does no I/O of its own: no sockets, no goroutines, no logging and
// no mutable globals. Sockets live in the probe and the collector.
//
// # Decoding
//
// A [Decoder] keeps one [Session] per transport session (exporter address,
// port and transport); a session scopes templates by observation domain. The
// fast path is callback based and does not allocate in the steady state:
//
//	dec := ipfix.NewDecoder(ipfix.Config{})
//	s, err := dec.Session(ipfix.SessionKey{Exporter: from, Transport: ipfix.UDP})
//	err = s.Decode(msg, func(rec ipfix.Record) error {
//		v, ok := rec.Get(0, 8) // sourceIPv4Address
//		...
//	})
//
// # Bounded state
//
// Every session charges its scopes (observation domains), templates,
// template fields and buffered data sets to a [Budget] shared by all
// sessions of a collector (Config.Budget). When one of its [Limits] is
// hit, the least recently used state of the exporter address holding the
// most of that resource is evicted and counted, so a flooding exporter
// loses its own state first and a quiet one keeps decoding. The per-
// session limits of [Config] apply as well.
//
// A [Record] and its [Value]s are views into msg (or into the session's
// buffer for data sets that arrived before their template) and are valid only
// during the callback: copy what must outlive it ([Value.String] and
// [Record.Map] copy).
//
// Integers honour reduced-size encoding (RFC 7011 §6.2): the length on the wire
// wins over the registry's default length. Unknown information elements decode
// as raw bytes named "f<id>" or "e<pen>_f<id>".
//
// # Encoding
//
// A [RecordEncoder] appends one data record's fields into a reusable buffer (0
// allocations); a [Builder] packs records into messages up to a size limit,
// sets export time and sequence numbers, and (re)sends templates according to
// the transport's policy. [FileWriter] and [FileReader] implement the IPFIX
// File Format (RFC 5655): a file is a sequence of messages.
//
// # Information elements
//
// The registry is a read-only table: the IANA elements the project and common
// exporters (softflowd, nfdump) use, plus the MQTT enterprise elements of the
// MISSION project under a configurable private enterprise number (default
// 9999, see [DefaultMQTTPEN]).
package ipfix
