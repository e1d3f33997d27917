package command

import (
	"crypto/tls"
	"encoding/json"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/store"
)

// printConfig prints the effective configuration (--print-config).
func printConfig(c *cli.Context, v map[string]any) error {
	return printJSON(c, v)
}

// printJSON prints v as indented JSON on the command's stdout.
func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func captureView(cfg probe.Config) map[string]any {
	return map[string]any{
		"interface": cfg.Interface, "read": cfg.ReadFile, "filter": cfg.Filter,
		"mqttPorts": cfg.MQTTPorts, "tlsPorts": cfg.TLSPorts, "promiscuous": cfg.Promiscuous,
		"protocols": cfg.Protocols, "coapPorts": cfg.CoAPPorts, "coapsPorts": cfg.CoAPSPorts,
		"coapCaseOption": cfg.CoAP.CaseOption,
		"idleTimeout":    cfg.Tracker.IdleTimeout.String(), "connectionTimeout": cfg.Reassembly.IdleTimeout.String(),
		"queueSize": cfg.QueueSize, "flushInterval": cfg.FlushInterval.String(), "stateFile": cfg.StateFile,
	}
}

func exportView(c *cli.Context) map[string]any {
	v := map[string]any{
		"collector": collectorAddress(c),
		"transport": c.String(flagTransport), "ipfixFile": c.String(flagIPFIXFile), "stdout": c.Bool(flagStdout),
		"observationDomain": c.Uint(flagObservationDomain), "enterpriseNumber": c.Uint(flagEnterpriseNumber),
		"connectTimeout": c.Duration(flagConnectTimeout).String(),
	}
	if c.Bool(flagBenchmark) {
		v["benchmarkFile"] = c.String(flagFileName)
	}
	return v
}

func listenView(c *cli.Context, cfg collector.Config) map[string]any {
	v := map[string]any{"host": cfg.Host, "port": cfg.Port, "transports": cfg.Listen, "allow": c.String(flagAllow),
		"enterpriseNumber": cfg.EnterpriseNumber, "read": c.String(flagRead)}
	if cfg.TLS != nil {
		v["tlsPort"] = cfg.TLSPort
		v["mutualTLS"] = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	return v
}

func storeView(c *cli.Context) map[string]any {
	raw, err := mongoURL(c)
	u := store.RedactURL(raw)
	if u == "" {
		u = "embedded (" + filepath.Join(c.String(flagDataDir), "db") + ")"
	}
	v := map[string]any{"mongoURL": u, "database": c.String(flagMongoCollection), "collection": c.String(flagCollection),
		"dataDir": c.String(flagDataDir), "retention": c.Duration(flagRetention).String(), "workers": c.Int(flagStoreWorkers), "waitForDatabase": c.Bool(flagWaitForDatabase)}
	if f := c.String(flagMongoURLFile); f != "" {
		v["mongoURLFile"] = f
	}
	if err != nil {
		v["mongoURL"] = "(unreadable)"
		v["mongoURLError"] = err.Error()
	}
	return v
}
