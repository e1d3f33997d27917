package collector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/fixtures"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/probe"
)

// memSink keeps documents in memory.
type memSink struct {
	mu   sync.Mutex
	docs []flow.Document
}

func (m *memSink) PutBatch(docs []flow.Document) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.docs = append(m.docs, docs...)
	return nil
}

func (m *memSink) snapshot() []flow.Document {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]flow.Document(nil), m.docs...)
}

func (m *memSink) waitFor(t *testing.T, n int) []flow.Document {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if d := m.snapshot(); len(d) >= n {
			return d
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := m.snapshot()
	t.Fatalf("got %d documents, want %d", len(d), n)
	return nil
}

// start runs a collector on free ports and returns its addresses by network.
func start(t *testing.T, cfg Config, sink Sink) (*Collector, map[string]string) {
	t.Helper()
	cfg.Host = "127.0.0.1"
	cfg.Port = 0
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	c := New(cfg, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	addrs, err := c.Addrs(ctx)
	require.NoError(t, err)
	out := map[string]string{}
	for i, a := range addrs {
		key := a.Network()
		if cfg.TLS != nil && i == len(addrs)-1 {
			key = "tls"
		}
		out[key] = a.String()
	}
	return c, out
}

func records(n int) []flow.Record {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	out := make([]flow.Record, n)
	for i := range out {
		out[i] = flow.Record{
			FlowID: uint64(i + 1), SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			SrcPort: uint16(40000 + i), DstPort: 1883, Protocol: 6, ApplicationProtocol: flow.AppMQTT, Start: start.Add(time.Duration(i) * time.Millisecond),
			End: start.Add(time.Duration(i)*time.Millisecond + 300*time.Microsecond), Packets: 4, Octets: 80,
			EndReason: flow.EndOfFlow, ControlType: flow.Publish, ProtocolVersion: 5, QoS: 2, PacketID: uint16(i),
			HasReasonCode: true, Topic: "plant/sensor/temperature", SrcClientID: "sensor", DstClientID: flow.BrokerClientID,
			CorrelationData: []byte{byte(i), 0xff}, CorrelationSource: flow.CorrelationData, IdentitySource: flow.IdentityConnect,
		}
		if i%3 == 0 {
			out[i].SrcAddr, out[i].DstAddr = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
		}
	}
	return out
}

// TestProbeExportInterop sends the probe's own export over UDP, TCP and
// TLS (mutual) and checks every stored document equals the record's.
func TestProbeExportInterop(t *testing.T) {
	ca, serverTLS, clientTLS := testPKI(t)
	_ = ca
	serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	for _, transport := range []string{"udp", "tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			sink := &memSink{}
			cfg := Config{}
			if transport == "tls" {
				cfg.TLS = serverTLS
			}
			_, addrs := start(t, cfg, sink)
			exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: transport, Address: addrs[map[string]string{"udp": "udp", "tcp": "tcp", "tls": "tls"}[transport]],
				ObservationDomainID: 7, TLS: clientTLS, Logger: zerolog.Nop()})
			require.NoError(t, err)
			in := records(300)
			for i := 0; i < len(in); i += 50 {
				require.NoError(t, exp.Export(in[i:i+50]))
				require.NoError(t, exp.Flush())
				if transport == "udp" {
					time.Sleep(time.Millisecond) // stay within the socket buffer
				}
			}
			require.NoError(t, exp.Close())
			docs := sink.waitFor(t, len(in))
			require.Len(t, docs, len(in))
			byID := map[uint64]flow.Document{}
			for _, d := range docs {
				byID[d.FlowID] = d
			}
			for i := range in {
				got, ok := byID[in[i].FlowID]
				require.True(t, ok, "flow %d stored", in[i].FlowID)
				want := in[i].ToDocument()
				require.Equal(t, uint32(7), got.ObservationDomainID)
				require.NotEmpty(t, got.ExporterAddress)
				require.NotNil(t, got.CollectorReceiveTime)
				got.ObservationDomainID, got.ExporterAddress, got.CollectorReceiveTime = 0, "", nil
				require.True(t, want.FlowStart.Equal(got.FlowStart))
				got.FlowStart, got.FlowEnd = want.FlowStart, want.FlowEnd
				require.Equal(t, want, got)
			}
		})
	}
}

func TestTLSRequiresClientCertificate(t *testing.T) {
	_, serverTLS, _ := testPKI(t)
	serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	sink := &memSink{}
	_, addrs := start(t, Config{TLS: serverTLS}, sink)
	// A client that trusts the server but has no certificate is refused.
	pool := serverTLS.ClientCAs
	conn, err := tls.Dial("tcp", addrs["tls"], &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err == nil {
		// TLS 1.3 reports the refusal on first read.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	require.Error(t, err)
	require.Empty(t, sink.snapshot())
}

func TestOriginalPrototypeOverUDP(t *testing.T) {
	sink := &memSink{}
	c, addrs := start(t, Config{}, sink)
	conn, err := net.Dial("udp", addrs["udp"])
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(fixtures.OriginalMISSIONMessage())
	require.NoError(t, err)
	docs := sink.waitFor(t, 1)
	d := docs[0]
	require.Equal(t, "192.168.1.20", d.SourceIPv4Address)
	require.Equal(t, "home/livingroom/temperature", d.MQTTTopic)
	require.Equal(t, "temperatureSensor", d.MQTTSrcClientID)
	require.Equal(t, "6f1c2a", d.MQTTCorrelationData)
	require.Equal(t, uint8(3), d.MQTTControlType)
	require.Equal(t, int64(500000), d.FlowDurationMicroseconds)
	require.Equal(t, uint64(1), c.Stats().MQTTFlows)
}

func TestAllowList(t *testing.T) {
	sink := &memSink{}
	c, addrs := start(t, Config{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, sink)
	conn, err := net.Dial("udp", addrs["udp"])
	require.NoError(t, err)
	_, err = conn.Write(fixtures.OriginalMISSIONMessage())
	require.NoError(t, err)
	conn.Close()
	tc, err := net.Dial("tcp", addrs["tcp"])
	require.NoError(t, err)
	tc.Close()
	require.Eventually(t, func() bool { return c.Stats().Denied == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Empty(t, sink.snapshot())
	require.Equal(t, uint64(2), c.Exporters()[netip.MustParseAddr("127.0.0.1")].Denied)
}

// TestHostileInput throws garbage, truncations, template floods, unknown
// withdrawals, maximum-size messages and data before templates at UDP and
// TCP: the collector counts it all, keeps its memory bounded and still
// stores a valid message afterwards.
func TestHostileInput(t *testing.T) {
	sink := &memSink{}
	c, addrs := start(t, Config{IPFIX: ipfix.Config{MaxTemplates: 64, MaxBufferedBytes: 4096}}, sink)
	valid := fixtures.OriginalMISSIONMessage()
	hdr := func(length int, seq uint32) []byte {
		b := binary.BigEndian.AppendUint16(nil, 10)
		b = binary.BigEndian.AppendUint16(b, uint16(length))
		b = binary.BigEndian.AppendUint32(b, uint32(time.Now().Unix()))
		b = binary.BigEndian.AppendUint32(b, seq)
		return binary.BigEndian.AppendUint32(b, 1)
	}
	var msgs [][]byte
	// Garbage and every truncation of a valid message.
	garbage := make([]byte, 3000)
	_, _ = rand.Read(garbage)
	msgs = append(msgs, garbage, []byte{0, 10}, nil)
	for i := 1; i < len(valid); i += 37 {
		msgs = append(msgs, valid[:i])
	}
	// A template flood: 1000 templates in a few messages.
	for m := 0; m < 10; m++ {
		set := binary.BigEndian.AppendUint16(nil, 2)
		set = binary.BigEndian.AppendUint16(set, 0)
		for i := 0; i < 100; i++ {
			set = binary.BigEndian.AppendUint16(set, uint16(300+m*100+i))
			set = binary.BigEndian.AppendUint16(set, 1)
			set = binary.BigEndian.AppendUint16(set, 8)
			set = binary.BigEndian.AppendUint16(set, 4)
		}
		binary.BigEndian.PutUint16(set[2:], uint16(len(set)))
		msgs = append(msgs, append(hdr(16+len(set), 0), set...))
	}
	// Withdrawal of unknown templates, and the all-templates withdrawal.
	wd := ipfix.AppendWithdrawalSet(nil, false, 4000, 4001)
	msgs = append(msgs, append(hdr(16+len(wd), 0), wd...))
	// A 65535-byte message: data sets for a template never sent.
	data := binary.BigEndian.AppendUint16(nil, 999)
	data = binary.BigEndian.AppendUint16(data, uint16(65535-16))
	data = append(data, make([]byte, 65535-16-4)...)
	msgs = append(msgs, append(hdr(65535, 0), data...))

	udp, err := net.Dial("udp", addrs["udp"])
	require.NoError(t, err)
	defer udp.Close()
	for _, m := range msgs {
		if len(m) > 0 {
			_, _ = udp.Write(m)
			time.Sleep(200 * time.Microsecond)
		}
	}
	// Over TCP each framing error closes the connection: one per message.
	for _, m := range msgs[:5] {
		tc, err := net.Dial("tcp", addrs["tcp"])
		require.NoError(t, err)
		_, _ = tc.Write(m)
		tc.Close()
	}
	// TCP with a valid stream then data before template is fine.
	tc, err := net.Dial("tcp", addrs["tcp"])
	require.NoError(t, err)
	_, _ = tc.Write(msgs[len(msgs)-1])
	_, _ = tc.Write(valid)
	tc.Close()
	// The collector still works: a valid message from another exporter
	// session over UDP is stored. (The flooding session's template table
	// is full: its new templates are refused, by design.)
	udp2, err := net.Dial("udp", addrs["udp"])
	require.NoError(t, err)
	defer udp2.Close()
	_, err = udp2.Write(valid)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(sink.snapshot()) == 2 }, 5*time.Second, 5*time.Millisecond)
	tot := c.Stats()
	require.Greater(t, tot.Malformed, uint64(10))
	ex := c.Exporters()[netip.MustParseAddr("127.0.0.1")]
	require.Greater(t, ex.TemplateMisses, uint64(0))
	require.LessOrEqual(t, ex.TemplatesActive, 64, "template table bounded")
}

func TestReadIPFIXFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.ipfix")
	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "file", Address: path, Logger: zerolog.Nop()})
	require.NoError(t, err)
	in := records(1000)
	require.NoError(t, exp.Export(in))
	require.NoError(t, exp.Close())
	sink := &memSink{}
	c := New(Config{Logger: zerolog.Nop()}, sink)
	require.NoError(t, c.ReadFile(context.Background(), path))
	docs := sink.snapshot()
	require.Len(t, docs, len(in))
	require.Equal(t, in[999].FlowID, docs[999].FlowID)
	require.Empty(t, docs[0].ExporterAddress)
}

// testPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA.
func testPKI(t *testing.T) (*x509.CertPool, *tls.Config, *tls.Config) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mission test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "mission"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		require.NoError(t, err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	server := &tls.Config{Certificates: []tls.Certificate{leaf(2, x509.ExtKeyUsageServerAuth)}, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	client := &tls.Config{Certificates: []tls.Certificate{leaf(3, x509.ExtKeyUsageClientAuth)}, RootCAs: pool, ServerName: "127.0.0.1"}
	return pool, server, client
}
