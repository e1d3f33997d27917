package probe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mission-ids/mission/flow"
)

// latencyLog writes the per-flow latency log (Config.LatencyLog), a CSV
// with one line per exported flow: its latency from the capture of its last
// packet to export, and the process's CPU share and resident memory
// (sampled at most once a second), as the original prototype's
// BENCHMARK/FILE_NAME output did. It measures a running probe; it is not a
// benchmark of the code.
type latencyLog struct {
	w       *bufio.Writer
	sampled time.Time
	cpuPct  float64
	rss     uint64
	lastCPU time.Duration
}

const latencyLogHeader = "flow_id,control_type,qos,capture_time_ns,export_time_ns,latency_ms,cpu_percent,rss_bytes\n"

func newLatencyLog(w io.Writer) *latencyLog {
	b := &latencyLog{w: bufio.NewWriter(w)}
	b.w.WriteString(latencyLogHeader)
	b.lastCPU, _ = processCPU()
	b.sampled = time.Now()
	return b
}

func (b *latencyLog) write(recs []flow.Record, exported time.Time) {
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

func (b *latencyLog) flush() error { return b.w.Flush() }

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
		return 0, errors.New("unexpected /proc/self/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/self/stat")
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
