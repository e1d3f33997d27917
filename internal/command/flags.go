package command

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/probe"
	"github.com/mission-ids/mission/store"
)

// Flag names. Each flag (and its environment variable) is declared once,
// in the groups below; commands merge the groups they need.
const (
	flagPrintConfig = "print-config"
	flagLogLevel    = "log-level"
	flagLogFormat   = "log-format"

	// capture (probe, all-in-one)
	flagInterface         = "interface"
	flagRead              = "read"
	flagFilter            = "filter"
	flagProtocol          = "protocol"
	flagMQTTPorts         = "mqtt-ports"
	flagTLSPorts          = "tls-ports"
	flagCoAPPorts         = "coap-ports"
	flagCoAPSPorts        = "coaps-ports"
	flagCoAPCaseOption    = "coap-case-option"
	flagPromiscuous       = "promiscuous"
	flagIdleTimeout       = "idle-timeout"
	flagConnectionTimeout = "connection-timeout"
	flagMaxConnections    = "max-connections"
	flagMaxTransactions   = "max-transactions"
	flagMaxBuffer         = "max-buffer"
	flagMaxPacketSize     = "max-packet-size"
	flagQueueSize         = "queue-size"
	flagFlushInterval     = "flush-interval"
	flagStateFile         = "state-file"

	// export (probe)
	flagCollector         = "collector"
	flagPort              = "port"
	flagTransport         = "transport"
	flagIPFIXFile         = "ipfix-file"
	flagStdout            = "stdout"
	flagObservationDomain = "observation-domain"
	flagMTU               = "mtu"
	flagTLSCA             = "tls-ca"
	flagTLSCert           = "tls-cert"
	flagTLSKey            = "tls-key"
	flagTLSServerName     = "tls-server-name"
	flagConnectTimeout    = "connect-timeout"
	flagBenchmark         = "benchmark"
	flagFileName          = "file-name"

	// privileges (probe, all-in-one)
	flagUser  = "user"
	flagGroup = "group"

	// shared by several roles
	flagEnterpriseNumber = "enterprise-number"
	flagMetricsListen    = "metrics-listen"
	flagModel            = "model"
	flagNames            = "names"

	// store (collect, all-in-one, query, mine, detect)
	flagMongoURL        = "mongo-url"
	flagMongoURLFile    = "mongo-url-file"
	flagMongoCollection = "mongo-collection"
	flagCollection      = "collection"
	flagDataDir         = "data-dir"
	flagEmbeddedListen  = "embedded-listen"
	flagRetention       = "retention"
	flagStoreQueue      = "store-queue"
	flagSpoolMaxBytes   = "spool-max-bytes"
	flagStoreWorkers    = "store-workers"
	flagWaitForDatabase = "wait-for-database"

	// listen (collect)
	flagHost              = "host"
	flagListen            = "listen"
	flagTLSPort           = "tls-port"
	flagTLSClientCA       = "tls-client-ca"
	flagAllow             = "allow"
	flagUDPReaders        = "udp-readers"
	flagMaxTCPConns       = "max-tcp-connections"
	flagMaxTCPPerSrc      = "max-tcp-connections-per-source"
	flagTCPIdle           = "tcp-idle-timeout"
	flagDrain             = "drain-timeout"
	flagMaxIdentities     = "max-identities"
	flagKeepInvalid       = "keep-invalid"
	flagMaxSessions       = "max-sessions"
	flagMaxTemplates      = "max-templates"
	flagMaxTemplateFields = "max-template-fields"
	flagMaxPending        = "max-pending-bytes"

	// journal and quarantine (collect, all-in-one)
	flagJournal         = "journal"
	flagJournalMaxBytes = "journal-max-bytes"

	// flow sources and time range (query, mine, detect)
	flagJSONL = "jsonl"
	flagIPFIX = "ipfix"
	flagFrom  = "from"
	flagTo    = "to"
)

const (
	defaultIdleTimeout = 30 * time.Second
	defaultConnTimeout = 10 * time.Minute
	defaultFlush       = 100 * time.Millisecond
	defaultPEN         = 9999 // the original's private enterprise number
)

// flags joins flag groups into one list for a command.
func flags(groups ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// logFlags are accepted before and after the subcommand.
func logFlags() []cli.Flag { return logFlagsAt("info") }

// logFlagsAt are logFlags with another default level (query, mine and
// detect print results on stdout and log only what goes wrong).
func logFlagsAt(level string) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagPrintConfig, EnvVars: []string{"PRINT_CONFIG"}, Usage: "print the effective configuration as JSON and exit"},
		&cli.StringFlag{Name: flagLogLevel, Value: level, EnvVars: []string{"LOG_LEVEL"}, Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: flagLogFormat, Value: "console", EnvVars: []string{"LOG_FORMAT"}, Usage: "console (human) or json"},
	}
}

// captureFlags say what to capture and how to track it (probe, all-in-one).
func captureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagInterface, Aliases: []string{"i"}, EnvVars: []string{"INTERFACE"}, Usage: "capture live on this interface (needs CAP_NET_RAW)"},
		&cli.StringFlag{Name: flagRead, Aliases: []string{"r"}, EnvVars: []string{"READ_FILE"}, Usage: "read a pcap or pcapng file instead of capturing"},
		&cli.StringFlag{Name: flagFilter, Aliases: []string{"f"}, EnvVars: []string{"FILTER"}, Usage: "tcpdump-syntax capture filter (applied in the kernel when live)"},
		&cli.StringFlag{Name: flagProtocol, Value: "mqtt,coap", EnvVars: []string{"PROTOCOL"}, Usage: "comma-separated application protocols to dissect (mqtt, coap)"},
		&cli.StringFlag{Name: flagMQTTPorts, Value: "1883", EnvVars: []string{"MQTT_PORTS"}, Usage: "comma-separated TCP ports carrying MQTT"},
		&cli.StringFlag{Name: flagTLSPorts, Value: "8883", EnvVars: []string{"TLS_PORTS"}, Usage: "comma-separated ports of MQTT over TLS (counted, not decoded)"},
		&cli.StringFlag{Name: flagCoAPPorts, Value: "5683", EnvVars: []string{"COAP_PORTS"}, Usage: "comma-separated UDP ports carrying CoAP"},
		&cli.StringFlag{Name: flagCoAPSPorts, Value: "5684", EnvVars: []string{"COAPS_PORTS"}, Usage: "comma-separated UDP ports of CoAP over DTLS (counted, not decoded)"},
		&cli.UintFlag{Name: flagCoAPCaseOption, EnvVars: []string{"COAP_CASE_OPTION"}, Usage: "CoAP option number whose value in a request is the flow's case id (correlation data); 0: none"},
		&cli.BoolFlag{Name: flagPromiscuous, EnvVars: []string{"PROMISCUOUS"}, Usage: "put the interface in promiscuous mode (needs CAP_NET_ADMIN)"},
		&cli.DurationFlag{Name: flagIdleTimeout, Value: defaultIdleTimeout, EnvVars: []string{"IDLE_TIMEOUT"}, Usage: "end an unfinished MQTT transaction after this long without packets"},
		&cli.DurationFlag{Name: flagConnectionTimeout, Value: defaultConnTimeout, EnvVars: []string{"CONNECTION_TIMEOUT"}, Usage: "forget a TCP connection after this long without packets"},
		&cli.IntFlag{Name: flagMaxConnections, Value: 200_000, EnvVars: []string{"MAX_CONNECTIONS"}, Usage: "TCP connections tracked at once (oldest evicted)"},
		&cli.IntFlag{Name: flagMaxTransactions, Value: 1_000_000, EnvVars: []string{"MAX_TRANSACTIONS"}, Usage: "open MQTT transactions at once (oldest ended)"},
		&cli.IntFlag{Name: flagMaxBuffer, Value: 64 << 20, EnvVars: []string{"MAX_BUFFER"}, Usage: "bytes of out-of-order TCP data buffered in total"},
		&cli.IntFlag{Name: flagMaxPacketSize, Value: 1 << 20, EnvVars: []string{"MAX_PACKET_SIZE"}, Usage: "larger MQTT packets are skipped (and counted)"},
		&cli.IntFlag{Name: flagQueueSize, Value: 65536, EnvVars: []string{"QUEUE_SIZE"}, Usage: "flows waiting for export; beyond it flows are dropped and counted"},
		&cli.DurationFlag{Name: flagFlushInterval, Value: defaultFlush, EnvVars: []string{"FLUSH_INTERVAL"}, Usage: "longest time a finished flow waits before export"},
		&cli.StringFlag{Name: flagStateFile, EnvVars: []string{"STATE_FILE"}, Usage: "keep the MQTT sessions of live connections in this file across restarts (all-in-one: <data-dir>/probe-state)"},
	}
}

// exportFlags say where a probe sends its flows.
func exportFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagCollector, Value: "127.0.0.1", EnvVars: []string{"COLLECTOR"}, Usage: "collector host name or address"},
		&cli.UintFlag{Name: flagPort, Value: 2055, EnvVars: []string{"PORT"}, Usage: "collector port"},
		&cli.StringFlag{Name: flagTransport, Value: "udp", EnvVars: []string{"EXPORT_TRANSPORT"}, Usage: "IPFIX transport: udp, tcp or tls"},
		&cli.StringFlag{Name: flagIPFIXFile, EnvVars: []string{"IPFIX_FILE"}, Usage: "write IPFIX to this file (RFC 5655) instead of sending it"},
		&cli.BoolFlag{Name: flagStdout, EnvVars: []string{"STDOUT"}, Usage: "print flows as JSON lines on stdout (instead of IPFIX unless --ipfix-file/--transport is also given)"},
		&cli.UintFlag{Name: flagObservationDomain, Value: 1, EnvVars: []string{"OBSERVATION_DOMAIN"}, Usage: "IPFIX observation domain id of this probe"},
		&cli.IntFlag{Name: flagMTU, Value: 1500, EnvVars: []string{"EXPORT_MTU"}, Usage: "path MTU towards the collector (UDP message size)"},
		&cli.StringFlag{Name: flagTLSCA, EnvVars: []string{"TLS_CA"}, Usage: "CA file to verify the collector's certificate (tls transport)"},
		&cli.StringFlag{Name: flagTLSCert, EnvVars: []string{"TLS_CERT"}, Usage: "client certificate for mutual TLS"},
		&cli.StringFlag{Name: flagTLSKey, EnvVars: []string{"TLS_KEY"}, Usage: "client key for mutual TLS"},
		&cli.StringFlag{Name: flagTLSServerName, EnvVars: []string{"TLS_SERVER_NAME"}, Usage: "expected name in the collector's certificate (default: --collector)"},
		&cli.DurationFlag{Name: flagConnectTimeout, Value: probe.DefaultConnectTimeout, EnvVars: []string{"CONNECT_TIMEOUT"}, Usage: "with --read, and at shutdown, how long flows wait for an unreachable TCP/TLS collector before they are counted lost (live capture waits while the queue has room)"},
		&cli.BoolFlag{Name: flagBenchmark, EnvVars: []string{"BENCHMARK"}, Usage: "write per-flow latency, CPU and RAM to --file-name (CSV)"},
		&cli.StringFlag{Name: flagFileName, Value: "benchmark.csv", EnvVars: []string{"FILE_NAME"}, Usage: "CSV file of --benchmark"},
	}
}

// listenFlags say where a collector receives IPFIX.
func listenFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagHost, Value: "0.0.0.0", EnvVars: []string{"COLLECTOR"}, Usage: "listen address"},
		&cli.IntFlag{Name: flagPort, Value: 2055, EnvVars: []string{"COLLECTOR_PORT"}, Usage: "UDP and TCP port for IPFIX"},
		&cli.StringFlag{Name: flagListen, Value: "udp,tcp", EnvVars: []string{"LISTEN"}, Usage: "transports on --port: udp, tcp or both"},
		&cli.IntFlag{Name: flagTLSPort, Value: 4740, EnvVars: []string{"TLS_PORT"}, Usage: "port for IPFIX over TLS (with --tls-cert)"},
		&cli.StringFlag{Name: flagTLSCert, EnvVars: []string{"TLS_CERT"}, Usage: "server certificate (PEM); enables TLS"},
		&cli.StringFlag{Name: flagTLSKey, EnvVars: []string{"TLS_KEY"}, Usage: "server key (PEM)"},
		&cli.StringFlag{Name: flagTLSClientCA, EnvVars: []string{"TLS_CLIENT_CA"}, Usage: "require client certificates signed by this CA (mutual TLS)"},
		&cli.StringFlag{Name: flagAllow, EnvVars: []string{"ALLOW"}, Usage: "comma-separated exporter networks accepted (CIDR); others are dropped and counted"},
		&cli.StringFlag{Name: flagRead, Aliases: []string{"r"}, EnvVars: []string{"READ_FILE"}, Usage: "store the flows of an IPFIX file and exit"},
		&cli.IntFlag{Name: flagUDPReaders, Value: 2, EnvVars: []string{"UDP_READERS"}, Usage: "UDP sockets sharing the port"},
		&cli.IntFlag{Name: flagMaxTCPConns, Value: collector.DefaultMaxTCPConns, EnvVars: []string{"MAX_TCP_CONNECTIONS"}, Usage: "exporter TCP/TLS connections open at once; when full, a source with fewer connections takes the idlest one of the busiest source"},
		&cli.IntFlag{Name: flagMaxTCPPerSrc, Value: collector.DefaultMaxTCPConnsPerSource, EnvVars: []string{"MAX_TCP_CONNECTIONS_PER_SOURCE"}, Usage: "exporter TCP/TLS connections open at once from one address"},
		&cli.DurationFlag{Name: flagTCPIdle, Value: collector.DefaultTCPIdleTimeout, EnvVars: []string{"TCP_IDLE_TIMEOUT"}, Usage: "close an exporter connection without a complete message for this long (probes send a keep-alive every 30 s)"},
		&cli.BoolFlag{Name: flagKeepInvalid, EnvVars: []string{"KEEP_INVALID"}, Usage: "store data records that are not valid flows in the quarantine collection (they are always counted by reason)"},
		&cli.IntFlag{Name: flagMaxIdentities, Value: collector.DefaultMaxIdentities, EnvVars: []string{"MAX_IDENTITIES"}, Usage: "MQTT connections whose CONNECT identity is kept (sessions collection) to name their later flows; least recently used evicted"},
		&cli.IntFlag{Name: flagMaxSessions, Value: ipfix.DefaultMaxSessions, EnvVars: []string{"MAX_SESSIONS"}, Usage: "IPFIX template scopes held (exporter × observation domain × transport), all exporters together"},
		&cli.IntFlag{Name: flagMaxTemplates, Value: ipfix.DefaultMaxTemplates, EnvVars: []string{"MAX_TEMPLATES"}, Usage: "IPFIX templates held, all exporters together"},
		&cli.IntFlag{Name: flagMaxTemplateFields, Value: ipfix.DefaultMaxTemplateFields, EnvVars: []string{"MAX_TEMPLATE_FIELDS"}, Usage: "fields of all IPFIX templates held"},
		&cli.IntFlag{Name: flagMaxPending, Value: ipfix.DefaultMaxPendingBytes, EnvVars: []string{"MAX_PENDING_BYTES"}, Usage: "bytes of data sets held waiting for their template, all exporters together"},
		&cli.DurationFlag{Name: flagDrain, Value: collector.DefaultDrainTimeout, EnvVars: []string{"DRAIN_TIMEOUT"}, Usage: "at shutdown, read open exporter connections until quiet, at most this long"},
	}
}

// privilegeFlags name the user a capturing process becomes once its
// capture is open (probe, all-in-one).
func privilegeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagUser, EnvVars: []string{"RUN_USER"}, Usage: "after opening the capture (and the metrics port), switch to this user (name or uid) and drop every capability"},
		&cli.StringFlag{Name: flagGroup, EnvVars: []string{"RUN_GROUP"}, Usage: "group for --user (name or gid; default the user's primary group); the only group kept"},
	}
}

// enterpriseFlag is the PEN of the MQTT IPFIX elements.
func enterpriseFlag() []cli.Flag {
	return []cli.Flag{
		&cli.UintFlag{Name: flagEnterpriseNumber, Value: defaultPEN, EnvVars: []string{"ENTERPRISE_NUMBER"}, Usage: "IPFIX private enterprise number of the MQTT elements (9999: the original's, always accepted too)"},
	}
}

func metricsFlag() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagMetricsListen, EnvVars: []string{"METRICS_LISTEN"}, Usage: "serve Prometheus metrics on this address (e.g. :9464)"},
	}
}

// modelFlag turns on detection in collect and all-in-one (with the names
// table detection names endpoints by).
func modelFlag() []cli.Flag {
	return flags([]cli.Flag{
		&cli.StringFlag{Name: flagModel, EnvVars: []string{"MODEL"}, Usage: "detect with this model (from mission mine) on every stored flow"},
	}, namesFlag())
}

// namesFlag names devices by address (mine, detect, and detection in
// collect and all-in-one).
func namesFlag() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagNames, EnvVars: []string{"NAMES"}, Usage: "names file: lines \"ADDRESS NAME\" (ADDRESS an IP, IP:PORT or CIDR; # comments) naming CoAP endpoints and MQTT clients without client id; mine records it in the model, detection uses the model's unless this is given"},
	}
}

// storeFlags name a store to read from or write to.
func storeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagMongoURL, EnvVars: []string{"MONGO_URL"}, Usage: "MongoDB URL (mongodb://…); empty uses the embedded store in --data-dir"},
		&cli.StringFlag{Name: flagMongoURLFile, EnvVars: []string{"MONGO_URL_FILE"}, Usage: "read the MongoDB URL from this file (a container secret); wins over --mongo-url"},
		&cli.StringFlag{Name: flagMongoCollection, Value: store.DefaultDatabase, EnvVars: []string{"MONGO_COLLECTION"}, Usage: "database name (the original's MONGO_COLLECTION named the database)"},
		&cli.StringFlag{Name: flagCollection, Value: store.DefaultCollection, EnvVars: []string{"MONGO_COLLECTION_NAME"}, Usage: "collection of the flow documents (the original's: mqtt)"},
		&cli.StringFlag{Name: flagDataDir, Value: store.DefaultDataDir, EnvVars: []string{"DATA_DIR"}, Usage: "spool and embedded database directory"},
	}
}

// storeWriteFlags tune how flows are written (collect, all-in-one).
func storeWriteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagEmbeddedListen, EnvVars: []string{"EMBEDDED_LISTEN"}, Usage: "serve the embedded database on this TCP address (no authentication: any local user can reach it) instead of its private Unix socket <data-dir>/mongodb.sock"},
		&cli.DurationFlag{Name: flagRetention, EnvVars: []string{"RETENTION"}, Usage: "delete flows this long after they were received (TTL index; MongoDB only)"},
		&cli.IntFlag{Name: flagStoreQueue, Value: 200_000, EnvVars: []string{"STORE_QUEUE"}, Usage: "documents queued in memory before the spool takes over"},
		&cli.Int64Flag{Name: flagSpoolMaxBytes, Value: 1 << 30, EnvVars: []string{"SPOOL_MAX_BYTES"}, Usage: "on-disk spool bound while the database is unreachable"},
		&cli.IntFlag{Name: flagStoreWorkers, Value: store.DefaultInsertWorkers, EnvVars: []string{"STORE_WORKERS"}, Usage: "insert commands in flight at once (1 to 64)"},
		&cli.BoolFlag{Name: flagWaitForDatabase, Value: true, EnvVars: []string{"WAIT_FOR_DATABASE"}, Usage: "start even when the database at --mongo-url does not answer yet, spooling flows until it does (--wait-for-database=false: fail at start)"},
	}
}

// journalFlags protect received flows against a crash of the collector
// (collect, all-in-one).
func journalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagJournal, Value: true, EnvVars: []string{"JOURNAL"}, Usage: "journal received IPFIX messages in --data-dir/journal until stored, and decode what a crash left there at start (--journal=false: off)"},
		&cli.Int64Flag{Name: flagJournalMaxBytes, Value: collector.DefaultJournalMaxBytes, EnvVars: []string{"JOURNAL_MAX_BYTES"}, Usage: "journal bound; when full, TCP exporters are held back and UDP messages dropped (counted)"},
	}
}

// sourceFlags choose where mine and detect read flows: a file instead of
// the store.
func sourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagJSONL, Usage: "read flows from a JSON-lines file (probe --stdout); - for stdin"},
		&cli.StringFlag{Name: flagIPFIX, Usage: "read flows from an IPFIX file (probe --ipfix-file)"},
	}
}

// rangeFlags select flows by start time.
func rangeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.TimestampFlag{Name: flagFrom, Layout: time.RFC3339, Usage: "only flows starting at or after this time (RFC 3339)"},
		&cli.TimestampFlag{Name: flagTo, Layout: time.RFC3339, Usage: "only flows starting before this time (RFC 3339)"},
	}
}

// timeRange is the --from/--to range; a zero end is open.
func timeRange(c *cli.Context) (from, to time.Time) {
	if t := c.Timestamp(flagFrom); t != nil {
		from = *t
	}
	if t := c.Timestamp(flagTo); t != nil {
		to = *t
	}
	return from, to
}
