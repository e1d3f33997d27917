package main

// The soak run: the study's plant (internal/plant) on a real mosquitto,
// captured live by `mission probe` exporting over TCP to `mission collect`,
// which stores into a separate FerretDB process (store/internal/ferretserver);
// the collector and the database are killed (SIGKILL) and restarted at
// random, from a seed, while dumpcap records the broker's traffic. At the
// end every flow of the recording (replayed by `mission probe --read`) must
// be in the database exactly once.
//
//	go run ./bench -soak 10m [-seed N] [-soak-interval 200ms]

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/mqtttest"
	"github.com/mission-ids/mission/internal/plant"
)

const (
	soakDatabase   = "mission"
	soakCollection = "mqtt"
)

// soakEvent is one fault of the schedule: what was killed when, and how
// long it stayed down.
type soakEvent struct {
	at       time.Duration // since the plant started
	target   string        // "collector", "database" or "both"
	downtime time.Duration
	err      string // a restart that failed (then retried)
}

// soakRSS keeps the peak resident memory of each role (over every
// incarnation of a restarted process).
type soakRSS struct {
	mu   sync.Mutex
	peak map[string]uint64
}

func (r *soakRSS) sample(role string, pid int) {
	s, err := readProc(pid)
	if err != nil {
		return
	}
	r.mu.Lock()
	r.peak[role] = max(r.peak[role], s.rss)
	r.mu.Unlock()
}

// soakRun holds the processes of a soak run; mu guards the restartable
// ones.
type soakRun struct {
	cfg        *config
	tmp        string
	ferret     string // ferretserver binary
	brokerPort int
	ipfixPort  int
	dbPort     int
	colMetrics string
	mongoURL   string

	mu           sync.Mutex
	db, col      *proc
	incarnations map[string]int
	unplanned    []string // processes that exited without being killed
	logw         io.Writer
	started      time.Time
}

func (s *soakRun) logf(format string, args ...any) {
	fmt.Fprintf(s.logw, "soak %7s  %s\n", time.Since(s.started).Round(time.Second), fmt.Sprintf(format, args...))
}

// waitFile waits until the log of p contains want.
func waitFile(p *proc, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(p.log)
		if strings.Contains(string(b), want) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before logging %q:\n%s", p.name, want, p.tail(15))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not log %q within %s:\n%s", p.name, want, timeout, p.tail(15))
}

func (s *soakRun) startDB() error {
	s.incarnations["database"]++
	p, err := startProc("ferretserver", filepath.Join(s.tmp, fmt.Sprintf("ferretserver-%d.log", s.incarnations["database"])),
		s.ferret, "-addr", fmt.Sprintf("127.0.0.1:%d", s.dbPort), "-dir", filepath.Join(s.tmp, "ferret"))
	if err != nil {
		return err
	}
	if err := waitFile(p, "mongodb://", 60*time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		return err
	}
	s.db = p
	return nil
}

func (s *soakRun) startCollector() error {
	s.incarnations["collector"]++
	p, err := startProc("collector", filepath.Join(s.tmp, fmt.Sprintf("collector-%d.log", s.incarnations["collector"])),
		s.cfg.mission, "--log-format", "json", "collect", "--host", "127.0.0.1", "--port", strconv.Itoa(s.ipfixPort),
		"--listen", "tcp", "--mongo-url", s.mongoURL, "--mongo-collection", soakDatabase, "--collection", soakCollection,
		"--data-dir", filepath.Join(s.tmp, "collector"), "--drain-timeout", "2s", "--metrics-listen", s.colMetrics)
	if err != nil {
		return err
	}
	if err := waitFile(p, "collector listening", 120*time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		return err
	}
	s.col = p
	return nil
}

// restart starts what is down, the database first (the collector does
// not start without it), retrying for up to a minute.
func (s *soakRun) restart() error {
	var errs []error
	for try := 0; try < 6; try++ {
		s.mu.Lock()
		var err error
		if s.db == nil {
			err = s.startDB()
		}
		if err == nil && s.col == nil {
			err = s.startCollector()
		}
		s.mu.Unlock()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		s.logf("restart failed (try %d): %v", try+1, err)
		time.Sleep(10 * time.Second)
	}
	return errors.Join(errs...)
}

func (s *soakRun) kill(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	killOne := func(p **proc) {
		if *p != nil {
			_ = (*p).cmd.Process.Kill()
			<-(*p).done
			*p = nil
		}
	}
	if target == "collector" || target == "both" {
		killOne(&s.col)
	}
	if target == "database" || target == "both" {
		killOne(&s.db)
	}
}

// watch samples every process's RSS each second and restarts a collector
// or database that exited without being killed.
func (s *soakRun) watch(ctx context.Context, rss *soakRSS, fixed map[string]*proc) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rss.sample("harness (plant)", os.Getpid())
		for role, p := range fixed {
			if p != nil && !p.exited() {
				rss.sample(role, p.pid())
			}
		}
		s.mu.Lock()
		var gone []string
		for role, p := range map[string]**proc{"database": &s.db, "collector": &s.col} {
			if *p == nil {
				continue
			}
			if (*p).exited() {
				gone = append(gone, fmt.Sprintf("%s exited at %s:\n%s", role, time.Since(s.started).Round(time.Second), (*p).tail(10)))
				*p = nil
				continue
			}
			rss.sample(role, (*p).pid())
		}
		s.mu.Unlock()
		for _, g := range gone {
			s.unplanned = append(s.unplanned, g)
			s.logf("unplanned exit: %s", g)
		}
		if len(gone) > 0 {
			if err := s.restart(); err != nil {
				s.logf("restart after an unplanned exit failed: %v", err)
			}
		}
	}
}

func runSoak(ctx context.Context, cfg *config, tmp string, stdout io.Writer) error {
	started := time.Now()
	s := &soakRun{cfg: cfg, tmp: tmp, logw: stdout, incarnations: map[string]int{}, started: started}
	s.ferret = filepath.Join(tmp, "ferretserver")
	fmt.Fprintln(stdout, "bench: building store/internal/ferretserver…")
	build := exec.CommandContext(ctx, "go", "build", "-o", s.ferret, "./store/internal/ferretserver")
	build.Dir = cfg.repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ferretserver: %v\n%s", err, out)
	}
	broker, port, err := startMosquitto(tmp)
	if err != nil {
		return err
	}
	defer broker.stop(5 * time.Second)
	s.brokerPort = port
	for _, p := range []*int{&s.ipfixPort, &s.dbPort} {
		if *p, err = freePort(); err != nil {
			return err
		}
	}
	mp, err := freePort()
	if err != nil {
		return err
	}
	s.colMetrics = fmt.Sprintf("127.0.0.1:%d", mp)
	s.mongoURL = fmt.Sprintf("mongodb://127.0.0.1:%d/", s.dbPort)
	info := machineInfo()
	fmt.Fprintf(stdout, "bench: soak %s, seed %d, plant interval %s; mosquitto 127.0.0.1:%d, collector 127.0.0.1:%d, FerretDB 127.0.0.1:%d; %s; load average %s\n",
		cfg.soak, cfg.seed, cfg.soakInterval, port, s.ipfixPort, s.dbPort, info.cpu, loadAvg())
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.col != nil {
			s.col.stop(30 * time.Second)
		}
		if s.db != nil {
			s.db.stop(30 * time.Second)
		}
	}()

	// The reference recording starts first.
	pcap := filepath.Join(tmp, "lo.pcap")
	dump, err := startProc("dumpcap", filepath.Join(tmp, "dumpcap.log"), "dumpcap", "-i", "lo", "-f", fmt.Sprintf("tcp port %d", port),
		"-w", pcap, "-P", "-q", "-B", "64")
	if err != nil {
		return err
	}
	defer dump.stop(5 * time.Second)
	if err := waitFile(dump, "Capturing on", 10*time.Second); err != nil {
		return err
	}
	poke := func() { // a connection without MQTT makes no flow
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if fi, err := os.Stat(pcap); err == nil && fi.Size() > 24 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dumpcap wrote no packet:\n%s", dump.tail(10))
		}
		poke()
		time.Sleep(50 * time.Millisecond)
	}

	if err := s.restart(); err != nil {
		return err
	}
	pm, err := freePort()
	if err != nil {
		return err
	}
	probeMetrics := fmt.Sprintf("127.0.0.1:%d", pm)
	pr, err := startProc("probe", filepath.Join(tmp, "probe.log"), cfg.mission, "--log-format", "json", "probe", "-i", "lo",
		"--filter", fmt.Sprintf("tcp port %d", port), "--mqtt-ports", strconv.Itoa(port),
		"--transport", "tcp", "--collector", "127.0.0.1", "--port", strconv.Itoa(s.ipfixPort), "--metrics-listen", probeMetrics)
	if err != nil {
		return err
	}
	probeStopped := false
	defer func() {
		if !probeStopped {
			pr.stop(10 * time.Second)
		}
	}()
	if err := waitFile(pr, "capturing", 30*time.Second); err != nil {
		return err
	}

	rss := &soakRSS{peak: map[string]uint64{}}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go s.watch(wctx, rss, map[string]*proc{"mosquitto": broker, "probe": pr, "dumpcap": dump})

	// The plant.
	pcfg := plant.DefaultConfig(fmt.Sprintf("127.0.0.1:%d", port))
	pcfg.Interval, pcfg.WatchStates, pcfg.Seed = cfg.soakInterval, true, uint64(cfg.seed)
	pl, err := plant.Start(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("plant: %w", err)
	}
	s.started = time.Now()
	runCtx, stopRun := context.WithTimeout(ctx, cfg.soak)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- pl.Run(runCtx) }()

	// The kill schedule: every 30–90 s the collector, the database or both
	// are killed, and restarted 2–10 s later. No kill in the last 45 s.
	// A run shorter than 5 minutes scales the gaps and the margin down
	// (60 s: every 6–18 s, none in the last 9 s), so it kills a few times.
	rng := rand.New(rand.NewPCG(uint64(cfg.seed), 0x50a4))
	scale := min(1, float64(cfg.soak)/float64(5*time.Minute))
	gap := func() time.Duration { return time.Duration(float64(30+rng.IntN(61)) * scale * float64(time.Second)) }
	margin := time.Duration(scale * float64(45*time.Second))
	var events []soakEvent
	lastProgress := time.Now()
	next := gap()
schedule:
	for {
		evAt := s.started.Add(next)
		noMore := next > cfg.soak-margin
		wait := time.Until(lastProgress.Add(time.Minute))
		if !noMore {
			wait = min(wait, time.Until(evAt))
		}
		select {
		case <-runCtx.Done():
			break schedule
		case <-time.After(max(wait, 0)):
		}
		if time.Since(lastProgress) >= time.Minute {
			lastProgress = time.Now()
			if m, err := scrape(probeMetrics); err == nil {
				s.logf("progress: probe exported %.0f flows, resent %.0f, reconnects %.0f, queue %.0f, dropped %.0f",
					m.get("mission_probe_flows_exported_total"), m.get("mission_probe_flows_resent_total"),
					m.get("mission_probe_export_reconnects_total"), m.get("mission_probe_export_queue_depth"), m.get("mission_probe_flows_dropped_total"))
			}
		}
		if noMore || time.Now().Before(evAt) {
			continue
		}
		ev := soakEvent{at: time.Since(s.started), downtime: time.Duration(2000+rng.IntN(8001)) * time.Millisecond}
		switch r := rng.IntN(10); {
		case r < 4:
			ev.target = "collector"
		case r < 8:
			ev.target = "database"
		default:
			ev.target = "both"
		}
		s.logf("SIGKILL %s; restart in %s", ev.target, ev.downtime)
		s.kill(ev.target)
		time.Sleep(ev.downtime)
		if err := s.restart(); err != nil {
			ev.err = err.Error()
			s.logf("restart failed: %v", err)
		} else {
			s.logf("%s up again", ev.target)
		}
		events = append(events, ev)
		next = time.Since(s.started) + gap()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	plantErr := <-runErr
	rep, stopErr := pl.Stop(context.Background())
	soakRan := time.Since(s.started)
	s.logf("plant stopped: %d rounds, %d readings, %d incomplete chains (%v)", rep.Rounds, len(rep.Chains), len(rep.Incomplete()), errors.Join(plantErr, stopErr))

	// Shutdown: the recording, then the probe (SIGINT: it flushes), then
	// wait for the store to settle (spool replay) before stopping the
	// collector.
	time.Sleep(time.Second)
	if err := dump.stop(10 * time.Second); err != nil {
		s.logf("dumpcap: %v", err)
	}
	pm0, _ := scrape(probeMetrics)
	_ = pr.cmd.Process.Signal(os.Interrupt)
	select {
	case <-pr.done:
	case <-time.After(2 * time.Minute):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		s.logf("probe did not stop within 2 minutes of SIGINT")
	}
	pr.done <- nil
	probeStopped = true
	exported, probeLine := probeStoppedLine(pr.log)
	s.logf("probe stopped: %s", probeLine)

	// The store has settled when the collector's queue and spool are empty
	// and it accepted nothing new for 3 s. (Counting documents in FerretDB
	// over SQLite is a full scan: too slow to poll.)
	var lastAccepted float64 = -1
	for deadline, stable := time.Now().Add(3*time.Minute), 0; time.Now().Before(deadline) && stable < 3; {
		time.Sleep(time.Second)
		m, err := scrape(s.colMetrics)
		if err != nil {
			stable = 0
			continue
		}
		acc := m.get("mission_store_accepted_total")
		if acc == lastAccepted && m.get("mission_store_queue_depth") == 0 && m.get("mission_store_spool_documents") == 0 {
			stable++
		} else {
			stable = 0
		}
		lastAccepted = acc
	}
	stopWatch()
	s.mu.Lock()
	if s.col != nil {
		if err := s.col.stop(60 * time.Second); err != nil {
			s.logf("collector: %v", err)
		}
		s.col = nil
	}
	s.mu.Unlock()

	// What the database holds.
	client, err := mongo.Connect(context.Background(), options.Client().ApplyURI(s.mongoURL))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	coll := client.Database(soakDatabase).Collection(soakCollection)
	rctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cur, err := coll.Find(rctx, bson.D{})
	if err != nil {
		return fmt.Errorf("read the stored flows: %w", err)
	}
	var docs []flow.Document
	if err := cur.All(rctx, &docs); err != nil {
		return fmt.Errorf("decode the stored flows: %w", err)
	}
	ids := map[string]bool{}
	for _, d := range docs {
		ids[d.ID] = true
	}
	ref, err := replayRecording(ctx, cfg.mission, pcap, port)
	if err != nil {
		return err
	}
	m := mqtttest.MatchRecording(ref, docs, 2*time.Millisecond, mqtttest.WideTolerance)
	res := soakResult{
		cfg: cfg, info: info, ran: soakRan, elapsed: time.Since(started), events: events, rss: rss.peak,
		exported: exported, documents: len(docs), distinctIDs: len(ids), match: m, rep: rep,
		probeMetrics: pm0, unplanned: s.unplanned, incarnations: s.incarnations,
		gapMin: time.Duration(30 * scale * float64(time.Second)).Round(time.Second), gapMax: time.Duration(90 * scale * float64(time.Second)).Round(time.Second),
	}
	res.write(stdout)
	return nil
}

// probeStoppedLine returns the flows of the probe's "probe stopped" line
// and the line's counters.
func probeStoppedLine(logPath string) (int, string) {
	f, err := os.Open(logPath)
	if err != nil {
		return -1, err.Error()
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil && l["message"] == "probe stopped" {
			n, _ := l["flows"].(float64)
			return int(n), fmt.Sprintf("packets %v, flows %v, dropped %v, lost %v, kernel dropped %v",
				l["packets"], l["flows"], l["dropped"], l["lost"], l["kernel_dropped"])
		}
	}
	return -1, "no \"probe stopped\" line"
}

// replayRecording reads a recording with `mission probe --read` and
// returns its flows in stored form (the JSON lines of --stdout).
func replayRecording(ctx context.Context, mission, pcap string, port int) ([]flow.Document, error) {
	cmd := exec.CommandContext(ctx, mission, "--log-level", "warn", "probe", "--read", pcap,
		"--mqtt-ports", strconv.Itoa(port), "--stdout")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var docs []flow.Document
	dec := json.NewDecoder(bufio.NewReaderSize(out, 1<<20))
	for dec.More() {
		var d flow.Document
		if err := dec.Decode(&d); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("mission probe --read: %w", err)
		}
		docs = append(docs, d)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("mission probe --read %s: %w\n%s", pcap, err, stderr.String())
	}
	return docs, nil
}

type soakResult struct {
	cfg                 *config
	info                machine
	ran, elapsed        time.Duration
	events              []soakEvent
	rss                 map[string]uint64
	exported, documents int
	distinctIDs         int
	match               mqtttest.RecordingMatch
	rep                 *plant.Report
	probeMetrics        metricSet
	unplanned           []string
	incarnations        map[string]int
	gapMin, gapMax      time.Duration
}

func (r *soakResult) write(w io.Writer) {
	m := r.match
	fmt.Fprintf(w, "\n### Soak: %s, seed %d\n\n", r.cfg.soak, r.cfg.seed)
	fmt.Fprintf(w, "Machine: %s. Command: `%s`. Plant: %d sensors every %s at QoS %d (controller watching the states), %d rounds, %d readings, %d incomplete chains. Run %s (with start-up and checks %s).\n\n",
		r.info.cpu, r.cfg.command, len(plant.DefaultConfig("").Sensors), r.cfg.soakInterval, r.rep.QoS, r.rep.Rounds, len(r.rep.Chains),
		len(r.rep.Incomplete()), r.ran.Round(time.Second), r.elapsed.Round(time.Second))
	counts := map[string]int{}
	var down, longest time.Duration
	for _, e := range r.events {
		counts[e.target]++
		down += e.downtime
		longest = max(longest, e.downtime)
	}
	fmt.Fprintf(w, "Kill schedule (SIGKILL every %s–%s, restart 2–10 s later): %d kills — collector %d, database %d, both %d; down %s in all, longest %s.\n\n",
		r.gapMin, r.gapMax, len(r.events), counts["collector"], counts["database"], counts["both"], down.Round(100*time.Millisecond), longest.Round(100*time.Millisecond))
	fmt.Fprintln(w, "| at | killed | down for |")
	fmt.Fprintln(w, "| ---: | --- | ---: |")
	for _, e := range r.events {
		note := ""
		if e.err != "" {
			note = " (restart failed: " + e.err + ")"
		}
		fmt.Fprintf(w, "| %s | %s%s | %.1f s |\n", e.at.Round(time.Second), e.target, note, e.downtime.Seconds())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "| --- | ---: |")
	row := func(k string, v any) { fmt.Fprintf(w, "| %s | %v |\n", k, v) }
	row("flows exported (probe's last log line)", r.exported)
	row("flows resent after reconnects (probe)", int(r.probeMetrics.get("mission_probe_flows_resent_total")))
	row("collector reconnects (probe)", int(r.probeMetrics.get("mission_probe_export_reconnects_total")))
	row("flows dropped by the probe (queue full)", int(r.probeMetrics.get("mission_probe_flows_dropped_total")))
	row("documents in the database", r.documents)
	row("distinct _id", r.distinctIDs)
	row("reference flows (dumpcap recording, `mission probe --read`)", m.Reference)
	row("reference flows stored (same key, start within 2 ms)", m.Matched)
	row("reference flows stored, start 2–100 ms apart (dumpcap's and the probe's timestamps)", m.MatchedWide)
	row("**lost** (reference − stored)", fmt.Sprintf("**%d**", m.Lost))
	row("stored, not in the reference", m.Extra)
	row("**duplicates** (documents − distinct keys)", fmt.Sprintf("**%d**", r.documents-m.DistinctKeys))
	row("largest start-time difference, store vs recording", m.Worst)
	for _, role := range []string{"probe", "collector", "database", "mosquitto", "dumpcap", "harness (plant)"} {
		label := "peak RSS " + role
		if n := r.incarnations[role]; n > 1 {
			label += fmt.Sprintf(" (%d runs)", n)
		}
		row(label, fmt.Sprintf("%.1f MiB", float64(r.rss[role])/(1<<20)))
	}
	row("unplanned exits", len(r.unplanned))
	if len(m.LostByType) > 0 {
		fmt.Fprintf(w, "\nLost by type: %v\n", m.LostByType)
	}
	for _, e := range m.Examples {
		fmt.Fprintln(w, "  ", e)
	}
	for _, u := range r.unplanned {
		fmt.Fprintln(w, "\nunplanned exit:", u)
	}
}
