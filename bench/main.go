// Command bench measures mission end to end on this machine: a real
// mosquitto broker on loopback, an in-process MQTT v5 load generator at a
// series of increasing rates per QoS, `mission probe` capturing live on lo
// and exporting IPFIX to `mission collect` with its store. It finds the
// sustainable throughput per QoS with the original study's method and
// writes a CSV, a Markdown summary and SVG charts under docs/bench/.
//
//	go run ./bench            # full run, under 10 minutes
//	go run ./bench -quick     # CI: a few rates, short steps, under 2 minutes
//	go run ./bench -offline [-pcap FILE]   # probe alone on a capture vs tshark
//	go run ./bench -coap-capture FILE [-messages N] [-seed N]   # write a synthetic CoAP capture
//	go run ./bench -offline-coap [-pcap FILE] [-rounds N]       # mission probe --protocol coap vs tshark -Y coap
//	go run ./bench -soak 10m [-seed N]     # soak: the plant for 10 minutes while the collector and its database are killed at random
//
// Needs root (live capture), mosquitto and tshark (apt-get install
// mosquitto tshark).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	quick      bool
	offline    bool
	pcap       string
	out        string
	repo       string
	mission    string
	rates      [3][]float64
	probeRates [3][]float64 // store out of the path
	step       time.Duration
	drain      time.Duration
	clients    int
	perClient  int
	payload    int
	window     int
	mongoURL   string
	keep       bool
	refine     int // extra steps per QoS between the last rate that kept pace end to end and the first that did not
	command    string

	coapCapture string // -coap-capture: write a synthetic CoAP capture and stop
	offlineCoAP bool   // -offline-coap: the probe's CoAP path against tshark on one capture
	messages    int
	coapGap     time.Duration
	rounds      int

	soak         time.Duration // -soak: the soak run instead of the benchmark
	soakInterval time.Duration
	seed         int64
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" || f == "none" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("rate %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// Default rate ladders (PUBLISH/s). The targets are 100× the original's
// 100/70/40 flows/s: 10,000 / 7,000 / 4,000.
var (
	fullRates = [3]string{
		"1000,2500,4000,5000,10000,20000,40000,80000",
		"1000,2500,4000,7000,14000,28000,50000",
		"1000,2500,4000,8000,16000,30000",
	}
	quickRates = [3]string{"2000,10000", "2000,7000", "1000,4000"}

	// With the store out of the path, higher rates: where does the probe
	// (or the broker, the load generator, the machine) stop keeping pace?
	fullProbeRates  = [3]string{"40000,80000,120000,160000", "28000,50000,80000", "16000,30000,50000"}
	quickProbeRates = [3]string{"20000", "14000", "8000"}
)

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg := &config{}
	fs.BoolVar(&cfg.quick, "quick", false, "few rates, short steps (CI; under 2 minutes)")
	fs.BoolVar(&cfg.offline, "offline", false, "measure the probe alone on a capture file (and tshark on the same file)")
	fs.StringVar(&cfg.pcap, "pcap", "", "capture for -offline (default: record one from the live load)")
	fs.StringVar(&cfg.out, "out", "", "output directory (default <repo>/docs/bench)")
	fs.StringVar(&cfg.repo, "repo", "", "repository root (default: found from the working directory)")
	fs.StringVar(&cfg.mission, "mission", "", "use this mission binary instead of building one")
	var r0, r1, r2, p0, p1, p2 string
	fs.StringVar(&r0, "rates0", "", "QoS 0 target rates, PUBLISH/s, comma-separated")
	fs.StringVar(&r1, "rates1", "", "QoS 1 target rates")
	fs.StringVar(&r2, "rates2", "", "QoS 2 target rates")
	fs.StringVar(&p0, "probe-rates0", "", "QoS 0 target rates with the store out of the path (probe → IPFIX file /dev/null, no collector); none: skip")
	fs.StringVar(&p1, "probe-rates1", "", "QoS 1 target rates with the store out of the path")
	fs.StringVar(&p2, "probe-rates2", "", "QoS 2 target rates with the store out of the path")
	fs.DurationVar(&cfg.step, "step", 0, "load duration per rate (default 8s, quick 3s)")
	fs.DurationVar(&cfg.drain, "drain", 0, "longest wait for the store after the load (default 5s, quick 3s)")
	fs.IntVar(&cfg.clients, "clients", 8, "publishing MQTT clients (at least)")
	fs.IntVar(&cfg.perClient, "per-client", 1000, "most PUBLISH/s per client: more clients at higher rates, so that a TCP segment carries about one message (0: always -clients)")
	fs.IntVar(&cfg.payload, "payload", 64, "PUBLISH payload bytes")
	fs.IntVar(&cfg.window, "window", 1000, "unacknowledged QoS 1/2 messages per client")
	fs.StringVar(&cfg.mongoURL, "mongo-url", "", "store in this MongoDB instead of the embedded store (passed to mission collect)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (logs, per-step CSVs)")
	fs.DurationVar(&cfg.soak, "soak", 0, "soak run of this duration instead of the benchmark: the plant captured live, the collector and its FerretDB killed and restarted at random (e.g. 10m; 60s for a quick look)")
	fs.DurationVar(&cfg.soakInterval, "soak-interval", 200*time.Millisecond, "soak: every plant sensor reads once per interval (5 sensors; 6 QoS 2 PUBLISH flows per reading)")
	fs.Int64Var(&cfg.seed, "seed", 1, "seed of the soak's kill schedule and of -coap-capture")
	fs.StringVar(&cfg.coapCapture, "coap-capture", "", "write a synthetic CoAP capture (pcap) to this file and stop")
	fs.BoolVar(&cfg.offlineCoAP, "offline-coap", false, "measure `mission probe --protocol coap` alone on a CoAP capture against `tshark -Y coap` on the same file (default capture: a synthetic one of -messages)")
	fs.DurationVar(&cfg.coapGap, "coap-gap", 0, "mean capture time between the synthetic CoAP capture's frames (default 10.5 µs: about a million exchanges lingering)")
	fs.IntVar(&cfg.messages, "messages", 4_000_000, "CoAP messages of -coap-capture (and of -offline-coap's synthetic capture)")
	fs.IntVar(&cfg.rounds, "rounds", 3, "-offline-coap: rounds, each running the probe and tshark once (alternating)")
	fs.IntVar(&cfg.refine, "refine", -1, "extra steps per QoS halving the interval between the highest rate stored end to end and the lowest that was not (default 3, quick 0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.command = "go run ./bench"
	if len(args) > 0 {
		cfg.command += " " + strings.Join(args, " ")
	}
	def, pdef := fullRates, fullProbeRates
	if cfg.quick {
		def, pdef = quickRates, quickProbeRates
		if cfg.step == 0 {
			cfg.step = 3 * time.Second
		}
		if cfg.drain == 0 {
			cfg.drain = 3 * time.Second
		}
		if cfg.refine < 0 {
			cfg.refine = 0
		}
	}
	if cfg.refine < 0 {
		cfg.refine = 3
	}
	if cfg.step == 0 {
		cfg.step = 8 * time.Second
	}
	if cfg.drain == 0 {
		cfg.drain = 5 * time.Second
	}
	for i, s := range []string{r0, r1, r2} {
		if s == "" {
			s = def[i]
		}
		v, err := parseRates(s)
		if err != nil {
			return fmt.Errorf("-rates%d: %w", i, err)
		}
		cfg.rates[i] = v
	}
	for i, s := range []string{p0, p1, p2} {
		if s == "" {
			s = pdef[i]
		}
		v, err := parseRates(s)
		if err != nil {
			return fmt.Errorf("-probe-rates%d: %w", i, err)
		}
		cfg.probeRates[i] = v
	}
	if cfg.coapCapture != "" {
		gc := coapGenConfig{Messages: cfg.messages, Seed: uint64(cfg.seed), Gap: cfg.coapGap}
		st, err := writeCoAPCaptureFile(cfg.coapCapture, gc)
		if err != nil {
			return err
		}
		gc.defaults()
		fmt.Fprintf(stdout, "bench: wrote %s: %s\n", cfg.coapCapture, st.describe(gc))
		return nil
	}
	if cfg.offlineCoAP {
		if _, err := exec.LookPath("tshark"); err != nil {
			return errors.New("tshark not found: apt-get install tshark")
		}
	} else if err := preflight(cfg.offline && cfg.pcap != ""); err != nil {
		return err
	}
	if cfg.repo == "" {
		root, err := findRepo()
		if err != nil {
			return err
		}
		cfg.repo = root
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(cfg.repo, "docs", "bench")
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mission-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintln(stdout, "bench: temporary files in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	if cfg.mission == "" {
		cfg.mission = filepath.Join(tmp, "mission")
		fmt.Fprintln(stdout, "bench: building mission…")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", cfg.mission, ".")
		cmd.Dir = cfg.repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	if cfg.soak > 0 {
		return runSoak(ctx, cfg, tmp, stdout)
	}
	if cfg.offlineCoAP {
		return runOfflineCoAP(ctx, cfg, tmp, stdout)
	}
	if cfg.offline {
		return runOffline(ctx, cfg, tmp, stdout)
	}
	return runLive(ctx, cfg, tmp, stdout)
}

// preflight checks what the benchmark needs, naming the package to install.
func preflight(offlineWithFile bool) error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("must run as root (live capture on lo needs CAP_NET_RAW; the recording uses dumpcap)"))
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		errs = append(errs, errors.New("tshark not found: apt-get install tshark"))
	}
	if !offlineWithFile {
		if _, err := exec.LookPath("mosquitto"); err != nil {
			errs = append(errs, errors.New("mosquitto not found: apt-get install mosquitto"))
		}
		if _, err := exec.LookPath("dumpcap"); err != nil {
			errs = append(errs, errors.New("dumpcap not found: apt-get install tshark (it brings wireshark-common)"))
		}
	}
	return errors.Join(errs...)
}

func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/mission-ids/mission\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the mission repository (or give -repo)")
		}
		dir = parent
	}
}

func runLive(ctx context.Context, cfg *config, tmp string, stdout io.Writer) error {
	started := time.Now()
	broker, port, err := startMosquitto(tmp)
	if err != nil {
		return err
	}
	defer broker.stop(5 * time.Second)
	env := &benchEnv{cfg: cfg, mission: cfg.mission, tmp: tmp, brokerPort: port, broker: broker}
	info := machineInfo()
	info.loadStart = loadAvg()
	fmt.Fprintf(stdout, "bench: mosquitto on 127.0.0.1:%d; %s; load average %s\n", port, info.cpu, info.loadStart)
	var results []*stepResult
	type pass struct {
		probeOnly bool
		rates     [3][]float64
	}
	for _, ps := range []pass{{false, cfg.rates}, {true, cfg.probeRates}} {
		for qos := 0; qos < 3; qos++ {
			var done []*stepResult
			step := func(rate float64) (*stepResult, error) {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if broker.exited() {
					return nil, fmt.Errorf("mosquitto exited:\n%s", broker.tail(10))
				}
				r, err := env.runStep(ctx, qos, rate, ps.probeOnly)
				if err != nil {
					return nil, fmt.Errorf("QoS %d at %.0f/s: %w", qos, rate, err)
				}
				results = append(results, r)
				done = append(done, r)
				printStep(stdout, r)
				return r, nil
			}
			short := 0
			for _, rate := range ps.rates[qos] {
				r, err := step(rate)
				if err != nil {
					return err
				}
				// Two steps in a row where the load generator could not offer
				// the target: higher targets would measure the same ceiling.
				if r.Offered < 0.9*rate {
					short++
					if short >= 2 {
						break
					}
				} else {
					short = 0
				}
			}
			for k := 0; k < cfg.refine && !ps.probeOnly; k++ {
				mid, ok := refineTarget(done)
				if !ok {
					break
				}
				if _, err := step(mid); err != nil {
					return err
				}
			}
		}
	}
	info.loadEnd = loadAvg()
	info.elapsed = time.Since(started)
	// Refinement steps ran last; tables and charts go by rate.
	sort.SliceStable(results, func(i, j int) bool {
		a, b := results[i], results[j]
		if a.Path != b.Path {
			return a.Path == "store"
		}
		if a.QoS != b.QoS {
			return a.QoS < b.QoS
		}
		return a.Target < b.Target
	})
	return writeReport(cfg, info, results, stdout)
}

func printStep(w io.Writer, r *stepResult) {
	fmt.Fprintf(w, "%-10s QoS %d target %6.0f/s: offered %7.0f/s exported %7.0f/s (ratio %.3f) stored %7.0f/s (ratio %.3f) | p99 ms export %.0f store %.0f | lost %d not stored %d drops %d | CPU broker %.0f%% gen %.0f%% probe %.0f%% collector %.0f%% machine %.0f%%%s\n",
		r.Path, r.QoS, r.Target, r.Offered, r.ExportRate, r.ExportRatio, r.StoreRate, r.StoreRatio, r.LatExport[2], r.LatStore[2],
		r.ExportLost, r.NotStored, r.KernelDrops, r.CPUBroker, r.CPULoadgen, r.CPUProbe, r.CPUCollector, r.CPUMachine, errNote(r.Err))
}

// refineTarget returns the rate halfway (rounded to 250/s) between the
// highest target that kept pace end to end and the lowest higher one that
// did not, so the sustainable rate is found within the grid's interval
// rather than at the grid point below the knee. It returns false when
// there is no such pair or the interval is already under 10 %.
func refineTarget(done []*stepResult) (float64, bool) {
	var lo, hi float64
	for _, r := range done {
		if keptPaceEndToEnd(r) && r.Target > lo {
			lo = r.Target
		}
	}
	for _, r := range done {
		if !keptPaceEndToEnd(r) && r.Target > lo && (hi == 0 || r.Target < hi) {
			hi = r.Target
		}
	}
	if lo == 0 || hi == 0 || hi-lo < max(250, 0.1*lo) {
		return 0, false
	}
	mid := math.Round((lo+hi)/2/250) * 250
	if mid <= lo || mid >= hi {
		return 0, false
	}
	return mid, true
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " (load generator: " + s + ")"
}
