package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// stepResult is one row of the output CSV: one QoS at one target rate.
type stepResult struct {
	Path     string // "store": probe → collector → store; "probe-only": probe → IPFIX file /dev/null
	QoS      int
	Target   float64 // requested PUBLISH/s
	Duration float64 // seconds of load
	Clients  int
	Payload  int

	Sent     uint64  // PUBLISH written by the load generator
	Acked    uint64  // transactions completed (PUBACK / PUBCOMP; QoS 0: sent)
	Offered  float64 // PUBLISH/s actually offered (slope of cumulative sends)
	Expected uint64  // flows the probe should export: sent + CONNECT + DISCONNECT per client

	ExportedPub   uint64  // PUBLISH flows in the probe's benchmark CSV
	ExportedAll   uint64  // all flows in the CSV
	ExportRate    float64 // slope of cumulative PUBLISH exports over the load window
	WireRate      float64 // slope of cumulative PUBLISH flows by capture time of their last packet (completed on the wire)
	ExportRatio   float64 // ExportRate / Offered (slope ratio, the original's method)
	ExportBacklog float64 // slope of (sent − exported) in flows/s; ≤ 1 % of the rate: not growing
	KernelDrops   uint64
	QueueDrops    uint64 // probe export queue full
	ExportLost    int64  // Expected − ExportedAll

	CollectorRecords uint64
	Stored           uint64  // documents stored at the end of the drain
	StoreRate        float64 // slope of cumulative stored documents over the load window
	StoreRatio       float64
	StoreBacklogEnd  int64 // store queue + spool when the drain ended
	NotStored        int64 // Expected − Stored at the end of the drain (lost or still queued)
	DrainSeconds     float64

	LatExport    [3]float64 // p50, p95, p99 ms: capture → export (probe CSV)
	LatCollector [3]float64 // capture → collector receive (stored documents, ms resolution)
	LatStore     [3]float64 // capture → stored (export order matched to the store's insert counter)
	LatStoreN    int        // flows with a store latency

	CPUProbe, CPUCollector, CPUBroker, CPULoadgen, CPUMachine float64 // % of one core over the load window (machine: % of all cores)
	RSSProbe, RSSCollector                                    uint64  // peak bytes
	LoadAvg                                                   string

	KeepsPaceExport bool
	KeepsPaceStore  bool
	Err             string
}

type sample struct {
	t      time.Time
	sent   uint64
	stored float64
	recs   float64
	rssP   uint64
	rssC   uint64
}

type benchEnv struct {
	cfg        *config
	mission    string
	tmp        string
	brokerPort int
	broker     *proc
	stepNo     int
}

func (e *benchEnv) runStep(ctx context.Context, qos int, target float64, probeOnly bool) (*stepResult, error) {
	cfg := e.cfg
	e.stepNo++
	path := "store"
	if probeOnly {
		path = "probe-only"
	}
	dir := filepath.Join(e.tmp, fmt.Sprintf("step%02d-%s-qos%d-%d", e.stepNo, path, qos, int(target)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	clients := cfg.clients
	if cfg.perClient > 0 {
		clients = max(clients, int(math.Ceil(target/float64(cfg.perClient))))
	}
	r := &stepResult{Path: path, QoS: qos, Target: target, Duration: cfg.step.Seconds(), Clients: clients, Payload: cfg.payload}

	ports := make([]int, 4)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	ipfixPort, colMetrics, probeMetrics, embPort := ports[0], fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2]), ports[3]
	database := "mission"
	colArgs := []string{e.mission, "collect", "--host", "127.0.0.1", "--port", strconv.Itoa(ipfixPort), "--listen", "tcp",
		"--data-dir", filepath.Join(dir, "data"), "--embedded-listen", fmt.Sprintf("127.0.0.1:%d", embPort),
		"--metrics-listen", colMetrics, "--log-level", "warn"}
	mongoURL := fmt.Sprintf("mongodb://127.0.0.1:%d/", embPort)
	if cfg.mongoURL != "" {
		database = fmt.Sprintf("missionbench_%d_%02d", time.Now().Unix(), e.stepNo)
		colArgs = append(colArgs, "--mongo-url", cfg.mongoURL, "--mongo-collection", database)
		mongoURL = cfg.mongoURL
	}
	var col *proc
	exportArgs := []string{"--transport", "tcp", "--collector", "127.0.0.1", "--port", strconv.Itoa(ipfixPort)}
	if probeOnly {
		// The store out of the path: the probe encodes IPFIX into a file
		// that discards it; no collector competes for the CPU.
		exportArgs = []string{"--ipfix-file", os.DevNull}
	} else {
		var err error
		col, err = startProc("collector", filepath.Join(dir, "collector.log"), colArgs...)
		if err != nil {
			return nil, err
		}
		// The store's data is thrown away after the step: no graceful close
		// (it would drain the whole backlog first).
		defer col.stop(2 * time.Second)
		if err := waitMetrics(colMetrics, 30*time.Second, col); err != nil {
			return nil, err
		}
		if err := waitTCP(fmt.Sprintf("127.0.0.1:%d", ipfixPort), 10*time.Second, col); err != nil {
			return nil, err
		}
	}
	csvPath := filepath.Join(dir, "probe.csv")
	probeLog := filepath.Join(dir, "probe.log")
	pr, err := startProc("probe", probeLog, append(append([]string{e.mission, "probe", "-i", "lo",
		"--filter", fmt.Sprintf("tcp port %d", e.brokerPort), "--mqtt-ports", strconv.Itoa(e.brokerPort)}, exportArgs...),
		"--benchmark", "--file-name", csvPath, "--metrics-listen", probeMetrics, "--log-level", "info")...)
	if err != nil {
		return nil, err
	}
	probeStopped := false
	defer func() {
		if !probeStopped {
			pr.stop(10 * time.Second)
		}
	}()
	if err := waitMetrics(probeMetrics, 10*time.Second, pr); err != nil {
		return nil, err
	}
	// The metrics server starts before the capture socket opens: wait for
	// the probe's "capturing" line.
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, _ := os.ReadFile(probeLog)
		if strings.Contains(string(b), "capturing") {
			break
		}
		if time.Now().After(deadline) || pr.exited() {
			return nil, fmt.Errorf("probe did not start capturing:\n%s", pr.tail(15))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)

	var cnt loadCounters
	var (
		mu      sync.Mutex
		samples []sample
		t0, t1  time.Time
	)
	pids := map[string]int{"probe": pr.pid(), "broker": e.broker.pid(), "loadgen": os.Getpid()}
	if col != nil {
		pids["collector"] = col.pid()
	}
	var cpu0, cpu1 map[string]procSample
	var mb0, mt0, mb1, mt1 uint64
	snapCPU := func() map[string]procSample {
		m := map[string]procSample{}
		for k, pid := range pids {
			s, _ := readProc(pid)
			m[k] = s
		}
		return m
	}
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			s := sample{t: time.Now(), sent: cnt.sent.Load()}
			if col == nil {
				// no collector
			} else if m, err := scrape(colMetrics); err == nil {
				s.stored = m.get("mission_store_inserted_total") + m.get("mission_store_duplicates_total")
				s.recs = m.get(`mission_collector_records_total{kind="mqtt"}`)
			}
			if p, err := readProc(pids["probe"]); err == nil {
				s.rssP = p.rss
			}
			if p, err := readProc(pids["collector"]); col != nil && err == nil {
				s.rssC = p.rss
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			select {
			case <-stopSampler:
				return
			case <-tk.C:
			}
		}
	}()
	lcfg := loadConfig{Addr: fmt.Sprintf("127.0.0.1:%d", e.brokerPort), QoS: byte(qos), Rate: target,
		Duration: cfg.step, Clients: clients, Payload: cfg.payload, Window: cfg.window,
		Prefix: fmt.Sprintf("bench%02d", e.stepNo)}
	r.LoadAvg = loadAvg()
	loadErr := runLoad(ctx, lcfg, &cnt, func() {
		t0 = time.Now()
		cpu0 = snapCPU()
		mb0, mt0 = machineCPU()
	})
	if t0.IsZero() {
		close(stopSampler)
		<-samplerDone
		return nil, loadErr
	}
	t1 = t0.Add(cfg.step)
	cpu1 = snapCPU()
	mb1, mt1 = machineCPU()
	if loadErr != nil {
		r.Err = loadErr.Error()
	}
	r.Sent, r.Acked = cnt.sent.Load(), cnt.acked.Load()
	r.Expected = r.Sent + 2*uint64(clients)
	wall := time.Since(t0).Seconds() // the load window plus the wait for the last acks
	for k, dst := range map[string]*float64{"probe": &r.CPUProbe, "collector": &r.CPUCollector, "broker": &r.CPUBroker, "loadgen": &r.CPULoadgen} {
		*dst = 100 * (cpu1[k].cpu - cpu0[k].cpu).Seconds() / wall
	}
	if mt1 > mt0 {
		r.CPUMachine = 100 * float64(mb1-mb0) / float64(mt1-mt0)
	}

	// Drain: the probe exports everything, then the store catches up.
	drainStart := time.Now()
	var pm metricSet
	lastExp, lastChange := -1.0, time.Now()
	for time.Since(drainStart) < 15*time.Second {
		m, err := scrape(probeMetrics)
		if err == nil {
			pm = m
			exp := m.get("mission_probe_flows_exported_total") + m.get("mission_probe_flows_dropped_total") + m.get("mission_probe_flows_lost_total")
			if exp != lastExp {
				lastExp, lastChange = exp, time.Now()
			}
			if exp >= float64(r.Expected) || time.Since(lastChange) > 1500*time.Millisecond {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pm != nil {
		r.KernelDrops = uint64(pm.get("mission_probe_kernel_dropped_total"))
		r.QueueDrops = uint64(pm.get("mission_probe_flows_dropped_total"))
	}
	exportedNow := lastExp
	lastSt, lastStChange := -1.0, time.Now()
	var cm metricSet
	for col != nil {
		m, err := scrape(colMetrics)
		if err == nil {
			cm = m
			st := m.get("mission_store_inserted_total") + m.get("mission_store_duplicates_total")
			if st != lastSt {
				lastSt, lastStChange = st, time.Now()
			}
			if st >= exportedNow || time.Since(lastStChange) > 3*time.Second || time.Since(drainStart) > cfg.drain {
				break
			}
		}
		if time.Since(drainStart) > cfg.drain+5*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.DrainSeconds = time.Since(drainStart).Seconds()
	close(stopSampler)
	<-samplerDone
	if cm != nil {
		r.Stored = uint64(cm.get("mission_store_inserted_total") + cm.get("mission_store_duplicates_total"))
		r.CollectorRecords = uint64(cm.get(`mission_collector_records_total{kind="mqtt"}`))
		r.StoreBacklogEnd = int64(cm.get("mission_store_queue_depth") + cm.get("mission_store_spool_documents"))
	}
	r.NotStored = int64(r.Expected) - int64(r.Stored)
	if col == nil {
		r.NotStored = 0
	}

	// capture → collector receive, from the stored documents (bounded query).
	if col == nil {
		// nothing stored
	} else if lat, err := queryCollectorLatency(ctx, mongoURL, database); err == nil && len(lat) > 0 {
		r.LatCollector = percentiles(lat)
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "bench: step %d: store query: %v\n", e.stepNo, err)
	}

	probeStopped = true
	if err := pr.stop(20 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "bench: probe: %v\n%s\n", err, pr.tail(5))
	}
	rows, err := readProbeCSV(csvPath)
	if err != nil {
		return nil, fmt.Errorf("probe CSV: %w", err)
	}
	if col != nil {
		_ = col.stop(2 * time.Second)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, s := range samples {
		r.RSSProbe = max(r.RSSProbe, s.rssP)
		r.RSSCollector = max(r.RSSCollector, s.rssC)
	}
	analyze(r, rows, samples, t0, t1)
	return r, nil
}

// probeRow is a line of the probe's --benchmark CSV.
type probeRow struct {
	publish bool
	capture int64
	export  int64
	latMs   float64
}

func readProbeCSV(path string) ([]probeRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var rows []probeRow
	first := true
	for sc.Scan() {
		if first {
			first = false
			if !strings.HasPrefix(sc.Text(), "flow_id,control_type,qos,capture_time_ns,export_time_ns,latency_ms") {
				return nil, fmt.Errorf("unexpected header %q", sc.Text())
			}
			continue
		}
		f := strings.Split(sc.Text(), ",")
		if len(f) < 6 {
			continue
		}
		c, _ := strconv.ParseInt(f[3], 10, 64)
		x, _ := strconv.ParseInt(f[4], 10, 64)
		l, _ := strconv.ParseFloat(f[5], 64)
		rows = append(rows, probeRow{publish: f[1] == "PUBLISH", capture: c, export: x, latMs: l})
	}
	if first {
		return nil, errors.New("empty file")
	}
	return rows, sc.Err()
}

func queryCollectorLatency(ctx context.Context, url, database string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
	if err != nil {
		return nil, err
	}
	defer client.Disconnect(context.Background())
	coll := client.Database(database).Collection("mqtt")
	cur, err := coll.Find(ctx, bson.D{{Key: "mqttControlType", Value: 3}},
		options.Find().SetProjection(bson.D{{Key: "flowEndNs", Value: 1}, {Key: "collectorReceiveTime", Value: 1}}).SetLimit(20000))
	if err != nil {
		return nil, err
	}
	defer cur.Close(ctx)
	var out []float64
	for cur.Next(ctx) {
		var d struct {
			FlowEndNs int64     `bson:"flowEndNs"`
			Recv      time.Time `bson:"collectorReceiveTime"`
		}
		if err := cur.Decode(&d); err != nil || d.Recv.IsZero() {
			continue
		}
		out = append(out, float64(d.Recv.UnixNano()-d.FlowEndNs)/1e6)
	}
	return out, cur.Err()
}

func percentiles(v []float64) [3]float64 {
	if len(v) == 0 {
		return [3]float64{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return [3]float64{q(0.50), q(0.95), q(0.99)}
}
