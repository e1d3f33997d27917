package probe

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/collector"
	"github.com/mission-ids/mission/flow"
)

// deliverySpec is a capture of about 4,600 flows.
var deliverySpec = benchSpec{Publishers: 40, Subscribers: 4, Rounds: 100, DeliverEvery: 10}

// slowReader consumes a pipe a little slower than the probe writes it:
// 4 KiB, then a pause.
func slowReader(r io.Reader, lines *int, done chan<- error) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		*lines += bytes.Count(buf[:n], []byte{'\n'})
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			done <- err
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// TestFileBackpressure: reading a file into a slow stdout pipe, the
// capture waits for the exporter and every flow arrives; with the live
// policy (drop when full) the same capture drops flows and counts every
// one of them.
func TestFileBackpressure(t *testing.T) {
	info := benchCapture(t, deliverySpec)
	tests := []struct {
		name string
		live bool
	}{
		{"file waits", false},
		{"live drops and counts", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			p, err := New(Config{ReadFile: info.File, TLSPorts: []uint16{}, QueueSize: 512, Logger: zerolog.Nop()}, NewJSONExporter(pw))
			require.NoError(t, err)
			p.wait = !tt.live
			var lines int
			done := make(chan error, 1)
			go slowReader(pr, &lines, done)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, p.Run(ctx))
			require.NoError(t, <-done)
			st := p.Stats()
			require.Zero(t, st.FlowsLost)
			require.EqualValues(t, info.Flows, lines+int(st.FlowsDropped), "every flow written or counted dropped")
			require.EqualValues(t, lines, st.FlowsExported)
			if tt.live {
				require.Positive(t, st.FlowsDropped, "the live policy drops when the queue is full")
				return
			}
			require.Zero(t, st.FlowsDropped)
			require.Equal(t, info.Flows, lines)
			require.Positive(t, st.ExportWait, "the capture waited for the exporter")
		})
	}
}

// docSink keeps the flow ids the collector stores.
type docSink struct {
	delay atomic.Int64 // ns each batch takes: a slow store
	mu    sync.Mutex
	ids   map[uint64]int
	docs  int
}

func (s *docSink) PutBatch(docs []flow.Document) error {
	if d := time.Duration(s.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[uint64]int{}
	}
	for _, d := range docs {
		s.ids[d.FlowID]++
	}
	s.docs += len(docs)
	return nil
}

func (s *docSink) distinct() (ids, docs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids), s.docs
}

func (s *docSink) has(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id] > 0
}

// runCollector runs a real collector on the given port until stop is
// called; stop waits for its shutdown drain.
func runCollector(t *testing.T, cfg collector.Config, port int, sink collector.Sink) (stop func()) {
	t.Helper()
	cfg.Host, cfg.Port = "127.0.0.1", port
	if cfg.TLS != nil {
		cfg.TLSPort, cfg.Listen = port, []string{"udp"}
	}
	if cfg.DrainQuiet == 0 {
		// A short drain: the probe keeps sending, so the collector closes
		// with unread data, as one killed in a hurry does.
		cfg.DrainQuiet, cfg.DrainTimeout = 20*time.Millisecond, 100*time.Millisecond
	}
	cfg.Logger = zerolog.Nop()
	c := collector.New(cfg, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	actx, acancel := context.WithTimeout(ctx, 5*time.Second)
	defer acancel()
	_, err := c.Addrs(actx)
	require.NoError(t, err)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// freePort returns a port no one listens on now (TCP and UDP).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// testRecords are n flows with distinct flow ids.
func testRecords(first, n int) []flow.Record {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	out := make([]flow.Record, n)
	for i := range out {
		id := first + i
		out[i] = flow.Record{FlowID: uint64(id), SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			SrcPort: uint16(40000 + id%20000), DstPort: 1883, Protocol: 6, Start: start.Add(time.Duration(id) * time.Millisecond),
			End: start.Add(time.Duration(id)*time.Millisecond + time.Millisecond), Packets: 4, Octets: 80,
			EndReason: flow.EndOfFlow, ControlType: flow.Publish, ProtocolVersion: 5, QoS: 2, PacketID: uint16(id),
			Topic: "plant/sensor/temperature/" + strconv.Itoa(id%7), SrcClientID: "sensor", DstClientID: flow.BrokerClientID}
	}
	return out
}

// feeder drives a probe's real export loop the way the capture does:
// batches go through the export queue (blocking, as a file capture).
type feeder struct {
	p    *Probe
	done chan error
}

func startFeeder(t *testing.T, cfg Config, exp Exporter) *feeder {
	t.Helper()
	cfg.ReadFile = "unused.pcap"
	if cfg.Logger.GetLevel() == zerolog.DebugLevel {
		cfg.Logger = zerolog.Nop()
	}
	p, err := New(cfg, exp)
	require.NoError(t, err)
	f := &feeder{p: p, done: make(chan error, 1)}
	go func() { f.done <- p.exportLoop() }()
	return f
}

func (f *feeder) send(recs []flow.Record) {
	for len(recs) > 0 {
		n := min(captureBatch, len(recs))
		b := append(make([]flow.Record, 0, captureBatch), recs[:n]...)
		f.p.depth.Add(int64(n))
		f.p.queue <- b
		recs = recs[n:]
	}
}

// stop ends the feed as Run does and returns the export loop's error.
func (f *feeder) stop(t *testing.T) error {
	t.Helper()
	close(f.p.stopping)
	close(f.p.queue)
	select {
	case err := <-f.done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("the export loop did not end")
		return nil
	}
}

// TestStreamCollectorOutage: over TCP and TLS, a collector that restarts
// during a stream (stopping with unread data in its socket, down for
// about 1.5 s, back on the same port) or that starts 1 s after the probe
// loses no flow: the flows wait in the queue and the resend window goes
// out again after the reconnect. The collector's store is slow until the
// restart, so the collector closes with data it never read: without the
// resend window those flows would be lost. Copies are only of flows the collector
// had (absorbed by the store's deterministic ids).
func TestStreamCollectorOutage(t *testing.T) {
	_, serverTLS, clientTLS := testPKI(t)
	serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	tests := []struct {
		transport string
		late      bool // the collector starts after the probe
	}{
		{"tcp", false},
		{"tls", false},
		{"tcp", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s late=%v", tt.transport, tt.late), func(t *testing.T) {
			port := freePort(t)
			sink := &docSink{}
			ccfg := collector.Config{}
			if tt.transport == "tls" {
				ccfg.TLS = serverTLS
			}
			var stop func()
			if !tt.late {
				// Until the restart the store is slow: the collector falls
				// behind and its socket holds data it will never read.
				sink.delay.Store(int64(5 * time.Millisecond))
				stop = runCollector(t, ccfg, port, sink)
			}
			exp, err := NewIPFIXExporter(IPFIXConfig{Transport: tt.transport, Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
				ObservationDomainID: 3, TLS: clientTLS, Logger: zerolog.Nop()})
			require.NoError(t, err)
			f := startFeeder(t, Config{QueueSize: 65536, FlushInterval: 20 * time.Millisecond, ConnectTimeout: 10 * time.Second}, exp)
			// 40,000 flows over about 3 s. The collector is stopped while
			// the stream goes on (its drain ends with data still coming).
			const perStep, steps = 200, 200
			next := 1
			stopped := make(chan struct{})
			for step := 0; step < steps; step++ {
				switch {
				case tt.late && step == 100:
					runCollector(t, ccfg, port, sink)
				case !tt.late && step == 50:
					go func() { stop(); close(stopped) }()
				case !tt.late && step == 150:
					<-stopped
					sink.delay.Store(0)
					runCollector(t, ccfg, port, sink)
				}
				f.send(testRecords(next, perStep))
				next += perStep
				time.Sleep(10 * time.Millisecond)
			}
			require.NoError(t, f.stop(t))
			total := next - 1
			require.Eventually(t, func() bool { ids, _ := sink.distinct(); return ids == total }, 5*time.Second, 10*time.Millisecond)
			ids, docs := sink.distinct()
			st := f.p.Stats()
			t.Logf("%d flows, %d stored documents (%d distinct); resent %d, reconnects %d", total, docs, ids, st.Export.FlowsResent, st.Export.Reconnects)
			require.Equal(t, total, ids, "every flow stored")
			require.Zero(t, st.FlowsLost+st.FlowsDropped)
			require.EqualValues(t, total, st.FlowsExported)
			require.Positive(t, st.FlowsDeferred, "flows waited in the queue during the outage")
			if !tt.late {
				require.Positive(t, st.Export.Reconnects)
				require.LessOrEqual(t, docs-ids, int(st.Export.FlowsResent), "copies only from the resend window")
			}
		})
	}
}

// TestUDPNoListenerThenListener: over UDP, datagrams to a port without a
// listener are refused (ICMP port unreachable), counted and not taken as
// lost flows; once a collector listens, the datagrams sent from then on
// are delivered.
func TestUDPNoListenerThenListener(t *testing.T) {
	port := freePort(t)
	exp, err := NewIPFIXExporter(IPFIXConfig{Transport: "udp", Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Logger: zerolog.Nop()})
	require.NoError(t, err)
	next := 1
	send := func(n int) {
		for i := 0; i < n; i++ {
			require.NoError(t, exp.Export(testRecords(next, 5)))
			require.NoError(t, exp.Flush())
			next += 5
			time.Sleep(5 * time.Millisecond) // the ICMP error comes back
		}
	}
	send(20)
	require.Positive(t, exp.ExportStats().DatagramsRefused, "refusals counted")
	sink := &docSink{}
	runCollector(t, collector.Config{Listen: []string{"udp"}}, port, sink)
	firstHeard := next
	send(20)
	require.NoError(t, exp.Close())
	require.Eventually(t, func() bool {
		for id := firstHeard; id < next; id++ {
			if !sink.has(uint64(id)) {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "the flows sent after the collector started are stored")
	require.Zero(t, exp.ExportStats().FlowsLost, "a refused datagram is not a lost flow")
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTLSClientCertificateRejected: a collector that requires a client
// certificate refuses a probe without one, over TLS 1.3 (the rejection
// comes after the handshake) and TLS 1.2 (during it). Nothing is counted
// exported, the cause is logged at error level, the flows are retried and
// then counted lost. With the certificate every flow is delivered.
func TestTLSClientCertificateRejected(t *testing.T) {
	_, serverTLS, clientTLS := testPKI(t)
	serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	noCert := &tls.Config{RootCAs: clientTLS.RootCAs, ServerName: "127.0.0.1"}
	tls12 := noCert.Clone()
	tls12.MaxVersion = tls.VersionTLS12
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"TLS 1.3 without certificate", noCert, false},
		{"TLS 1.2 without certificate", tls12, false},
		{"with certificate", clientTLS, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			sink := &docSink{}
			runCollector(t, collector.Config{TLS: serverTLS}, port, sink)
			logs := &syncBuffer{}
			log := zerolog.New(logs)
			exp, err := NewIPFIXExporter(IPFIXConfig{Transport: "tls", Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
				TLS: tt.client, Logger: log})
			require.NoError(t, err)
			f := startFeeder(t, Config{FlushInterval: 20 * time.Millisecond, ConnectTimeout: 500 * time.Millisecond, Logger: log}, exp)
			f.send(testRecords(1, 500))
			err = f.stop(t)
			st := f.p.Stats()
			if tt.ok {
				require.NoError(t, err)
				require.EqualValues(t, 500, st.FlowsExported)
				require.Eventually(t, func() bool { ids, _ := sink.distinct(); return ids == 500 }, 5*time.Second, 10*time.Millisecond)
				require.NotContains(t, logs.String(), `"level":"error"`)
				return
			}
			require.Zero(t, st.FlowsExported, "nothing counted exported")
			require.EqualValues(t, 500, st.FlowsLost, "counted lost after the connect timeout")
			require.Positive(t, st.Export.TLSRejected)
			out := logs.String()
			require.Contains(t, out, `"level":"error"`)
			require.Contains(t, out, "collector rejected our client certificate")
			require.NotContains(t, out, "connected to collector")
			ids, _ := sink.distinct()
			require.Zero(t, ids)
		})
	}
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
