package command

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/store"
)

func collectCommand() *cli.Command {
	return &cli.Command{
		Name:  "collect",
		Usage: "receive IPFIX flows (UDP, TCP, TLS or a file) and store them in MongoDB",
		Flags: flags(logFlags(), storeFlags(), storeWriteFlags(), listenFlags(), journalFlags(), enterpriseFlag(), metricsFlag(), modelFlag(), eveFlag(), benignFlag()),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			ccfg, err := collectorConfig(c, log)
			if err != nil {
				return err
			}
			if c.Bool(flagPrintConfig) {
				return printConfig(c, map[string]any{"role": "collect", "listen": listenView(c, ccfg), "store": storeView(c), "journal": journalView(c)})
			}
			w, err := openStore(c, log)
			if err != nil {
				return err
			}
			sessions, err := store.OpenSessions(c.Context, w.URL(), c.String(flagMongoCollection), log)
			if err != nil {
				return errors.Join(err, closeStore(w, log))
			}
			ccfg.Identities = sessions
			closeQuarantine := func() error { return nil }
			if c.Bool(flagKeepInvalid) {
				q, err := store.OpenQuarantine(c.Context, w.URL(), c.String(flagMongoCollection), log)
				if err != nil {
					return errors.Join(err, closeSessions(sessions), closeStore(w, log))
				}
				ccfg.Quarantine = q
				closeQuarantine = func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					return q.Close(ctx)
				}
			}
			det, err := startDetection(c, w, log)
			if err != nil {
				return errors.Join(err, closeQuarantine(), closeSessions(sessions), closeStore(w, log))
			}
			fns := []metrics.Func{w.Metrics}
			if det != nil {
				ccfg.Flows = det.Observe
				fns = append(fns, det.Metrics)
			}
			// An IPFIX file needs no journal: it is still there after a crash.
			if c.String(flagRead) == "" {
				if ccfg.Journal, err = openJournal(c, log); err != nil {
					return errors.Join(err, closeDetection(det), closeQuarantine(), closeSessions(sessions), closeStore(w, log))
				}
			}
			col := collector.New(ccfg, w)
			if err := serveMetrics(c, log, append(fns, col.Metrics)...); err != nil {
				return errors.Join(err, closeDetection(det), closeQuarantine(), closeSessions(sessions), closeStore(w, log), closeJournal(ccfg.Journal))
			}
			if f := c.String(flagRead); f != "" {
				err = col.ReadFile(c.Context, f)
			} else {
				err = col.Run(c.Context)
			}
			// The journal closes after the store, which settles what it took.
			return errors.Join(err, closeDetection(det), closeQuarantine(), closeSessions(sessions), closeStore(w, log), closeJournal(ccfg.Journal))
		},
	}
}

func collectorConfig(c *cli.Context, log zerolog.Logger) (collector.Config, error) {
	cfg := collector.Config{
		Host:                 c.String(flagHost),
		Port:                 c.Int(flagPort),
		TLSPort:              c.Int(flagTLSPort),
		UDPReaders:           c.Int(flagUDPReaders),
		MaxTCPConns:          c.Int(flagMaxTCPConns),
		MaxTCPConnsPerSource: c.Int(flagMaxTCPPerSrc),
		TCPIdleTimeout:       c.Duration(flagTCPIdle),
		DrainTimeout:         c.Duration(flagDrain),
		Limits: ipfix.Limits{MaxSessions: c.Int(flagMaxSessions), MaxTemplates: c.Int(flagMaxTemplates),
			MaxTemplateFields: c.Int(flagMaxTemplateFields), MaxPendingBytes: c.Int(flagMaxPending)},
		EnterpriseNumber: uint32(c.Uint(flagEnterpriseNumber)),
		Logger:           log,
		MaxIdentities:    c.Int(flagMaxIdentities),
	}
	for _, t := range strings.Split(c.String(flagListen), ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Listen = append(cfg.Listen, t)
		}
	}
	for _, a := range strings.Split(c.String(flagAllow), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		p, err := netip.ParsePrefix(a)
		if err != nil {
			addr, aerr := netip.ParseAddr(a)
			if aerr != nil {
				return cfg, fmt.Errorf("--%s %q: not a network (CIDR) or address", flagAllow, a)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	if cert := c.String(flagTLSCert); cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, c.String(flagTLSKey))
		if err != nil {
			return cfg, fmt.Errorf("--%s/--%s: %w", flagTLSCert, flagTLSKey, err)
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}}
		if ca := c.String(flagTLSClientCA); ca != "" {
			pool, err := readCertPool(ca)
			if err != nil {
				return cfg, fmt.Errorf("--%s: %w", flagTLSClientCA, err)
			}
			cfg.TLS.ClientCAs = pool
			cfg.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// openStore opens the store the flags name for writing.
func openStore(c *cli.Context, log zerolog.Logger) (*store.Writer, error) {
	url, err := mongoURL(c)
	if err != nil {
		return nil, err
	}
	w, err := store.Open(c.Context, store.Config{
		URL:            url,
		Database:       c.String(flagMongoCollection),
		Collection:     c.String(flagCollection),
		DataDir:        c.String(flagDataDir),
		EmbeddedListen: c.String(flagEmbeddedListen),
		Retention:      c.Duration(flagRetention),
		QueueSize:      c.Int(flagStoreQueue),
		SpoolMaxBytes:  c.Int64(flagSpoolMaxBytes),
		InsertWorkers:  c.Int(flagStoreWorkers),
		// Only a URL can be down; the embedded server always answers.
		StartUnreachable: c.Bool(flagWaitForDatabase),
	}, log)
	if err != nil {
		return nil, storeError(err)
	}
	if w.Embedded() {
		log.Info().Str("url", w.URL()).Str("data_dir", c.String(flagDataDir)).
			Str("database", c.String(flagMongoCollection)).Str("collection", c.String(flagCollection)).
			Msg("embedded MongoDB-compatible server started; query it with any MongoDB client while mission runs")
	}
	return w, nil
}

// storeError adds to a store error the flag that fixes it.
func storeError(err error) error {
	switch {
	case errors.Is(err, store.ErrDirInUse):
		return fmt.Errorf("%w; stop the other process or give this one another --%s", err, flagDataDir)
	case errors.Is(err, store.ErrRetentionUnsupported):
		return fmt.Errorf("%w; unset --%s or point --%s at MongoDB", err, flagRetention, flagMongoURL)
	case errors.Is(err, store.ErrUnreachable):
		return fmt.Errorf("%w; start the database or fix --%s", err, flagMongoURL)
	case errors.Is(err, store.ErrInvalidURL):
		return fmt.Errorf("%w; check --%s", err, flagMongoURL)
	}
	return err
}

// openJournal opens the collector's journal in --data-dir/journal, or
// returns nil with --journal=false.
func openJournal(c *cli.Context, log zerolog.Logger) (*collector.Journal, error) {
	if !c.Bool(flagJournal) {
		return nil, nil
	}
	j, err := collector.OpenJournal(collector.JournalConfig{Dir: filepath.Join(c.String(flagDataDir), "journal"),
		MaxBytes: c.Int64(flagJournalMaxBytes), Logger: log})
	if errors.Is(err, collector.ErrJournalInUse) {
		return nil, fmt.Errorf("%w; stop the other process or give this one another --%s", err, flagDataDir)
	}
	return j, err
}

func journalView(c *cli.Context) map[string]any {
	return map[string]any{"enabled": c.Bool(flagJournal), "dir": filepath.Join(c.String(flagDataDir), "journal"), "maxBytes": c.Int64(flagJournalMaxBytes)}
}

func closeJournal(j *collector.Journal) error {
	if j == nil {
		return nil
	}
	return j.Close()
}

func closeStore(w *store.Writer, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	st := w.Stats()
	log.Info().Uint64("inserted", st.Inserted).Int64("spooled_pending", st.SpoolRecords).Uint64("dropped", st.Dropped).Msg("store closed")
	return nil
}

// closeSessions writes the identity table's queued changes.
func closeSessions(s *store.SessionWriter) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		return fmt.Errorf("close identity table: %w", err)
	}
	return nil
}
