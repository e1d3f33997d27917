package command

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/store"
)

func allInOneCommand() *cli.Command {
	return &cli.Command{
		Name:  "all-in-one",
		Usage: "probe, collector and store in one process (flows still travel as IPFIX)",
		Flags: flags(logFlags(), captureFlags(), storeFlags(), storeWriteFlags(), journalFlags(), enterpriseFlag(), metricsFlag(), modelFlag(), eveFlag(), benignFlag(), privilegeFlags()),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			pcfg, err := probeConfig(c, log)
			if err != nil {
				return err
			}
			if pcfg.StateFile == "" && c.String(flagDataDir) != "" {
				pcfg.StateFile = filepath.Join(c.String(flagDataDir), "probe-state")
			}
			if c.Bool(flagPrintConfig) {
				return printConfig(c, map[string]any{"role": "all-in-one", "capture": captureView(pcfg), "store": storeView(c), "journal": journalView(c),
					"privileges": privilegeView(c)})
			}
			// First what needs privileges: the capture socket and the
			// metrics port. Then, with --user, everything else (the store,
			// its sockets and files) is made by the unprivileged user.
			target, err := dropTarget(c)
			if err != nil {
				return err
			}
			if err := prepareDataDir(c.String(flagDataDir), target); err != nil {
				return err
			}
			metricsLn, err := listenMetrics(c)
			if err != nil {
				return err
			}
			exp := &laterExporter{} // the collector it exports to comes after the drop
			p, err := probe.New(pcfg, exp)
			if err != nil {
				return probeError(err)
			}
			if err := p.Open(); err != nil {
				return probeError(err)
			}
			if err := dropPrivileges(target, pcfg.Interface != "", log); err != nil {
				return err
			}
			w, err := openStore(c, log)
			if err != nil {
				return dataDirHint(err, target)
			}
			sum := newSummary()
			sessions, err := store.OpenSessions(c.Context, w.URL(), c.String(flagMongoCollection), log)
			if err != nil {
				return errors.Join(err, closeStore(w, log))
			}
			det, err := startDetection(c, w, log)
			if err != nil {
				return errors.Join(err, closeSessions(sessions), closeStore(w, log))
			}
			hook := sum.add
			if det != nil {
				hook = func(r *flow.Record) { sum.add(r); det.Observe(r) }
			}
			journal, err := openJournal(c, log)
			if err != nil {
				return errors.Join(err, closeDetection(det), closeStore(w, log))
			}
			pen := uint32(c.Uint(flagEnterpriseNumber))
			// The collector listens on a Unix socket in the private data
			// directory (mode 0600: no other user or process can inject
			// flows); the probe exports to it as over TCP, the same IPFIX
			// encoding, framing and decoding as between hosts.
			hop, err := internalHop(c, log)
			if err != nil {
				return errors.Join(err, closeDetection(det), closeSessions(sessions), closeStore(w, log), closeJournal(journal))
			}
			col := collector.New(collector.Config{Listen: []string{hop.Network()}, UnixSocket: hop.String(), Host: "127.0.0.1",
				EnterpriseNumber: pen, Flows: hook, Identities: sessions, Journal: journal, Logger: log}, w)
			colCtx, stopCol := context.WithCancel(context.Background())
			colDone := make(chan error, 1)
			go func() { colDone <- col.Run(colCtx) }()
			fail := func(err error) error {
				stopCol()
				return errors.Join(err, <-colDone, closeDetection(det), closeSessions(sessions), closeStore(w, log), closeJournal(journal))
			}
			addrs, err := col.Addrs(c.Context)
			if err != nil {
				return fail(err)
			}
			ipfixExp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: addrs[0].Network(), Address: addrs[0].String(), ObservationDomainID: 1,
				EnterpriseNumber: pen, Logger: log})
			if err != nil {
				return fail(err)
			}
			exp.Exporter = ipfixExp
			fns := []metrics.Func{p.Metrics, col.Metrics, w.Metrics}
			if det != nil {
				fns = append(fns, det.Metrics)
			}
			if metricsLn != nil {
				metrics.ServeListener(c.Context, metricsLn, log, fns...)
			}
			start := time.Now()
			runErr := p.Run(c.Context)
			// Let the collector take in everything the probe sent.
			deadline := time.Now().Add(10 * time.Second)
			for ours(col.Stats()) < p.Stats().FlowsExported && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			stopCol()
			colErr := <-colDone
			detErr := closeDetection(det)
			sessErr := closeSessions(sessions)
			storeErr := closeStore(w, log)
			journalErr := closeJournal(journal)
			if pcfg.ReadFile != "" {
				storeURL, _ := mongoURL(c) // read once already by openStore
				sum.print(c.App.Writer, summaryInfo{
					file: pcfg.ReadFile, elapsed: time.Since(start), probe: p.Stats(), collector: col.Stats(), store: w.Stats(),
					url: storeURL, database: c.String(flagMongoCollection), collection: c.String(flagCollection),
					dataDir: c.String(flagDataDir),
				})
			}
			return errors.Join(runErr, colErr, detErr, sessErr, storeErr, journalErr)
		},
	}
}

// internalHop is where all-in-one's collector listens for its probe: the
// Unix socket ipfix.sock beside the embedded database's (in the data
// directory, see store.SocketPath), or, where there are no Unix sockets, a
// free loopback TCP port.
func internalHop(c *cli.Context, log zerolog.Logger) (net.Addr, error) {
	dataDir := c.String(flagDataDir)
	sock, err := store.SocketPath(dataDir, "ipfix.sock")
	if err != nil {
		return nil, err
	}
	if sock == "" {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil
	}
	if err := store.PrivateSocketDir(dataDir, sock, log); err != nil {
		return nil, err
	}
	return &net.UnixAddr{Name: sock, Net: "unix"}, nil
}

// laterExporter lets all-in-one open its probe's capture (and drop
// privileges) before the collector the probe exports to exists: Exporter
// is set before the probe runs.
type laterExporter struct{ probe.Exporter }

// ExportStats forwards the exporter's counters.
func (e *laterExporter) ExportStats() probe.ExportStats {
	if s, ok := e.Exporter.(probe.ExportStatser); ok {
		return s.ExportStats()
	}
	return probe.ExportStats{}
}

// ours is the number of flows of our templates the collector decoded.
func ours(s collector.Stats) uint64 { return s.MQTTFlows + s.CoAPFlows }
