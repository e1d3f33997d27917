package coapplant

import (
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Kind tells a request (with its response) from an Observe notification.
type Kind string

// Exchange kinds.
const (
	KindRequest      Kind = "request"
	KindNotification Kind = "notification"
)

// Exchange is one CoAP exchange as its initiator saw it: a request and
// its response (from a device to the server) or a notification (from the
// server to an observer). It is what the probe makes one flow of.
type Exchange struct {
	From     string // device name (ServerName for a notification)
	FromAddr netip.AddrPort
	To       netip.AddrPort
	Kind     Kind
	Type     string // of the initiating message: "CON" or "NON"
	// Method is the request's method; a notification's is its
	// registration's, GET.
	Method string
	Path   string
	// Observe is a notification's sequence number, or a request's Observe
	// option (0 register, 1 cancel).
	Observe    uint32
	HasObserve bool
	// Response is the response code ("2.05"); "" when none came.
	Response        string
	Retransmissions int
	Start           time.Time
	Err             error
}

// Key is what the end-to-end test compares stored flows by.
type Key struct {
	From   string // device name
	Kind   Kind
	Method string
	Path   string
}

func (k Key) String() string { return fmt.Sprintf("%s %s %s %s", k.From, k.Kind, k.Method, k.Path) }

// Key returns the exchange's key.
func (x *Exchange) Key() Key { return Key{x.From, x.Kind, x.Method, x.Path} }

// Report is what the plant's devices and server did.
type Report struct {
	Server    netip.AddrPort
	Devices   []Device
	Exchanges []Exchange // in the order they were recorded (completed)
	Errors    []error
}

// Counts returns how many exchanges each device made, by kind, method and
// path.
func (r *Report) Counts() map[Key]int {
	out := map[Key]int{}
	for i := range r.Exchanges {
		out[r.Exchanges[i].Key()]++
	}
	return out
}

// Retransmissions returns the retransmissions of all exchanges together.
func (r *Report) Retransmissions() int {
	n := 0
	for _, x := range r.Exchanges {
		n += x.Retransmissions
	}
	return n
}

// Role is what a device does in the plant.
type Role string

// Roles.
const (
	RoleServer     Role = "server"
	RoleSensor     Role = "sensor"
	RoleObserver   Role = "observer"
	RoleController Role = "controller"
	RoleAttacker   Role = "attacker"
)

// Device is one endpoint of the plant, told apart from the others by its
// address.
type Device struct {
	Name string
	Role Role
	Addr netip.Addr
}

// WriteNames writes a names file for mission (hosts-file-like lines
// "ADDRESS NAME") naming the plant's devices; attackers are not named.
func WriteNames(w io.Writer, devices []Device) error {
	for _, d := range devices {
		if d.Role == RoleAttacker {
			continue
		}
		if _, err := fmt.Fprintf(w, "%s %s\n", d.Addr, d.Name); err != nil {
			return fmt.Errorf("coapplant: write names: %w", err)
		}
	}
	return nil
}
