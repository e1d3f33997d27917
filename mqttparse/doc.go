// Package mqttparse is a pure MQTT codec for a passive observer: bytes in,
// values out. It decodes every control packet of MQTT 3.1 (MQIsdp, level 3),
// 3.1.1 (level 4) and 5.0 (level 5), including all 27 MQTT 5.0 properties. It
// does no I/O, starts no goroutines, logs nothing and has no mutable globals.
//
// # Use
//
// A Framer cuts one direction of a reassembled TCP stream into packets;
// Decode fills a caller-owned, reusable Packet:
//
//	f := mqttparse.NewFramer(0) // 1 MiB maximum packet
//	var p mqttparse.Packet
//	f.Feed(chunk)
//	for {
//		raw, err := f.Next()
//		if errors.Is(err, mqttparse.ErrTooLarge) {
//			continue // skipped and counted; stream still in sync
//		}
//		if err != nil {
//			break // *FramingError: direction broken; FindSync + Reset to resume
//		}
//		if raw == nil {
//			break // need more bytes
//		}
//		_, err = mqttparse.Decode(raw, version, &p)
//		// err nil, ErrViolation (p filled, see p.Violations) or ErrMalformed
//	}
//
// # Lifetimes (zero copy)
//
// Every []byte in a Packet (topic, payload, client id, properties, filters…)
// is a view into the buffer given to Decode; a packet returned by
// Framer.Next is a view into the fed chunk or the framer's own buffer and is
// valid until the next Next or Feed. Copy what must outlive that. Strings
// are returned as []byte because converting without a copy would need
// unsafe. The password of a CONNECT is never exposed, only its presence and
// length. Decoding into a reused Packet allocates nothing: its slices
// (user properties, subscription identifiers, topic filters, reason codes)
// are reset to length 0 and capped (MaxUserProperties…).
//
// # Versions
//
// The same bytes mean different things in 3.1.1 and 5.0, so Decode takes the
// version learned from the connection's CONNECT. CONNECT itself is decoded
// under its own protocol level. VersionUnknown (capture started after the
// CONNECT) makes Decode guess, 5.0 first, as documented on Decode, and
// report the choice in Packet.Version and Packet.VersionGuessed.
//
// # Errors
//
// ErrIncomplete: wait for more bytes. ErrMalformed: the bytes are not MQTT
// (a *FramingError from a Framer — the direction is broken; a *DecodeError
// from Decode — this packet's body is broken, the stream is still in sync).
// ErrViolation: the packet decoded but breaks a MUST of the specification;
// the Packet is filled and Packet.Violations lists the breaches, because an
// IDS wants to see them. ErrTooLarge: a Framer skipped a packet over its
// maximum. Use errors.Is and errors.As; messages are not API.
//
// Hardening: the remaining length and every variable byte integer is at
// most 4 bytes; every sub-structure (property block, string, binary) is read
// only inside its own declared length; no allocation is sized from the wire.
// FindSync finds where packets start again after a TCP gap.
package mqttparse
