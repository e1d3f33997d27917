package coaptrack

import (
	"strconv"
	"testing"
	"unsafe"
)

// TestInterner: a string comes back equal to its bytes whatever the cache
// held before; a repeated one shares the cached copy; the cache never
// holds more than its slots, however many distinct strings pass.
func TestInterner(t *testing.T) {
	in := newInterner()
	if got := in.of(nil); got != "" {
		t.Errorf("of(nil) = %q", got)
	}
	a := in.of([]byte("sensors/temp"))
	if b := in.of([]byte("sensors/temp")); unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("a repeated path was copied again instead of shared")
	}
	for i := range 10 * internSlots {
		want := "actuators/valve/" + strconv.Itoa(i)
		if got := in.of([]byte(want)); got != want {
			t.Fatalf("of(%q) = %q", want, got)
		}
	}
	held := 0
	for _, s := range in.slots {
		if s != "" {
			held++
		}
	}
	if held > internSlots || held < internSlots/2 {
		t.Errorf("%d strings held by %d slots after %d distinct strings", held, internSlots, 10*internSlots)
	}
	if got := in.of([]byte("sensors/temp")); got != "sensors/temp" {
		t.Errorf("after eviction: %q", got)
	}
}
