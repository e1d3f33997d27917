// Command mission is a process-aware intrusion detection system for MQTT
// networks: `mission probe` turns MQTT traffic into flow records exported
// as IPFIX, `mission collect` stores them in MongoDB, `mission all-in-one`
// does both in one process. See README.md.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/mining"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/mission-ids/mission/probe/tracker"
	"github.com/mission-ids/mission/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	os.Args = applyRole(os.Args, os.Getenv("ROLE"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "mission:", err)
		os.Exit(1)
	}
}

// applyRole lets one container image run any role: with no subcommand on
// the command line (nothing, or only flags), ROLE (probe, collect,
// collector or all-in-one) picks it.
func applyRole(args []string, role string) []string {
	if role == "" || len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		return args
	}
	if len(args) > 1 {
		switch args[1] {
		case "-h", "--help", "-v", "--version":
			return args
		}
	}
	switch strings.ToLower(role) {
	case "collector":
		role = "collect"
	case "allinone", "all_in_one":
		role = "all-in-one"
	}
	return append(append(args[:1:1], role), args[1:]...)
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "mission",
		Usage:   "process-aware intrusion detection for MQTT networks",
		Version: version,
		Flags:   logFlags(),
		Commands: []*cli.Command{
			probeCommand(),
			collectCommand(),
			allInOneCommand(),
			queryCommand(),
			mineCommand(),
			detectCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints the error once
	}
}

// logFlags are accepted before and after the subcommand.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "print-config", EnvVars: []string{"PRINT_CONFIG"}, Usage: "print the effective configuration as JSON and exit"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"LOG_LEVEL"}, Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "console", EnvVars: []string{"LOG_FORMAT"}, Usage: "console (human) or json"},
	}
}

// lineageString returns the value of a flag defined on several levels of
// the command line: the innermost level where it was set, else its default.
func lineageString(c *cli.Context, name string) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(name) {
			return ctx.String(name)
		}
	}
	return c.String(name)
}

// parseLevel accepts zerolog's names and the Python logging names the
// original containers used (WARNING, CRITICAL), in any case.
func parseLevel(s string) (zerolog.Level, error) {
	switch s = strings.ToLower(strings.TrimSpace(s)); s {
	case "warning":
		s = "warn"
	case "critical":
		s = "error"
	}
	lvl, err := zerolog.ParseLevel(s)
	if err != nil || lvl == zerolog.NoLevel || s == "" {
		return 0, fmt.Errorf("--log-level %q: use debug, info, warn or error", s)
	}
	return lvl, nil
}

// newLogger builds the one logger every part of the program gets.
func newLogger(c *cli.Context) (zerolog.Logger, error) {
	lvl, err := parseLevel(lineageString(c, "log-level"))
	if err != nil {
		return zerolog.Logger{}, err
	}
	var w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}
	var l zerolog.Logger
	switch lineageString(c, "log-format") {
	case "json":
		l = zerolog.New(os.Stderr)
	case "console", "":
		l = zerolog.New(w)
	default:
		return zerolog.Logger{}, errors.New("--log-format: use console or json")
	}
	return l.Level(lvl).With().Timestamp().Logger(), nil
}

// Flags shared by probe and all-in-one: what to capture and how to track it.
func captureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "interface", Aliases: []string{"i"}, EnvVars: []string{"INTERFACE"}, Usage: "capture live on this interface (needs CAP_NET_RAW)"},
		&cli.StringFlag{Name: "read", Aliases: []string{"r"}, EnvVars: []string{"READ_FILE"}, Usage: "read a pcap or pcapng file instead of capturing"},
		&cli.StringFlag{Name: "filter", Aliases: []string{"f"}, EnvVars: []string{"FILTER"}, Usage: "tcpdump-syntax capture filter (applied in the kernel when live)"},
		&cli.StringFlag{Name: "protocol", Value: "mqtt", EnvVars: []string{"PROTOCOL"}, Usage: "application protocol to dissect (only mqtt)"},
		&cli.StringFlag{Name: "mqtt-ports", Value: "1883", EnvVars: []string{"MQTT_PORTS"}, Usage: "comma-separated TCP ports carrying MQTT"},
		&cli.StringFlag{Name: "tls-ports", Value: "8883", EnvVars: []string{"TLS_PORTS"}, Usage: "comma-separated ports of MQTT over TLS (counted, not decoded)"},
		&cli.BoolFlag{Name: "promiscuous", EnvVars: []string{"PROMISCUOUS"}, Usage: "put the interface in promiscuous mode (needs CAP_NET_ADMIN)"},
		&cli.DurationFlag{Name: "idle-timeout", Value: defaultIdleTimeout, EnvVars: []string{"IDLE_TIMEOUT"}, Usage: "end an unfinished MQTT transaction after this long without packets"},
		&cli.DurationFlag{Name: "connection-timeout", Value: defaultConnTimeout, EnvVars: []string{"CONNECTION_TIMEOUT"}, Usage: "forget a TCP connection after this long without packets"},
		&cli.IntFlag{Name: "max-connections", Value: 200_000, EnvVars: []string{"MAX_CONNECTIONS"}, Usage: "TCP connections tracked at once (oldest evicted)"},
		&cli.IntFlag{Name: "max-transactions", Value: 1_000_000, EnvVars: []string{"MAX_TRANSACTIONS"}, Usage: "open MQTT transactions at once (oldest ended)"},
		&cli.IntFlag{Name: "max-buffer", Value: 64 << 20, EnvVars: []string{"MAX_BUFFER"}, Usage: "bytes of out-of-order TCP data buffered in total"},
		&cli.IntFlag{Name: "max-packet-size", Value: 1 << 20, EnvVars: []string{"MAX_PACKET_SIZE"}, Usage: "larger MQTT packets are skipped (and counted)"},
		&cli.IntFlag{Name: "queue-size", Value: 65536, EnvVars: []string{"QUEUE_SIZE"}, Usage: "flows waiting for export; beyond it flows are dropped and counted"},
		&cli.DurationFlag{Name: "flush-interval", Value: defaultFlush, EnvVars: []string{"FLUSH_INTERVAL"}, Usage: "longest time a finished flow waits before export"},
		&cli.UintFlag{Name: "enterprise-number", Value: 9999, EnvVars: []string{"ENTERPRISE_NUMBER"}, Usage: "IPFIX private enterprise number of the MQTT elements (9999: the original's)"},
		&cli.StringFlag{Name: "metrics-listen", EnvVars: []string{"METRICS_LISTEN"}, Usage: "serve Prometheus metrics on this address (e.g. :9464)"},
	}
}

const (
	defaultIdleTimeout = 30 * time.Second
	defaultConnTimeout = 10 * time.Minute
	defaultFlush       = 100 * time.Millisecond
)

func probeCommand() *cli.Command {
	flags := append(append(logFlags(), captureFlags()...),
		&cli.StringFlag{Name: "collector", Value: "127.0.0.1", EnvVars: []string{"COLLECTOR"}, Usage: "collector host name or address"},
		&cli.UintFlag{Name: "port", Value: 2055, EnvVars: []string{"PORT"}, Usage: "collector port"},
		&cli.StringFlag{Name: "transport", Value: "udp", EnvVars: []string{"EXPORT_TRANSPORT"}, Usage: "IPFIX transport: udp, tcp or tls"},
		&cli.StringFlag{Name: "ipfix-file", EnvVars: []string{"IPFIX_FILE"}, Usage: "write IPFIX to this file (RFC 5655) instead of sending it"},
		&cli.BoolFlag{Name: "stdout", EnvVars: []string{"STDOUT"}, Usage: "print flows as JSON lines on stdout (instead of IPFIX unless --ipfix-file/--transport is also given)"},
		&cli.UintFlag{Name: "observation-domain", Value: 1, EnvVars: []string{"OBSERVATION_DOMAIN"}, Usage: "IPFIX observation domain id of this probe"},
		&cli.IntFlag{Name: "mtu", Value: 1500, EnvVars: []string{"EXPORT_MTU"}, Usage: "path MTU towards the collector (UDP message size)"},
		&cli.StringFlag{Name: "tls-ca", EnvVars: []string{"TLS_CA"}, Usage: "CA file to verify the collector's certificate (tls transport)"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"TLS_CERT"}, Usage: "client certificate for mutual TLS"},
		&cli.StringFlag{Name: "tls-key", EnvVars: []string{"TLS_KEY"}, Usage: "client key for mutual TLS"},
		&cli.StringFlag{Name: "tls-server-name", EnvVars: []string{"TLS_SERVER_NAME"}, Usage: "expected name in the collector's certificate (default: --collector)"},
		&cli.BoolFlag{Name: "benchmark", EnvVars: []string{"BENCHMARK"}, Usage: "write per-flow latency, CPU and RAM to --file-name (CSV)"},
		&cli.StringFlag{Name: "file-name", Value: "benchmark.csv", EnvVars: []string{"FILE_NAME"}, Usage: "CSV file of --benchmark"},
	)
	return &cli.Command{
		Name:  "probe",
		Usage: "capture MQTT traffic and export one flow per MQTT transaction as IPFIX",
		Flags: flags,
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			cfg, err := probeConfig(c, log)
			if err != nil {
				return err
			}
			if c.Bool("print-config") {
				return printConfig(map[string]any{"role": "probe", "capture": captureView(cfg), "export": exportView(c)})
			}
			exp, err := probeExporter(c, log)
			if err != nil {
				return err
			}
			return runProbe(c, cfg, exp, log)
		},
	}
}

// probeConfig builds the capture side of a probe from the flags.
func probeConfig(c *cli.Context, log zerolog.Logger) (probe.Config, error) {
	if p := strings.ToLower(c.String("protocol")); p != "mqtt" {
		return probe.Config{}, fmt.Errorf("--protocol %q: only mqtt is supported", p)
	}
	mqttPorts, err := parsePorts(c.String("mqtt-ports"))
	if err != nil {
		return probe.Config{}, fmt.Errorf("--mqtt-ports: %w", err)
	}
	tlsPorts, err := parsePorts(c.String("tls-ports"))
	if err != nil {
		return probe.Config{}, fmt.Errorf("--tls-ports: %w", err)
	}
	if tlsPorts == nil {
		tlsPorts = []uint16{}
	}
	cfg := probe.Config{
		Interface:     c.String("interface"),
		ReadFile:      c.String("read"),
		Filter:        c.String("filter"),
		MQTTPorts:     mqttPorts,
		TLSPorts:      tlsPorts,
		Promiscuous:   c.Bool("promiscuous"),
		QueueSize:     c.Int("queue-size"),
		FlushInterval: c.Duration("flush-interval"),
		Reassembly: reassembly.Config{
			MaxConnections: c.Int("max-connections"),
			MaxBufferedAll: c.Int("max-buffer"),
			IdleTimeout:    c.Duration("connection-timeout"),
		},
		Tracker: tracker.Config{
			IdleTimeout:     c.Duration("idle-timeout"),
			MaxTransactions: c.Int("max-transactions"),
			MaxPacketSize:   c.Int("max-packet-size"),
		},
		Logger: log,
	}
	if (cfg.Interface == "") == (cfg.ReadFile == "") {
		return cfg, errors.New("give --interface IFACE (env INTERFACE) to capture live, or --read FILE for a capture file")
	}
	return cfg, nil
}

// probeExporter builds the exporters the probe flags ask for.
func probeExporter(c *cli.Context, log zerolog.Logger) (probe.Exporter, error) {
	var exps probe.MultiExporter
	if c.Bool("stdout") {
		exps = append(exps, probe.NewJSONExporter(os.Stdout))
	}
	if f := c.String("ipfix-file"); f != "" {
		e, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "file", Address: f,
			ObservationDomainID: uint32(c.Uint("observation-domain")), EnterpriseNumber: uint32(c.Uint("enterprise-number")), Logger: log})
		if err != nil {
			return nil, err
		}
		exps = append(exps, e)
	}
	// IPFIX to the collector unless the user asked only for stdout/file.
	if len(exps) == 0 || c.IsSet("transport") || c.IsSet("collector") || c.IsSet("port") {
		tlsCfg, err := clientTLS(c)
		if err != nil {
			return nil, err
		}
		e, err := probe.NewIPFIXExporter(probe.IPFIXConfig{
			Transport:           c.String("transport"),
			Address:             net.JoinHostPort(c.String("collector"), strconv.Itoa(int(c.Uint("port")))),
			ObservationDomainID: uint32(c.Uint("observation-domain")),
			EnterpriseNumber:    uint32(c.Uint("enterprise-number")),
			MTU:                 c.Int("mtu"),
			TLS:                 tlsCfg,
			Logger:              log,
		})
		if err != nil {
			return nil, err
		}
		exps = append(exps, e)
	}
	if len(exps) == 1 {
		return exps[0], nil
	}
	return exps, nil
}

func clientTLS(c *cli.Context) (*tls.Config, error) {
	if c.String("transport") != "tls" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.String("tls-server-name")}
	if cfg.ServerName == "" {
		cfg.ServerName = c.String("collector")
	}
	if ca := c.String("tls-ca"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate found", ca)
		}
		cfg.RootCAs = pool
	}
	if cert, key := c.String("tls-cert"), c.String("tls-key"); cert != "" || key != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

// runProbe runs a probe until its file ends or a signal arrives.
func runProbe(c *cli.Context, cfg probe.Config, exp probe.Exporter, log zerolog.Logger) error {
	if c.Bool("benchmark") {
		f, err := os.Create(c.String("file-name"))
		if err != nil {
			return fmt.Errorf("--file-name: %w", err)
		}
		defer f.Close()
		cfg.Benchmark = f
	}
	p, err := probe.New(cfg, exp)
	if err != nil {
		exp.Close()
		return err
	}
	if addr := c.String("metrics-listen"); addr != "" {
		if _, err := metrics.Serve(c.Context, addr, log, p.Metrics); err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	return p.Run(c.Context)
}

// parsePorts parses "1883,8883".
func parsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port number", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// Flags shared by collect and all-in-one: where and how flows are stored.
func storeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "mongo-url", EnvVars: []string{"MONGO_URL"}, Usage: "MongoDB URL (mongodb://…); empty starts the embedded server over --data-dir"},
		&cli.StringFlag{Name: "mongo-collection", Value: store.DefaultDatabase, EnvVars: []string{"MONGO_COLLECTION"}, Usage: "database name (the original's MONGO_COLLECTION named the database)"},
		&cli.StringFlag{Name: "collection", Value: store.DefaultCollection, EnvVars: []string{"MONGO_COLLECTION_NAME"}, Usage: "collection of the flow documents (the original's: mqtt)"},
		&cli.StringFlag{Name: "data-dir", Value: store.DefaultDataDir, EnvVars: []string{"DATA_DIR"}, Usage: "spool and embedded database directory"},
		&cli.StringFlag{Name: "embedded-listen", Value: store.DefaultEmbeddedListen, EnvVars: []string{"EMBEDDED_LISTEN"}, Usage: "address of the embedded MongoDB-compatible server"},
		&cli.DurationFlag{Name: "retention", EnvVars: []string{"RETENTION"}, Usage: "delete flows this long after they were received (TTL index; MongoDB only)"},
		&cli.IntFlag{Name: "store-queue", Value: 200_000, EnvVars: []string{"STORE_QUEUE"}, Usage: "documents queued in memory before the spool takes over"},
		&cli.Int64Flag{Name: "spool-max-bytes", Value: 1 << 30, EnvVars: []string{"SPOOL_MAX_BYTES"}, Usage: "on-disk spool bound while the database is unreachable"},
		&cli.IntFlag{Name: "store-workers", Value: store.DefaultInsertWorkers, EnvVars: []string{"STORE_WORKERS"}, Usage: "insert commands in flight at once (1 to 64)"},
	}
}

func openStore(c *cli.Context, log zerolog.Logger) (*store.Writer, error) {
	w, err := store.Open(c.Context, store.Config{
		URL:            c.String("mongo-url"),
		Database:       c.String("mongo-collection"),
		Collection:     c.String("collection"),
		DataDir:        c.String("data-dir"),
		EmbeddedListen: c.String("embedded-listen"),
		Retention:      c.Duration("retention"),
		QueueSize:      c.Int("store-queue"),
		SpoolMaxBytes:  c.Int64("spool-max-bytes"),
		InsertWorkers:  c.Int("store-workers"),
	}, log)
	if err != nil {
		return nil, err
	}
	if w.Embedded() {
		log.Info().Str("url", w.URL()).Str("data_dir", c.String("data-dir")).
			Str("database", c.String("mongo-collection")).Str("collection", c.String("collection")).
			Msg("embedded MongoDB-compatible server started; query it with any MongoDB client while mission runs")
	}
	return w, nil
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

func collectCommand() *cli.Command {
	flags := append(append(logFlags(), storeFlags()...),
		&cli.StringFlag{Name: "host", Value: "0.0.0.0", EnvVars: []string{"COLLECTOR"}, Usage: "listen address"},
		&cli.IntFlag{Name: "port", Value: 2055, EnvVars: []string{"COLLECTOR_PORT"}, Usage: "UDP and TCP port for IPFIX"},
		&cli.StringFlag{Name: "listen", Value: "udp,tcp", EnvVars: []string{"LISTEN"}, Usage: "transports on --port: udp, tcp or both"},
		&cli.IntFlag{Name: "tls-port", Value: 4740, EnvVars: []string{"TLS_PORT"}, Usage: "port for IPFIX over TLS (with --tls-cert)"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"TLS_CERT"}, Usage: "server certificate (PEM); enables TLS"},
		&cli.StringFlag{Name: "tls-key", EnvVars: []string{"TLS_KEY"}, Usage: "server key (PEM)"},
		&cli.StringFlag{Name: "tls-client-ca", EnvVars: []string{"TLS_CLIENT_CA"}, Usage: "require client certificates signed by this CA (mutual TLS)"},
		&cli.StringFlag{Name: "allow", EnvVars: []string{"ALLOW"}, Usage: "comma-separated exporter networks accepted (CIDR); others are dropped and counted"},
		&cli.StringFlag{Name: "read", Aliases: []string{"r"}, EnvVars: []string{"READ_FILE"}, Usage: "store the flows of an IPFIX file and exit"},
		&cli.IntFlag{Name: "udp-readers", Value: 2, EnvVars: []string{"UDP_READERS"}, Usage: "UDP sockets sharing the port"},
		&cli.UintFlag{Name: "enterprise-number", Value: 9999, EnvVars: []string{"ENTERPRISE_NUMBER"}, Usage: "IPFIX private enterprise number of the MQTT elements"},
		&cli.StringFlag{Name: "metrics-listen", EnvVars: []string{"METRICS_LISTEN"}, Usage: "serve Prometheus metrics on this address (e.g. :9465)"},
		modelFlag(),
	)
	return &cli.Command{
		Name:  "collect",
		Usage: "receive IPFIX flows (UDP, TCP, TLS or a file) and store them in MongoDB",
		Flags: flags,
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			ccfg, err := collectorConfig(c, log)
			if err != nil {
				return err
			}
			if c.Bool("print-config") {
				return printConfig(map[string]any{"role": "collect", "listen": listenView(c, ccfg), "store": storeView(c)})
			}
			w, err := openStore(c, log)
			if err != nil {
				return err
			}
			det, err := startDetection(c, w, log)
			if err != nil {
				return errors.Join(err, closeStore(w, log))
			}
			fns := []metrics.Func{storeMetrics(w)}
			if det != nil {
				ccfg.Flows = det.observe
				fns = append(fns, det.metrics)
			}
			col := collector.New(ccfg, w)
			if addr := c.String("metrics-listen"); addr != "" {
				if _, err := metrics.Serve(c.Context, addr, log, append(fns, col.Metrics)...); err != nil {
					return errors.Join(fmt.Errorf("--metrics-listen: %w", err), det.close(), closeStore(w, log))
				}
			}
			if f := c.String("read"); f != "" {
				err = col.ReadFile(c.Context, f)
			} else {
				err = col.Run(c.Context)
			}
			return errors.Join(err, det.close(), closeStore(w, log))
		},
	}
}

func collectorConfig(c *cli.Context, log zerolog.Logger) (collector.Config, error) {
	cfg := collector.Config{
		Host:             c.String("host"),
		Port:             c.Int("port"),
		TLSPort:          c.Int("tls-port"),
		UDPReaders:       c.Int("udp-readers"),
		EnterpriseNumber: uint32(c.Uint("enterprise-number")),
		Logger:           log,
	}
	for _, t := range strings.Split(c.String("listen"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Listen = append(cfg.Listen, t)
		}
	}
	for _, a := range strings.Split(c.String("allow"), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		p, err := netip.ParsePrefix(a)
		if err != nil {
			addr, aerr := netip.ParseAddr(a)
			if aerr != nil {
				return cfg, fmt.Errorf("--allow %q: not a network (CIDR) or address", a)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	if cert := c.String("tls-cert"); cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, c.String("tls-key"))
		if err != nil {
			return cfg, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}}
		if ca := c.String("tls-client-ca"); ca != "" {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return cfg, fmt.Errorf("--tls-client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("--tls-client-ca %s: no PEM certificate found", ca)
			}
			cfg.TLS.ClientCAs = pool
			cfg.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// storeMetrics emits the store's counters.
func storeMetrics(w *store.Writer) metrics.Func {
	return func(e metrics.Emitter) {
		s := w.Stats()
		g := func(name, help string, v float64) { e.Gauge("mission_store_"+name, help, v) }
		c := func(name, help string, v uint64) { e.Counter("mission_store_"+name, help, float64(v)) }
		g("queue_depth", "Documents in the in-memory queue.", float64(s.QueueDepth))
		g("spool_bytes", "Bytes in the on-disk spool.", float64(s.SpoolBytes))
		g("spool_documents", "Documents in the spool waiting for the database.", float64(s.SpoolRecords))
		healthy := 0.0
		if s.Healthy {
			healthy = 1
		}
		g("healthy", "1 if the last database operation succeeded.", healthy)
		g("last_insert_latency_seconds", "Latency of the last insert command.", s.LastInsertLatency.Seconds())
		c("accepted_total", "Documents accepted for storing.", s.Accepted)
		c("inserted_total", "Documents stored.", s.Inserted)
		c("duplicates_total", "Retried documents found already stored.", s.Duplicates)
		c("insert_batches_total", "Successful insert commands.", s.InsertBatches)
		c("insert_errors_total", "Failed insert commands.", s.InsertErrors)
		c("spooled_total", "Documents written to the spool.", s.Spooled)
		c("replayed_total", "Documents replayed from the spool.", s.Replayed)
		c("dropped_total", "Documents lost (spool full or unwritable).", s.Dropped)
		c("rejected_total", "Documents the database refused.", s.Rejected)
	}
}

func allInOneCommand() *cli.Command {
	return &cli.Command{
		Name:  "all-in-one",
		Usage: "probe, collector and store in one process (flows still travel as IPFIX)",
		Flags: append(append(append(logFlags(), captureFlags()...), storeFlags()...), modelFlag()),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			pcfg, err := probeConfig(c, log)
			if err != nil {
				return err
			}
			if c.Bool("print-config") {
				return printConfig(map[string]any{"role": "all-in-one", "capture": captureView(pcfg), "store": storeView(c)})
			}
			w, err := openStore(c, log)
			if err != nil {
				return err
			}
			sum := newSummary()
			det, err := startDetection(c, w, log)
			if err != nil {
				return errors.Join(err, closeStore(w, log))
			}
			hook := sum.add
			if det != nil {
				hook = func(r *flow.Record) { sum.add(r); det.observe(r) }
			}
			// The collector listens on a private loopback port; the probe
			// exports to it over TCP, the same IPFIX path as between hosts.
			col := collector.New(collector.Config{Host: "127.0.0.1", Port: 0, Listen: []string{"tcp"},
				EnterpriseNumber: uint32(c.Uint("enterprise-number")), Flows: hook, Logger: log}, w)
			colCtx, stopCol := context.WithCancel(context.Background())
			colDone := make(chan error, 1)
			go func() { colDone <- col.Run(colCtx) }()
			addrs, err := col.Addrs(c.Context)
			if err != nil {
				stopCol()
				return errors.Join(err, <-colDone, closeStore(w, log))
			}
			exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "tcp", Address: addrs[0].String(), ObservationDomainID: 1,
				EnterpriseNumber: uint32(c.Uint("enterprise-number")), Logger: log})
			if err != nil {
				stopCol()
				return errors.Join(err, <-colDone, closeStore(w, log))
			}
			p, err := probe.New(pcfg, exp)
			if err != nil {
				stopCol()
				return errors.Join(err, <-colDone, closeStore(w, log))
			}
			if addr := c.String("metrics-listen"); addr != "" {
				fns := []metrics.Func{p.Metrics, col.Metrics, storeMetrics(w)}
				if det != nil {
					fns = append(fns, det.metrics)
				}
				if _, err := metrics.Serve(c.Context, addr, log, fns...); err != nil {
					log.Error().Err(err).Msg("--metrics-listen: cannot serve metrics")
				}
			}
			start := time.Now()
			runErr := p.Run(c.Context)
			// Let the collector take in everything the probe sent.
			deadline := time.Now().Add(10 * time.Second)
			for col.Totals().MQTTFlows < p.Stats().FlowsExported && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			stopCol()
			colErr := <-colDone
			detErr := det.close()
			storeErr := closeStore(w, log)
			if pcfg.ReadFile != "" {
				sum.print(os.Stdout, summaryInfo{
					file: pcfg.ReadFile, elapsed: time.Since(start), probe: p.Stats(), collector: col.Totals(), store: w.Stats(),
					url: c.String("mongo-url"), database: c.String("mongo-collection"), collection: c.String("collection"),
					dataDir: c.String("data-dir"),
				})
			}
			return errors.Join(runErr, colErr, detErr, storeErr)
		},
	}
}

// summary tallies the flows all-in-one stored, for the report printed
// after a file run.
type summary struct {
	mu       sync.Mutex
	byType   map[flow.ControlType]int
	pubQoS   [3]int
	clients  map[string]bool
	topics   map[string]bool
	corrs    map[string]bool
	versions map[uint8]int
	total    int
}

func newSummary() *summary {
	return &summary{byType: map[flow.ControlType]int{}, clients: map[string]bool{}, topics: map[string]bool{},
		corrs: map[string]bool{}, versions: map[uint8]int{}}
}

const summaryLimit = 100_000 // distinct names kept; beyond, only counted

func (s *summary) add(r *flow.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.byType[r.ControlType]++
	if r.ControlType == flow.Publish && r.QoS < 3 {
		s.pubQoS[r.QoS]++
	}
	s.versions[r.ProtocolVersion]++
	for _, id := range []string{r.SrcClientID, r.DstClientID} {
		if id != "" && id != flow.BrokerClientID && len(s.clients) < summaryLimit {
			s.clients[id] = true
		}
	}
	if r.Topic != "" && len(s.topics) < summaryLimit {
		s.topics[r.Topic] = true
	}
	if len(r.CorrelationData) > 0 && len(s.corrs) < summaryLimit {
		s.corrs[string(r.CorrelationData)] = true
	}
}

type summaryInfo struct {
	file                      string
	elapsed                   time.Duration
	probe                     probe.Stats
	collector                 collector.Totals
	store                     store.Stats
	url, database, collection string
	dataDir                   string
}

func (s *summary) print(w io.Writer, in summaryInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := func(m map[string]bool, max int) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) > max {
			return strings.Join(keys[:max], ", ") + fmt.Sprintf(", … (%d more)", len(keys)-max)
		}
		return strings.Join(keys, ", ")
	}
	types := make([]flow.ControlType, 0, len(s.byType))
	for t := range s.byType {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool {
		return s.byType[types[i]] > s.byType[types[j]] || s.byType[types[i]] == s.byType[types[j]] && types[i] < types[j]
	})
	var parts []string
	for _, t := range types {
		p := fmt.Sprintf("%s %d", t, s.byType[t])
		if t == flow.Publish {
			p += fmt.Sprintf(" (QoS 0: %d, QoS 1: %d, QoS 2: %d)", s.pubQoS[0], s.pubQoS[1], s.pubQoS[2])
		}
		parts = append(parts, p)
	}
	ps, tr := in.probe, in.probe.Tracker
	fmt.Fprintf(w, "mission all-in-one: %d flows from %s (%d packets, %d MQTT packets) in %.2f s\n",
		s.total, in.file, ps.Packets, sumPackets(tr.Packets), in.elapsed.Seconds())
	fmt.Fprintf(w, "  flows by type   %s\n", strings.Join(parts, " · "))
	fmt.Fprintf(w, "  clients (%d)    %s\n", len(s.clients), list(s.clients, 12))
	fmt.Fprintf(w, "  topics (%d)     %s\n", len(s.topics), list(s.topics, 12))
	fmt.Fprintf(w, "  correlation ids %d distinct\n", len(s.corrs))
	fmt.Fprintf(w, "  not stored      export queue full %d · export errors %d · store dropped %d · malformed MQTT %d · TCP gaps %d · responses without request %d\n",
		ps.FlowsDropped, ps.FlowsLost, in.store.Dropped, tr.Malformed, ps.Reassembly.Gaps, sumPackets(tr.Unmatched))
	where := fmt.Sprintf("database %q, collection %q", in.database, in.collection)
	if in.url != "" {
		fmt.Fprintf(w, "  stored          %d documents in %s at %s\n", in.store.Inserted+in.store.Duplicates, where, redactURL(in.url))
		fmt.Fprintf(w, "  query           mongosh '%s' --eval 'db.getSiblingDB(\"%s\").%s.find().limit(5)'\n", redactURL(in.url), in.database, in.collection)
		return
	}
	fmt.Fprintf(w, "  stored          %d documents in %s of the embedded store in %s\n", in.store.Inserted+in.store.Duplicates, where, in.dataDir)
	fmt.Fprintf(w, "  query           mission query --data-dir %s --limit 5 '{\"mqttControlTypeName\": \"PUBLISH\"}'\n", in.dataDir)
}

func sumPackets(a [16]uint64) uint64 {
	var n uint64
	for _, v := range a {
		n += v
	}
	return n
}

// redactURL hides a password in a MongoDB URL.
func redactURL(u string) string {
	if p, err := url.Parse(u); err == nil && p.User != nil {
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(p.User.Username(), "xxxxx")
			return p.String()
		}
	}
	return u
}

func queryCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: []string{"LOG_LEVEL"}, Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "console", EnvVars: []string{"LOG_FORMAT"}, Usage: "console (human) or json"},
		&cli.StringFlag{Name: "mongo-url", EnvVars: []string{"MONGO_URL"}, Usage: "MongoDB URL; empty serves --data-dir with the embedded server"},
		&cli.StringFlag{Name: "mongo-collection", Value: store.DefaultDatabase, EnvVars: []string{"MONGO_COLLECTION"}, Usage: "database name"},
		&cli.StringFlag{Name: "collection", Value: store.DefaultCollection, EnvVars: []string{"MONGO_COLLECTION_NAME"}, Usage: "collection"},
		&cli.StringFlag{Name: "data-dir", Value: store.DefaultDataDir, EnvVars: []string{"DATA_DIR"}, Usage: "embedded database directory"},
		&cli.IntFlag{Name: "limit", Value: 20, Usage: "most documents printed (0: all)"},
		&cli.BoolFlag{Name: "count", Usage: "print only the number of matching documents"},
		&cli.StringFlag{Name: "count-by", Usage: "print the number of matching documents per value of this field"},
	}
	return &cli.Command{
		Name:      "query",
		Usage:     "print stored flows as JSON lines (filter: a MongoDB query document)",
		ArgsUsage: "[FILTER JSON]",
		Flags:     flags,
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			filter := bson.D{}
			if c.NArg() > 0 {
				if err := bson.UnmarshalExtJSON([]byte(c.Args().First()), false, &filter); err != nil {
					return fmt.Errorf("filter %q is not a JSON query document: %w", c.Args().First(), err)
				}
			}
			url := c.String("mongo-url")
			if url == "" {
				dir := filepath.Join(c.String("data-dir"), "db")
				if _, err := os.Stat(dir); err != nil {
					return fmt.Errorf("no embedded database in %s (run mission collect or all-in-one first, or give --mongo-url)", c.String("data-dir"))
				}
				emb, err := store.StartEmbedded(dir, "127.0.0.1:0", log)
				if err != nil {
					return err
				}
				defer emb.Close()
				url = emb.URL()
			}
			ctx, cancel := context.WithTimeout(c.Context, time.Minute)
			defer cancel()
			client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
			if err != nil {
				return fmt.Errorf("connect to %s: %w", redactURL(url), err)
			}
			defer client.Disconnect(context.Background())
			coll := client.Database(c.String("mongo-collection")).Collection(c.String("collection"))
			out := bufio.NewWriter(os.Stdout)
			defer out.Flush()
			switch {
			case c.Bool("count"):
				n, err := coll.CountDocuments(ctx, filter)
				if err != nil {
					return fmt.Errorf("count: %w", err)
				}
				fmt.Fprintln(out, n)
				return nil
			case c.String("count-by") != "":
				cur, err := coll.Aggregate(ctx, mongo.Pipeline{
					{{Key: "$match", Value: filter}},
					{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + c.String("count-by")}, {Key: "count", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
					{{Key: "$sort", Value: bson.D{{Key: "count", Value: -1}}}},
				})
				if err != nil {
					return fmt.Errorf("aggregate: %w", err)
				}
				return printCursor(ctx, cur, out)
			}
			opts := options.Find().SetSort(bson.D{{Key: "flowStartNanoseconds", Value: 1}})
			if l := c.Int("limit"); l > 0 {
				opts.SetLimit(int64(l))
			}
			cur, err := coll.Find(ctx, filter, opts)
			if err != nil {
				return fmt.Errorf("find: %w", err)
			}
			return printCursor(ctx, cur, out)
		},
	}
}

func printCursor(ctx context.Context, cur *mongo.Cursor, out io.Writer) error {
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		js, err := bson.MarshalExtJSON(cur.Current, false, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", js)
	}
	return cur.Err()
}

// printConfig prints the effective configuration (--print-config).
func printConfig(v map[string]any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func captureView(cfg probe.Config) map[string]any {
	return map[string]any{
		"interface": cfg.Interface, "read": cfg.ReadFile, "filter": cfg.Filter,
		"mqttPorts": cfg.MQTTPorts, "tlsPorts": cfg.TLSPorts, "promiscuous": cfg.Promiscuous,
		"idleTimeout": cfg.Tracker.IdleTimeout.String(), "connectionTimeout": cfg.Reassembly.IdleTimeout.String(),
		"queueSize": cfg.QueueSize, "flushInterval": cfg.FlushInterval.String(),
	}
}

func exportView(c *cli.Context) map[string]any {
	v := map[string]any{
		"collector": net.JoinHostPort(c.String("collector"), strconv.Itoa(int(c.Uint("port")))),
		"transport": c.String("transport"), "ipfixFile": c.String("ipfix-file"), "stdout": c.Bool("stdout"),
		"observationDomain": c.Uint("observation-domain"), "enterpriseNumber": c.Uint("enterprise-number"),
	}
	if c.Bool("benchmark") {
		v["benchmarkFile"] = c.String("file-name")
	}
	return v
}

func listenView(c *cli.Context, cfg collector.Config) map[string]any {
	v := map[string]any{"host": cfg.Host, "port": cfg.Port, "transports": cfg.Listen, "allow": c.String("allow"),
		"enterpriseNumber": cfg.EnterpriseNumber, "read": c.String("read")}
	if cfg.TLS != nil {
		v["tlsPort"] = cfg.TLSPort
		v["mutualTLS"] = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	return v
}

func storeView(c *cli.Context) map[string]any {
	url := redactURL(c.String("mongo-url"))
	if url == "" {
		url = "embedded (" + filepath.Join(c.String("data-dir"), "db") + ")"
	}
	return map[string]any{"mongoURL": url, "database": c.String("mongo-collection"), "collection": c.String("collection"),
		"dataDir": c.String("data-dir"), "retention": c.Duration("retention").String(), "workers": c.Int("store-workers")}
}

// detection runs a learned model over the flows a collector stores
// (--model): alerts go to the log as JSON, to the alerts collection and
// to metrics.
type detection struct {
	mu     sync.Mutex
	det    *mining.Detector
	alerts *store.AlertWriter
	log    zerolog.Logger
	stop   chan struct{}
	done   chan struct{}
}

func modelFlag() cli.Flag {
	return &cli.StringFlag{Name: "model", EnvVars: []string{"MODEL"}, Usage: "detect with this model (from mission mine) on every stored flow"}
}

func startDetection(c *cli.Context, w *store.Writer, log zerolog.Logger) (*detection, error) {
	path := c.String("model")
	if path == "" {
		return nil, nil
	}
	m, err := readModel(path)
	if err != nil {
		return nil, err
	}
	aw, err := store.OpenAlerts(c.Context, w.URL(), c.String("mongo-collection"), log)
	if err != nil {
		return nil, err
	}
	d := &detection{det: mining.NewDetector(m, mining.DetectorOptions{}), alerts: aw, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		t := time.NewTicker(250 * time.Millisecond) // releases order-dependent alerts (the detector reorders within 500 ms)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case now := <-t.C:
				d.mu.Lock()
				alerts := d.det.Advance(now)
				d.mu.Unlock()
				d.report(alerts)
			}
		}
	}()
	log.Info().Str("model", path).Msg("detection enabled: alerts go to the log, the alerts collection and metrics")
	return d, nil
}

func readModel(path string) (*mining.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	defer f.Close()
	m, err := mining.ReadModel(f)
	if err != nil {
		return nil, fmt.Errorf("--model %s: %w (learn one with mission mine)", path, err)
	}
	return m, nil
}

// observe is the collector's Flows hook.
func (d *detection) observe(r *flow.Record) {
	d.mu.Lock()
	alerts := d.det.Observe(r)
	d.mu.Unlock()
	d.report(alerts)
}

func (d *detection) report(alerts []mining.Alert) {
	for i := range alerts {
		js, err := json.Marshal(&alerts[i])
		if err != nil {
			continue
		}
		d.log.Warn().RawJSON("alert", js).Msg(alerts[i].Message)
		if doc, err := store.AlertDocument(js); err == nil {
			d.alerts.Put(doc)
		}
	}
}

func (d *detection) metrics(e metrics.Emitter) {
	d.mu.Lock()
	st := d.det.Stats()
	d.mu.Unlock()
	for check, n := range st.Alerts {
		e.Counter("mission_detect_alerts_total", "Alerts raised, by check.", float64(n), "check", string(check))
	}
	e.Counter("mission_detect_flows_total", "Flows checked against the model.", float64(st.Flows))
	e.Gauge("mission_detect_open_cases", "Cases (correlation ids) open now.", float64(st.OpenCases))
	e.Counter("mission_detect_alerts_dropped_total", "Alerts that could not be stored (still logged).", float64(d.alerts.Dropped()))
}

// close reports the alerts of the cases still open and stores everything.
func (d *detection) close() error {
	if d == nil {
		return nil
	}
	close(d.stop)
	<-d.done
	d.mu.Lock()
	alerts := d.det.Flush()
	d.mu.Unlock()
	d.report(alerts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.alerts.Close(ctx)
}

// flowSourceFlags choose where mine and detect read flows.
func flowSourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "jsonl", Usage: "read flows from a JSON-lines file (probe --stdout, mongoexport); - for stdin"},
		&cli.StringFlag{Name: "ipfix", Usage: "read flows from an IPFIX file (probe --ipfix-file)"},
		&cli.StringFlag{Name: "mongo-url", EnvVars: []string{"MONGO_URL"}, Usage: "read stored flows from MongoDB (default: the embedded store in --data-dir)"},
		&cli.StringFlag{Name: "mongo-collection", Value: store.DefaultDatabase, EnvVars: []string{"MONGO_COLLECTION"}, Usage: "database name"},
		&cli.StringFlag{Name: "collection", Value: store.DefaultCollection, EnvVars: []string{"MONGO_COLLECTION_NAME"}, Usage: "collection"},
		&cli.StringFlag{Name: "data-dir", Value: store.DefaultDataDir, EnvVars: []string{"DATA_DIR"}, Usage: "embedded database directory"},
		&cli.TimestampFlag{Name: "from", Layout: time.RFC3339, Usage: "only flows starting at or after this time (RFC 3339)"},
		&cli.TimestampFlag{Name: "to", Layout: time.RFC3339, Usage: "only flows starting before this time (RFC 3339)"},
		&cli.UintFlag{Name: "enterprise-number", Value: 9999, EnvVars: []string{"ENTERPRISE_NUMBER"}, Usage: "IPFIX private enterprise number of the MQTT elements (--ipfix)"},
	}
}

// loadFlows reads flows from the source the flags name, in time order.
func loadFlows(c *cli.Context, log zerolog.Logger) ([]flow.Record, error) {
	var from, to time.Time
	if t := c.Timestamp("from"); t != nil {
		from = *t
	}
	if t := c.Timestamp("to"); t != nil {
		to = *t
	}
	keep := func(r *flow.Record) bool {
		return (from.IsZero() || !r.Start.Before(from)) && (to.IsZero() || r.Start.Before(to))
	}
	var recs []flow.Record
	switch {
	case c.String("jsonl") != "":
		var in io.Reader = os.Stdin
		if p := c.String("jsonl"); p != "-" {
			f, err := os.Open(p)
			if err != nil {
				return nil, fmt.Errorf("--jsonl: %w", err)
			}
			defer f.Close()
			in = f
		}
		all, err := mining.ReadRecords(in)
		if err != nil {
			return nil, fmt.Errorf("--jsonl: %w", err)
		}
		for i := range all {
			if keep(&all[i]) {
				recs = append(recs, all[i])
			}
		}
	case c.String("ipfix") != "":
		f, err := os.Open(c.String("ipfix"))
		if err != nil {
			return nil, fmt.Errorf("--ipfix: %w", err)
		}
		defer f.Close()
		pen := uint32(c.Uint("enterprise-number"))
		sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(pen)}, ipfix.SessionKey{Transport: ipfix.File})
		dec := flow.NewDecoder(pen)
		err = ipfix.DecodeFile(f, sess, func(rec ipfix.Record) error {
			var r flow.Record
			if !rec.Template.IsOptions() && dec.Decode(rec, &r) && keep(&r) {
				recs = append(recs, r)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("--ipfix: %w", err)
		}
	default:
		url := c.String("mongo-url")
		if url == "" {
			dir := filepath.Join(c.String("data-dir"), "db")
			if _, err := os.Stat(dir); err != nil {
				return nil, fmt.Errorf("no embedded database in %s (give --jsonl, --ipfix, --mongo-url or --data-dir)", c.String("data-dir"))
			}
			emb, err := store.StartEmbedded(dir, "127.0.0.1:0", log)
			if err != nil {
				return nil, err
			}
			defer emb.Close()
			url = emb.URL()
		}
		ctx, cancel := context.WithTimeout(c.Context, 10*time.Minute)
		defer cancel()
		client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", redactURL(url), err)
		}
		defer client.Disconnect(context.Background())
		filter := bson.D{}
		rng := bson.D{}
		if !from.IsZero() {
			rng = append(rng, bson.E{Key: "$gte", Value: from})
		}
		if !to.IsZero() {
			rng = append(rng, bson.E{Key: "$lt", Value: to})
		}
		if len(rng) > 0 {
			filter = bson.D{{Key: "flowStartNanoseconds", Value: rng}}
		}
		cur, err := client.Database(c.String("mongo-collection")).Collection(c.String("collection")).
			Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "flowStartNs", Value: 1}}))
		if err != nil {
			return nil, fmt.Errorf("read stored flows: %w", err)
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			var d flow.Document
			if err := cur.Decode(&d); err != nil {
				return nil, fmt.Errorf("stored flow: %w", err)
			}
			r, err := mining.RecordFromDocument(&d)
			if err != nil {
				return nil, err
			}
			if keep(&r) {
				recs = append(recs, r)
			}
		}
		if err := cur.Err(); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })
	return recs, nil
}

func mineCommand() *cli.Command {
	return &cli.Command{
		Name:  "mine",
		Usage: "build the event log of stored flows, export it (XES, CSV), discover the process (DFG) and learn a detection model",
		Flags: append(append(logFlags(), flowSourceFlags()...),
			&cli.StringFlag{Name: "out", Value: "mission-mine", Usage: "output directory"},
			&cli.Float64Flag{Name: "test-fraction", Value: 0.3, Usage: "share of the log (latest cases) held out to measure model quality"},
			&cli.IntFlag{Name: "min-edge", Usage: "drop directly-follows edges seen fewer times (graph only)"},
			&cli.IntFlag{Name: "min-activity", Usage: "drop activities seen fewer times (graph only)"},
			&cli.StringSliceFlag{Name: "activity", Usage: "keep only these activities in the graph (\"client → topic\"; repeat the flag)"},
			&cli.Float64Flag{Name: "noise", Usage: "share of cases allowed to violate a kept skeleton relation"},
		),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			recs, err := loadFlows(c, log)
			if err != nil {
				return err
			}
			el := mining.FromRecords(recs)
			if len(el.Traces()) == 0 {
				return fmt.Errorf("no PUBLISH flow with a correlation id among %d flows: nothing to mine", len(recs))
			}
			out := c.String("out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			write := func(name string, fn func(io.Writer) error) error {
				f, err := os.Create(filepath.Join(out, name))
				if err != nil {
					return err
				}
				if err := fn(f); err != nil {
					f.Close()
					return fmt.Errorf("%s: %w", name, err)
				}
				return f.Close()
			}
			if err := write("events.xes", el.WriteXES); err != nil {
				return err
			}
			if err := write("events.csv", el.WriteCSV); err != nil {
				return err
			}
			g := mining.DiscoverDFG(el, mining.DFGOptions{MinEdgeCount: c.Int("min-edge"),
				MinActivityCount: c.Int("min-activity"), Activities: c.StringSlice("activity")})
			if err := write("dfg.dot", g.WriteDOT); err != nil {
				return err
			}
			rendered := renderDOT(filepath.Join(out, "dfg.dot"), log)
			opts := mining.LearnOptions{Noise: c.Float64("noise")}
			var q *mining.Quality
			if tf := c.Float64("test-fraction"); tf > 0 && tf < 1 {
				train, test := el.SplitByTime(1 - tf)
				if m, err := mining.Learn(train, opts); err == nil {
					qq := mining.Evaluate(m, test)
					q = &qq
				}
			}
			m, err := mining.Learn(el, opts)
			if err != nil {
				return err
			}
			if err := write("model.json", m.WriteJSON); err != nil {
				return err
			}
			report := map[string]any{"flows": len(recs), "cases": len(el.Traces()), "output": out,
				"files": append([]string{"events.xes", "events.csv", "dfg.dot", "model.json"}, rendered...)}
			if q != nil {
				report["heldOutQuality"] = q
				report["testFraction"] = c.Float64("test-fraction")
			}
			return printConfig(report)
		},
	}
}

// renderDOT draws the graph with Graphviz when it is installed.
func renderDOT(dot string, log zerolog.Logger) []string {
	bin, err := exec.LookPath("dot")
	if err != nil {
		log.Info().Msg("Graphviz (dot) not installed: dfg.dot not rendered to SVG/PNG (apt-get install graphviz)")
		return nil
	}
	var files []string
	for _, format := range []string{"svg", "png"} {
		outFile := strings.TrimSuffix(dot, ".dot") + "." + format
		if out, err := exec.Command(bin, "-T"+format, "-o", outFile, dot).CombinedOutput(); err != nil {
			log.Warn().Err(err).Str("output", string(out)).Msg("Graphviz failed")
			continue
		}
		files = append(files, filepath.Base(outFile))
	}
	return files
}

func detectCommand() *cli.Command {
	return &cli.Command{
		Name:  "detect",
		Usage: "check stored flows (or a flow file) against a model; print alerts as JSON lines",
		Flags: append(append(logFlags(), flowSourceFlags()...),
			&cli.StringFlag{Name: "model", Required: true, EnvVars: []string{"MODEL"}, Usage: "model file from mission mine"},
		),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			m, err := readModel(c.String("model"))
			if err != nil {
				return err
			}
			recs, err := loadFlows(c, log)
			if err != nil {
				return err
			}
			det := mining.NewDetector(m, mining.DetectorOptions{})
			out := json.NewEncoder(os.Stdout)
			n := 0
			emit := func(alerts []mining.Alert) error {
				for i := range alerts {
					n++
					if err := out.Encode(&alerts[i]); err != nil {
						return err
					}
				}
				return nil
			}
			for i := range recs {
				if err := emit(det.Observe(&recs[i])); err != nil {
					return err
				}
				if i%256 == 0 {
					if err := emit(det.Advance(recs[i].Start)); err != nil {
						return err
					}
				}
			}
			if err := emit(det.Flush()); err != nil {
				return err
			}
			log.Info().Int("flows", len(recs)).Int("alerts", n).Msg("detection done")
			return nil
		},
	}
}
