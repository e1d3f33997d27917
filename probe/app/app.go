// Package app is the probe's seam for application protocols: what a
// protocol tracker implements so the packet loop can feed it, whatever
// the protocol. Below it the path is shared (capture, L2–L4 decode, TCP
// reassembly); above it every tracker hands finished flow.Records to the
// same FlowHandler, and the probe drives every tracker's clock the same
// way (AdvanceAt with capture time, FlushAll at shutdown).
//
// Two kinds of tracker exist:
//
//   - a StreamTracker (MQTT today, OPC UA binary next) follows TCP
//     connections: the probe's reassembly.Assembler calls its
//     reassembly.Handler methods with in-order chunks of each direction;
//   - a DatagramTracker (CoAP) gets every UDP datagram on its ports, with
//     its 5-tuple and capture time.
//
// A tracker is owned by the capture goroutine: no method is called
// concurrently.
package app

import (
	"net/netip"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/reassembly"
)

// FlowHandler receives finished flows. The *Record is reused after Flow
// returns; its strings, slices and pointers are not, so a handler may keep
// a copy of the struct.
type FlowHandler interface {
	Flow(r *flow.Record)
}

// FlowFunc adapts a function to FlowHandler.
type FlowFunc func(r *flow.Record)

// Flow calls f.
func (f FlowFunc) Flow(r *flow.Record) { f(r) }

// Tracker is what every protocol tracker implements.
type Tracker interface {
	// AdvanceAt ends what has been idle since before now − its idle
	// timeout; now is capture time in Unix nanoseconds (the wall clock
	// when the capture is quiet).
	AdvanceAt(now int64)
	// FlushAll ends everything still open (shutdown, end of a file).
	FlushAll()
}

// StreamTracker is a tracker of a protocol over TCP: the reassembler
// delivers it connections and their in-order bytes.
type StreamTracker interface {
	Tracker
	reassembly.Handler
}

// Datagram is one UDP datagram. Payload points into the capture buffer:
// valid only during the DatagramTracker.Datagram call.
type Datagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
	Time     int64 // capture time, Unix ns (0: the packet had none)
	// Truncated is set when the capture's snap length cut the datagram
	// short of what its headers declare.
	Truncated bool
}

// DatagramTracker is a tracker of a protocol over UDP.
type DatagramTracker interface {
	Tracker
	Datagram(d *Datagram)
}

// Transport says what a protocol runs over.
type Transport uint8

// Transports.
const (
	TCP Transport = 6
	UDP Transport = 17
)

// String returns "tcp" or "udp".
func (t Transport) String() string {
	if t == UDP {
		return "udp"
	}
	return "tcp"
}
