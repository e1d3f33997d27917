package plant

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mosquitto is a mosquitto broker run as a child process, for programs
// (tests have internal/mqtttest.StartBroker).
type Mosquitto struct {
	Addr string // host:port it listens on
	cmd  *exec.Cmd
	dir  string
	out  *syncBuffer
	done chan struct{}
	once sync.Once
}

// StartMosquitto starts mosquitto listening on address:port ("127.0.0.1",
// 1883) with anonymous access, no persistence and every log type, and
// waits until it runs. dir holds its configuration ("" for a temporary
// directory).
func StartMosquitto(ctx context.Context, address string, port int, dir string) (*Mosquitto, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return nil, fmt.Errorf("mosquitto not found: apt-get install mosquitto (%w)", err)
	}
	m := &Mosquitto{Addr: fmt.Sprintf("%s:%d", address, port), out: &syncBuffer{}, done: make(chan struct{})}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "plant-mosquitto-"); err != nil {
			return nil, err
		}
		m.dir = dir
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := fmt.Sprintf("listener %d %s\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type all\n", port, address)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	m.cmd = exec.CommandContext(ctx, bin, "-c", conf)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	go func() { _ = m.cmd.Wait(); close(m.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(m.out.String(), "running") {
		select {
		case <-m.done:
			return nil, fmt.Errorf("mosquitto exited on %s:\n%s", m.Addr, m.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = m.Stop()
			return nil, fmt.Errorf("mosquitto did not start on %s:\n%s", m.Addr, m.out.String())
		}
	}
	return m, nil
}

// Log returns what mosquitto logged so far.
func (m *Mosquitto) Log() string { return m.out.String() }

// Stop stops mosquitto (SIGTERM, then SIGKILL after 3 s); idempotent.
func (m *Mosquitto) Stop() error {
	var err error
	m.once.Do(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(3 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
			err = errors.New("mosquitto did not stop on SIGTERM")
		}
		if m.dir != "" {
			_ = os.RemoveAll(m.dir)
		}
	})
	return err
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
