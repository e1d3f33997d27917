// Command mission is a process-aware intrusion detection system for MQTT
// networks: `mission probe` turns MQTT traffic into flow records exported
// as IPFIX, `mission collect` stores them in MongoDB, `mission all-in-one`
// does both in one process. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/mission-ids/mission/probe/tracker"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Args = applyRole(os.Args, os.Getenv("ROLE"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "mission:", err)
		os.Exit(1)
	}
}

// applyRole lets one container image run any role: with no subcommand on
// the command line, ROLE (probe, collect, collector or all-in-one) picks it.
func applyRole(args []string, role string) []string {
	if role == "" || len(args) > 1 {
		return args
	}
	switch strings.ToLower(role) {
	case "collector":
		role = "collect"
	case "allinone", "all_in_one":
		role = "all-in-one"
	}
	return append(args[:1:1], role)
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "mission",
		Usage:   "process-aware intrusion detection for MQTT networks",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"LOG_LEVEL"}, Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "console", EnvVars: []string{"LOG_FORMAT"}, Usage: "console (human) or json"},
		},
		Commands: []*cli.Command{
			probeCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints the error once
	}
}

// newLogger builds the one logger every part of the program gets.
func newLogger(c *cli.Context) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(c.String("log-level")))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	var w = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}
	var l zerolog.Logger
	switch c.String("log-format") {
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
	flags := append(captureFlags(),
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
