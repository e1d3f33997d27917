package store

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
)

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

var testStart = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// testDoc is a realistic MQTT flow document: a QoS 1 PUBLISH with its
// PUBACK from exporter 192.0.2.10:4739, numbered i+1.
func testDoc(i int) flow.Document {
	start := testStart.Add(time.Duration(i) * 1371 * time.Microsecond)
	r := flow.Record{
		FlowID:  uint64(i + 1),
		SrcAddr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), DstAddr: netip.MustParseAddr("10.0.0.1"),
		SrcPort: uint16(40000 + i%20000), DstPort: 1883, Protocol: 6,
		Start: start, End: start.Add(812 * time.Microsecond), Packets: 2, Octets: 87 + uint64(i%50),
		EndReason: flow.EndOfFlow, ControlType: flow.Publish, ProtocolVersion: 5, QoS: 1,
		PacketID: uint16(i%65535 + 1), ReasonCode: 0, HasReasonCode: true, PayloadLength: 42,
		Topic:       fmt.Sprintf("plant/line%d/sensor%d/temperature", i%7, i%113),
		SrcClientID: fmt.Sprintf("sensor-%04d", i%113), DstClientID: flow.BrokerClientID,
		CorrelationData: []byte(fmt.Sprintf("req-%08d", i)), CorrelationSource: flow.CorrelationData,
		Exporter:          netip.MustParseAddrPort("192.0.2.10:4739"),
		ObservationDomain: 1,
		Received:          start.Add(3 * time.Millisecond),
	}
	return r.ToDocument()
}

func testDocs(from, n int) []flow.Document {
	ds := make([]flow.Document, n)
	for i := range ds {
		ds[i] = testDoc(from + i)
	}
	return ds
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

var (
	ferretBinOnce sync.Once
	ferretBin     string
	ferretBinErr  error
)

// buildFerretServer builds store/internal/ferretserver once per test binary.
func buildFerretServer(t testing.TB) string {
	ferretBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mission-ferretserver-")
		if err != nil {
			ferretBinErr = err
			return
		}
		ferretBin = filepath.Join(dir, "ferretserver")
		cmd := exec.Command("go", "build", "-o", ferretBin, "./internal/ferretserver")
		out, err := cmd.CombinedOutput()
		if err != nil {
			ferretBinErr = fmt.Errorf("go build ./internal/ferretserver: %w\n%s", err, out)
		}
	})
	require.NoError(t, ferretBinErr)
	return ferretBin
}

// ferretProc is FerretDB running as a separate process that a test can kill.
type ferretProc struct {
	t    testing.TB
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
}

func startFerretProc(t testing.TB) *ferretProc {
	// The first start binds port 0; restarts reuse the port it got.
	p := &ferretProc{t: t, bin: buildFerretServer(t), dir: t.TempDir(), addr: "127.0.0.1:0"}
	p.start()
	t.Cleanup(func() {
		if p.cmd != nil {
			p.kill()
		}
	})
	return p
}

func (p *ferretProc) url() string { return "mongodb://" + p.addr + "/" }

// start runs the server and waits until it prints its URL.
func (p *ferretProc) start() {
	p.t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger briefly after a kill
		cmd := exec.Command(p.bin, "-addr", p.addr, "-dir", p.dir)
		cmd.Stderr = os.Stderr
		stdout, perr := cmd.StdoutPipe()
		require.NoError(p.t, perr)
		require.NoError(p.t, cmd.Start())
		line := make(chan string, 1)
		go func() {
			s, _ := bufio.NewReader(stdout).ReadString('\n')
			line <- s
		}()
		select {
		case s := <-line:
			if addr, ok := strings.CutPrefix(strings.TrimSpace(s), "mongodb://"); ok {
				p.addr = strings.TrimSuffix(addr, "/")
				p.cmd = cmd
				return
			}
			err = fmt.Errorf("ferretserver exited: %v", cmd.Wait())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			err = fmt.Errorf("ferretserver did not start within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(p.t, err)
}

// kill ends the server with SIGKILL: no clean shutdown.
func (p *ferretProc) kill() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGKILL))
	_ = p.cmd.Wait()
	p.cmd = nil
}

// testClient connects a plain driver client, for checking what was stored.
func testClient(t testing.TB, url string) *mongo.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
	require.NoError(t, err)
	require.NoError(t, c.Ping(ctx, nil))
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// countStored returns the number of documents and of distinct flowIds.
func countStored(t testing.TB, coll *mongo.Collection) (docs, flowIDs int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	docs, err := coll.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$flowId"}}}},
		{{Key: "$count", Value: "n"}},
	})
	require.NoError(t, err)
	var res []struct {
		N int64 `bson:"n"`
	}
	require.NoError(t, cur.All(ctx, &res))
	if len(res) == 1 {
		flowIDs = res[0].N
	}
	return docs, flowIDs
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settled reports whether everything accepted is stored: queue and spool
// empty and every accepted document inserted or found duplicate.
func settled(w *Writer, n uint64) func() bool {
	return func() bool {
		s := w.Stats()
		return s.QueueDepth == 0 && s.SpoolRecords == 0 && s.Inserted+s.Duplicates >= n
	}
}
