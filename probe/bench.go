package probe

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mission-ids/mission/flow"
)

// benchWriter writes the --benchmark CSV: one line per exported flow with
// its latency from the capture of its last packet to export, and the
// process's CPU share and resident memory (sampled at most once a second),
// as the original prototype's BENCHMARK/FILE_NAME output did.
type benchWriter struct {
	w       *bufio.Writer
	sampled time.Time
	cpuPct  float64
	rss     uint64
	lastCPU time.Duration
}

const benchHeader = "flow_id,control_type,qos,capture_time_ns,export_time_ns,latency_ms,cpu_percent,rss_bytes\n"

func newBenchWriter(w io.Writer) *benchWriter {
	b := &benchWriter{w: bufio.NewWriter(w)}
	b.w.WriteString(benchHeader)
	b.lastCPU, _ = processCPU()
	b.sampled = time.Now()
	return b
}

func (b *benchWriter) write(recs []flow.Record, exported time.Time) {
	if exported.Sub(b.sampled) >= time.Second {
		cpu, _ := processCPU()
		b.cpuPct = 100 * float64(cpu-b.lastCPU) / float64(exported.Sub(b.sampled))
		b.lastCPU, b.sampled = cpu, exported
		b.rss = processRSS()
	}
	for i := range recs {
		r := &recs[i]
		lat := exported.Sub(r.End)
		fmt.Fprintf(b.w, "%d,%s,%d,%d,%d,%.3f,%.1f,%d\n", r.FlowID, r.ControlType, r.QoS,
			r.End.UnixNano(), exported.UnixNano(), float64(lat)/float64(time.Millisecond), b.cpuPct, b.rss)
	}
}

func (b *benchWriter) flush() error { return b.w.Flush() }

// processCPU returns user+system CPU time of this process (Linux /proc).
func processCPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may contain spaces) start at ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/self/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/self/stat")
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// processRSS returns the resident set size in bytes (Linux /proc).
func processRSS() uint64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
