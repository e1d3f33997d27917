package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireTools fails (never skips) when the benchmark cannot run here.
func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("TestQuickRun must run as root: live capture on lo needs CAP_NET_RAW")
	}
	for bin, pkg := range map[string]string{"mosquitto": "mosquitto", "tshark": "tshark", "dumpcap": "tshark (wireshark-common)"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: apt-get install %s", bin, pkg)
		}
	}
}

// TestQuickRun runs `go run ./bench -quick` end to end into a temporary
// directory and checks that its outputs exist and are well-formed (not the
// figures: the machine is shared).
func TestQuickRun(t *testing.T) {
	requireTools(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	start := time.Now()
	err := run(ctx, []string{"-quick", "-out", out, "-step", "2500ms", "-drain", "2s"}, io.MultiWriter(&log, testWriter{t}))
	if err != nil {
		t.Fatalf("bench -quick: %v", err)
	}
	t.Logf("quick run took %s", time.Since(start).Round(time.Second))

	// CSV: the header and one row per QoS × rate.
	f, err := os.Open(filepath.Join(out, "quick.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("quick.csv does not parse: %v", err)
	}
	want := 1
	for _, l := range append(quickRates[:], quickProbeRates[:]...) {
		want += len(strings.Split(l, ","))
	}
	if len(recs) != want {
		t.Fatalf("quick.csv: %d records, want %d (header + one per QoS × rate)", len(recs), want)
	}
	if strings.Join(recs[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("quick.csv header %v", recs[0])
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, rec := range recs[1:] {
		if len(rec) != len(csvHeader) {
			t.Fatalf("row %v: %d fields, want %d", rec, len(rec), len(csvHeader))
		}
		for _, name := range []string{"offered_rate", "exported_rate", "stored_rate", "lat_export_p99_ms", "cpu_probe_pct"} {
			if _, err := strconv.ParseFloat(rec[col[name]], 64); err != nil {
				t.Fatalf("row %v: %s %q is not a number", rec, name, rec[col[name]])
			}
		}
		if sent, _ := strconv.Atoi(rec[col["sent"]]); sent == 0 {
			t.Fatalf("row %v: the load generator sent nothing", rec)
		}
		if exp, _ := strconv.Atoi(rec[col["exported_flows"]]); exp == 0 {
			t.Fatalf("row %v: the probe exported nothing", rec)
		}
		if st, _ := strconv.Atoi(rec[col["stored"]]); st == 0 && rec[col["path"]] == "store" {
			t.Fatalf("row %v: nothing was stored", rec)
		}
	}

	// SVG charts parse as XML and have an svg root.
	for qos := 0; qos < 3; qos++ {
		p := filepath.Join(out, "quick-qos"+strconv.Itoa(qos)+".svg")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(bytes.NewReader(b))
		root := ""
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s is not XML: %v", p, err)
			}
			if se, ok := tok.(xml.StartElement); ok && root == "" {
				root = se.Name.Local
			}
		}
		if root != "svg" || !bytes.Contains(b, []byte("<polyline")) {
			t.Fatalf("%s: root %q, or no plotted series", p, root)
		}
	}

	// Markdown: the summary table with a row per QoS.
	md, err := os.ReadFile(filepath.Join(out, "quick.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"## Sustainable throughput", "| QoS | original (flows/s) |", "\n| 0 | 100 | 10000 |", "\n| 1 | 70 | 7000 |", "\n| 2 | 40 | 4000 |", "## Every step", "quick-qos0.svg"} {
		if !bytes.Contains(md, []byte(s)) {
			t.Fatalf("quick.md lacks %q:\n%s", s, md)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestSlopeAndPercentiles(t *testing.T) {
	if s := slope([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}); s != 2 {
		t.Fatalf("slope %v, want 2", s)
	}
	p := percentiles([]float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10})
	if p[0] != 5 || p[2] != 10 {
		t.Fatalf("percentiles %v", p)
	}
	for _, v := range []float64{0, 1, 150, 2500, 1.5e6} {
		if fmtTick(v) == "" {
			t.Fatal("empty tick")
		}
	}
}

// TestRefineTarget checks the refinement between the last rate stored end
// to end and the first that was not.
func TestRefineTarget(t *testing.T) {
	ok := func(target float64) *stepResult {
		r := &stepResult{Target: target, Offered: target, KeepsPaceStore: true}
		r.LatStore[2] = 400
		return r
	}
	slow := func(target float64) *stepResult { // stored behind the offered rate
		return &stepResult{Target: target, Offered: target}
	}
	late := func(target float64) *stepResult { // kept pace, p99 over a second
		r := ok(target)
		r.LatStore[2] = 1500
		return r
	}
	short := func(target float64) *stepResult { // load generator fell short
		r := ok(target)
		r.Offered = 0.9 * target
		return r
	}
	for _, tc := range []struct {
		name  string
		steps []*stepResult
		want  float64 // 0: no refinement
	}{
		{"knee between grid points", []*stepResult{ok(1000), ok(4000), slow(7000), slow(14000)}, 5500},
		{"rounded to 250", []*stepResult{ok(4000), slow(5000)}, 4500},
		{"late counts as not kept", []*stepResult{ok(4000), late(8000)}, 6000},
		{"short counts as not kept", []*stepResult{ok(4000), short(8000)}, 6000},
		{"refined step narrows", []*stepResult{ok(4000), slow(7000), ok(5500)}, 6250},
		{"noisy failure below the best is ignored", []*stepResult{slow(2500), ok(4000), slow(7000)}, 5500},
		{"interval under 10 %", []*stepResult{ok(5000), slow(5250)}, 0},
		{"everything kept pace", []*stepResult{ok(1000), ok(2000)}, 0},
		{"nothing kept pace", []*stepResult{slow(1000), slow(2000)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, refine := refineTarget(tc.steps)
			if refine != (tc.want != 0) || got != tc.want {
				t.Fatalf("refineTarget = %v, %v; want %v", got, refine, tc.want)
			}
		})
	}
}
