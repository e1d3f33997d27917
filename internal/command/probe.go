package command

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/probe/capture"
	"github.com/mission-ids/mission/probe/coaptrack"
	"github.com/mission-ids/mission/probe/reassembly"
	"github.com/mission-ids/mission/probe/tracker"
)

// errOptionNumber: a CoAP option number is 0–65535 (RFC 7252 §5.4.6).
var errOptionNumber = errors.New("not a CoAP option number (0-65535)")

func probeCommand() *cli.Command {
	return &cli.Command{
		Name:  "probe",
		Usage: "capture MQTT traffic and export one flow per MQTT transaction as IPFIX",
		Flags: flags(logFlags(), captureFlags(), exportFlags(), enterpriseFlag(), metricsFlag(), privilegeFlags()),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			cfg, err := probeConfig(c, log)
			if err != nil {
				return err
			}
			if c.Bool(flagPrintConfig) {
				return printConfig(c, map[string]any{"role": "probe", "capture": captureView(cfg), "export": exportView(c),
					"privileges": privilegeView(c)})
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
	var protocols []string
	for _, p := range strings.Split(c.String(flagProtocol), ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		if !slices.Contains(probe.DefaultProtocols(), p) {
			return probe.Config{}, fmt.Errorf("--%s %q: %w (known: %s)", flagProtocol, p, probe.ErrUnknownProtocol, strings.Join(probe.DefaultProtocols(), ", "))
		}
		protocols = append(protocols, p)
	}
	coapPorts, err := parsePorts(c.String(flagCoAPPorts))
	if err != nil {
		return probe.Config{}, fmt.Errorf("--%s: %w", flagCoAPPorts, err)
	}
	coapsPorts, err := parsePorts(c.String(flagCoAPSPorts))
	if err != nil {
		return probe.Config{}, fmt.Errorf("--%s: %w", flagCoAPSPorts, err)
	}
	if coapsPorts == nil {
		coapsPorts = []uint16{}
	}
	caseOption := c.Uint(flagCoAPCaseOption)
	if caseOption > 0xffff {
		return probe.Config{}, fmt.Errorf("--%s %d: %w", flagCoAPCaseOption, caseOption, errOptionNumber)
	}
	mqttPorts, err := parsePorts(c.String(flagMQTTPorts))
	if err != nil {
		return probe.Config{}, fmt.Errorf("--%s: %w", flagMQTTPorts, err)
	}
	tlsPorts, err := parsePorts(c.String(flagTLSPorts))
	if err != nil {
		return probe.Config{}, fmt.Errorf("--%s: %w", flagTLSPorts, err)
	}
	if tlsPorts == nil {
		tlsPorts = []uint16{}
	}
	cfg := probe.Config{
		Interface:     c.String(flagInterface),
		ReadFile:      c.String(flagRead),
		Filter:        c.String(flagFilter),
		MQTTPorts:     mqttPorts,
		TLSPorts:      tlsPorts,
		Protocols:     protocols,
		CoAPPorts:     coapPorts,
		CoAPSPorts:    coapsPorts,
		Promiscuous:   c.Bool(flagPromiscuous),
		QueueSize:     c.Int(flagQueueSize),
		FlushInterval: c.Duration(flagFlushInterval),
		// Zero (all-in-one has no such flag) takes the default.
		ConnectTimeout: c.Duration(flagConnectTimeout),
		StateFile:      c.String(flagStateFile),
		Reassembly: reassembly.Config{
			MaxConnections: c.Int(flagMaxConnections),
			MaxBufferedAll: c.Int(flagMaxBuffer),
			IdleTimeout:    c.Duration(flagConnectionTimeout),
		},
		CoAP: coaptrack.Config{IdleTimeout: c.Duration(flagIdleTimeout), MaxExchanges: c.Int(flagMaxTransactions),
			CaseOption: coapparse.OptionNumber(caseOption)},
		Tracker: tracker.Config{
			IdleTimeout:     c.Duration(flagIdleTimeout),
			MaxTransactions: c.Int(flagMaxTransactions),
			MaxPacketSize:   c.Int(flagMaxPacketSize),
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
	pen := uint32(c.Uint(flagEnterpriseNumber))
	domain := uint32(c.Uint(flagObservationDomain))
	if c.Bool(flagStdout) {
		exps = append(exps, probe.NewJSONExporter(c.App.Writer))
	}
	if f := c.String(flagIPFIXFile); f != "" {
		e, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "file", Address: f,
			ObservationDomainID: domain, EnterpriseNumber: pen, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagIPFIXFile, err)
		}
		exps = append(exps, e)
	}
	// IPFIX to the collector unless the user asked only for stdout/file.
	if len(exps) == 0 || c.IsSet(flagTransport) || c.IsSet(flagCollector) || c.IsSet(flagPort) {
		tlsCfg, err := clientTLS(c)
		if err != nil {
			return nil, err
		}
		e, err := probe.NewIPFIXExporter(probe.IPFIXConfig{
			Transport:           c.String(flagTransport),
			Address:             collectorAddress(c),
			ObservationDomainID: domain,
			EnterpriseNumber:    pen,
			MTU:                 c.Int(flagMTU),
			TLS:                 tlsCfg,
			Logger:              log,
		})
		if err != nil {
			return nil, probeError(err)
		}
		exps = append(exps, e)
	}
	if len(exps) == 1 {
		return exps[0], nil
	}
	return exps, nil
}

func collectorAddress(c *cli.Context) string {
	return net.JoinHostPort(c.String(flagCollector), strconv.Itoa(int(c.Uint(flagPort))))
}

func clientTLS(c *cli.Context) (*tls.Config, error) {
	if c.String(flagTransport) != "tls" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.String(flagTLSServerName)}
	if cfg.ServerName == "" {
		cfg.ServerName = c.String(flagCollector)
	}
	if ca := c.String(flagTLSCA); ca != "" {
		pool, err := readCertPool(ca)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagTLSCA, err)
		}
		cfg.RootCAs = pool
	}
	if cert, key := c.String(flagTLSCert), c.String(flagTLSKey); cert != "" || key != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--%s/--%s: %w", flagTLSCert, flagTLSKey, err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

// readCertPool reads the PEM certificates of a CA file.
func readCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

// runProbe runs a probe until its file ends or a signal arrives.
// With --user it opens the capture and the metrics port first, gives the
// files it made (IPFIX file, benchmark CSV) to that user, and drops its
// privileges before the first packet.
func runProbe(c *cli.Context, cfg probe.Config, exp probe.Exporter, log zerolog.Logger) error {
	target, err := dropTarget(c)
	if err != nil {
		exp.Close()
		return err
	}
	var benchmark string
	if c.Bool(flagBenchmark) {
		benchmark = c.String(flagFileName)
		f, err := os.Create(benchmark)
		if err != nil {
			exp.Close()
			return fmt.Errorf("--%s: %w", flagFileName, err)
		}
		defer f.Close()
		cfg.LatencyLog = f
	}
	p, err := probe.New(cfg, exp)
	if err != nil {
		exp.Close()
		return probeError(err)
	}
	if err := serveMetrics(c, log, p.Metrics); err != nil {
		return err
	}
	if err := p.Open(); err != nil {
		exp.Close()
		return probeError(err)
	}
	if err := dropPrivileges(target, cfg.Interface != "", log, c.String(flagIPFIXFile), benchmark); err != nil {
		exp.Close()
		return err
	}
	return p.Run(c.Context)
}

// listenMetrics binds --metrics-listen now (before a privilege drop);
// nil when not given.
func listenMetrics(c *cli.Context) (net.Listener, error) {
	addr := c.String(flagMetricsListen)
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagMetricsListen, err)
	}
	return ln, nil
}

// serveMetrics serves Prometheus metrics when --metrics-listen is given.
func serveMetrics(c *cli.Context, log zerolog.Logger, fns ...metrics.Func) error {
	addr := c.String(flagMetricsListen)
	if addr == "" {
		return nil
	}
	if _, err := metrics.Serve(c.Context, addr, log, fns...); err != nil {
		return fmt.Errorf("--%s: %w", flagMetricsListen, err)
	}
	return nil
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

// probeError adds to a probe error the flag that fixes it.
func probeError(err error) error {
	switch {
	case errors.Is(err, probe.ErrNoSource), errors.Is(err, probe.ErrTwoSources):
		return fmt.Errorf("%w; give --%s IFACE (env INTERFACE) to capture live, or --%s FILE for a capture file", err, flagInterface, flagRead)
	case errors.Is(err, probe.ErrCollectorAddress):
		return fmt.Errorf("%w; check --%s and --%s", err, flagCollector, flagPort)
	case errors.Is(err, capture.ErrNoInterface):
		return fmt.Errorf("%w; check --%s (ip link lists the interfaces)", err, flagInterface)
	}
	return err
}
