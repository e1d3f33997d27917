// Command record-sample records the sample capture of the repository
// (testdata/sample.pcap): the MISSION study's plant (internal/plant) on a
// real mosquitto, captured on the loopback interface with the probe's own
// pure-Go capture (probe/capture, probe/bpf) and written as pcap with
// gopacket's pcapgo.
//
//	go run ./internal/plant/cmd/record-sample -o testdata/sample.pcap
//
// It needs root and mosquitto (apt-get install mosquitto). By default it
// runs in a fresh network namespace, so the broker listens on the standard
// port 1883 and the sample replays without --mqtt-ports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/mission-ids/mission/internal/plant"
	"github.com/mission-ids/mission/probe/bpf"
	"github.com/mission-ids/mission/probe/capture"
)

func main() {
	out := flag.String("o", "testdata/sample.pcap", "pcap file to write")
	rounds := flag.Int("rounds", 4, "rounds of readings (each: every sensor once)")
	interval := flag.Duration("interval", 500*time.Millisecond, "duration of one round")
	port := flag.Int("port", 1883, "broker port")
	netns := flag.Bool("netns", true, "run in a fresh network namespace (so port 1883 is free)")
	watch := flag.Bool("watch-states", false, "the controller also subscribes to the actuators' states")
	inner := flag.Bool("in-netns", false, "internal: already inside the namespace")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *netns && !*inner {
		err = inNamespace(ctx)
	} else {
		err = record(ctx, *out, *port, *rounds, *interval, *watch)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "record-sample:", err)
		os.Exit(1)
	}
}

// inNamespace runs this program again inside a new network namespace with
// only lo up, and removes the namespace afterwards.
func inNamespace(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: it creates a network namespace and captures packets")
	}
	ns := "mission-sample-" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s (apt-get install iproute2)", ns, err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("lo up in %s: %v: %s", ns, err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", ns, self, "-in-netns"}
	flag.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		if f.Name == "o" {
			v, _ = filepath.Abs(v)
		}
		args = append(args, "-"+f.Name+"="+v)
	})
	if !isSet("o") {
		abs, _ := filepath.Abs(flag.Lookup("o").Value.String())
		args = append(args, "-o="+abs)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func record(ctx context.Context, out string, port, rounds int, interval time.Duration, watch bool) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	b, err := plant.StartMosquitto(ctx, "127.0.0.1", port, "")
	if err != nil {
		return err
	}
	defer b.Stop()

	prog, err := bpf.Compile(fmt.Sprintf("tcp port %d", port), bpf.LinkTypeEthernet, 0)
	if err != nil {
		return err
	}
	src, err := capture.OpenLive(capture.LiveConfig{Interface: "lo", Filter: prog.Raw()})
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		src.Close()
		return err
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(capture.MaxFrame, layers.LinkTypeEthernet); err != nil {
		src.Close()
		return err
	}
	var (
		wg       sync.WaitGroup
		packets  int
		writeErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		var p capture.Packet
		for {
			err := src.ReadPacket(&p)
			switch {
			case errors.Is(err, capture.ErrTimeout):
				continue
			case errors.Is(err, capture.ErrClosed), errors.Is(err, io.EOF):
				return
			case err != nil:
				writeErr = err
				return
			}
			ci := gopacket.CaptureInfo{Timestamp: p.Timestamp, CaptureLength: len(p.Data), Length: p.Length}
			if err := w.WritePacket(ci, p.Data); err != nil {
				writeErr = err
				return
			}
			packets++
		}
	}()

	cfg := plant.DefaultConfig(b.Addr)
	cfg.Rounds, cfg.Interval, cfg.WatchStates, cfg.Seed = rounds, interval, watch, 1
	rep, runErr := plant.Run(ctx, cfg)
	time.Sleep(300 * time.Millisecond) // the last FINs and ACKs
	st, _ := src.Stats()
	src.Close()
	wg.Wait()
	if err := errors.Join(runErr, writeErr, f.Close()); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d packets (kernel: %d received, %d dropped), %d bytes; broker 127.0.0.1:%d; %d rounds, %d chains, %d clients, %d publications, %d deliveries\n",
		out, packets, st.Received, st.Dropped, fi.Size(), port, rep.Rounds, len(rep.Chains), len(rep.Clients), len(rep.Published), len(rep.Delivered))
	return nil
}
