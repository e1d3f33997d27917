package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestCoAPCaptureTshark writes a small synthetic CoAP capture and checks
// with tshark that every frame is one CoAP message (tshark's count equals
// the generator's), that nothing is malformed or worth a warning (with IP
// and UDP checksums verified), and that the same seed writes the same
// bytes. Needs tshark (apt-get install tshark); fails without it.
func TestCoAPCaptureTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatal("tshark not found: apt-get install tshark")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "coap.pcap")
	cfg := coapGenConfig{Messages: 6000, Seed: 7, Clients: 600}
	st, err := writeCoAPCaptureFile(file, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != cfg.Messages || st.ByType[0]+st.ByType[1]+st.ByType[2]+st.ByType[3] != cfg.Messages {
		t.Fatalf("wrote %d messages (by type %v), want %d", st.Messages, st.ByType, cfg.Messages)
	}
	for shape, n := range st.Exchanges {
		if n == 0 {
			t.Errorf("no %s exchange", shapeNames[shape])
		}
	}
	if st.IPv6 == 0 || st.IPv6 == st.Messages || st.ByType[3] == 0 {
		t.Errorf("IPv6 frames %d, RST %d of %d", st.IPv6, st.ByType[3], st.Messages)
	}
	tshark := func(filter string) int {
		t.Helper()
		out, err := exec.Command("tshark", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
			"-r", file, "-Y", filter, "-T", "fields", "-e", "frame.number").Output()
		if err != nil {
			t.Fatalf("tshark -Y %q: %v", filter, err)
		}
		return bytes.Count(out, []byte{'\n'})
	}
	if n := tshark("coap"); n != cfg.Messages {
		t.Errorf("tshark -Y coap: %d frames, generator wrote %d messages", n, cfg.Messages)
	}
	if n := tshark("_ws.malformed || _ws.expert.severity >= 0x00600000"); n != 0 { // PI_WARN and above
		t.Errorf("tshark: %d frames malformed or with warnings/errors", n)
	}
	if n, want := tshark(`_ws.expert.message == "Retransmitted"`), st.Exchanges[shapeRetransmitted]; n != want {
		t.Errorf("tshark saw %d retransmissions, generator wrote %d", n, want)
	}
	if n := tshark("coap.opt.block_number >= 1 && coap.type == 2"); n == 0 {
		t.Error("tshark sees no Block2 response after block 0")
	}
	if n := tshark("coap.opt.observe && coap.type == 1"); n == 0 {
		t.Error("tshark sees no NON notification")
	}

	again := filepath.Join(dir, "again.pcap")
	if _, err := writeCoAPCaptureFile(again, cfg); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(file)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("same seed, different bytes")
	}
	cfg.Seed++
	if _, err := writeCoAPCaptureFile(again, cfg); err != nil {
		t.Fatal(err)
	}
	if b, _ = os.ReadFile(again); bytes.Equal(a, b) {
		t.Error("another seed, same bytes")
	}
}

// TestCoAPCaptureGap: Gap sets the mean spacing of frames, so the
// capture's duration, and a different gap writes different timestamps
// but the same messages.
func TestCoAPCaptureGap(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		gap      time.Duration
		min, max time.Duration // of the whole capture
	}{
		{0, 5000 * 9 * time.Microsecond, 5000 * 12 * time.Microsecond}, // 1–20 µs
		{time.Millisecond, 5000 * 900 * time.Microsecond, 5000 * 1100 * time.Microsecond},
	} {
		st, err := writeCoAPCaptureFile(filepath.Join(dir, tt.gap.String()+".pcap"), coapGenConfig{Messages: 5000, Seed: 3, Gap: tt.gap})
		if err != nil {
			t.Fatal(err)
		}
		if st.Duration < tt.min || st.Duration > tt.max {
			t.Errorf("gap %v: capture of %v, want %v–%v", tt.gap, st.Duration, tt.min, tt.max)
		}
		if st.Messages != 5000 {
			t.Errorf("gap %v: %d messages", tt.gap, st.Messages)
		}
	}
}
