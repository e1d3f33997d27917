package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// buildMission builds the static binary once per test run.
func buildMission(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "mission-test-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "mission")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v: %s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// dockerfileEnv reads the ENV instructions of the final stage.
func dockerfileEnv(t *testing.T) map[string]string {
	f, err := os.Open("Dockerfile")
	require.NoError(t, err)
	defer f.Close()
	env := map[string]string{}
	var logical []string
	sc := bufio.NewScanner(f)
	var cur string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		logical = append(logical, cur+line)
		cur = ""
	}
	for _, l := range logical {
		if strings.HasPrefix(l, "FROM ") {
			clear(env) // only the final stage's ENV reach the image
		}
		if rest, ok := strings.CutPrefix(l, "ENV "); ok {
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				require.True(t, ok, "ENV %q: use KEY=value", kv)
				env[k] = v
			}
		}
	}
	return env
}

type composeFile struct {
	Services map[string]struct {
		Environment map[string]string `yaml:"environment"`
		CapAdd      []string          `yaml:"cap_add"`
		User        string            `yaml:"user"`
		Privileged  bool              `yaml:"privileged"`
		NetworkMode string            `yaml:"network_mode"`
	} `yaml:"services"`
}

// runConfig runs the binary with exactly the image's and a compose
// service's environment (and nothing else) and returns its configuration.
func runConfig(t *testing.T, bin string, env map[string]string) map[string]any {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PRINT_CONFIG=1"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	require.NoError(t, err, "mission with %v: %s", env, stderr)
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(out, &cfg), "%s", out)
	return cfg
}

// TestContainerEnvironment runs the binary with the variables the image
// and compose.yaml set and checks it configures the intended role.
func TestContainerEnvironment(t *testing.T) {
	bin := buildMission(t)
	image := dockerfileEnv(t)
	require.Equal(t, "all-in-one", image["ROLE"])
	raw, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	var compose composeFile
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	merged := func(service string) map[string]string {
		s, ok := compose.Services[service]
		require.True(t, ok, "compose service %s", service)
		env := map[string]string{}
		for k, v := range image {
			env[k] = v
		}
		for k, v := range s.Environment {
			env[k] = v
		}
		return env
	}

	// The image alone: all-in-one storing into the embedded database in /data.
	cfg := runConfig(t, bin, map[string]string{"ROLE": image["ROLE"], "DATA_DIR": image["DATA_DIR"], "RUN_USER": image["RUN_USER"], "INTERFACE": "eth0"})
	require.Equal(t, "all-in-one", cfg["role"])
	require.Equal(t, "embedded (/data/db)", cfg["store"].(map[string]any)["mongoURL"])
	// It drops to the image's unprivileged user once the capture is open.
	require.Equal(t, "mission", image["RUN_USER"])
	require.Equal(t, "mission", cfg["privileges"].(map[string]any)["user"])

	cfg = runConfig(t, bin, merged("probe"))
	require.Equal(t, "probe", cfg["role"])
	capture := cfg["capture"].(map[string]any)
	export := cfg["export"].(map[string]any)
	probeEnv := compose.Services["probe"].Environment
	require.Equal(t, probeEnv["INTERFACE"], capture["interface"])
	require.Equal(t, probeEnv["COLLECTOR"]+":"+probeEnv["PORT"], export["collector"])
	require.Equal(t, "udp", export["transport"])
	require.Nil(t, export["benchmarkFile"], "BENCHMARK=false")
	require.Equal(t, "host", compose.Services["probe"].NetworkMode)
	require.Equal(t, "mission", cfg["privileges"].(map[string]any)["user"])
	for _, s := range []string{"probe", "all-in-one"} {
		// Only what capture needs (NET_ADMIN only for --promiscuous).
		require.Equal(t, []string{"NET_RAW"}, compose.Services[s].CapAdd, s)
		require.False(t, compose.Services[s].Privileged, s)
	}
	// The collector needs no privilege at all.
	require.Equal(t, "10001:10001", compose.Services["collector"].User)
	require.Empty(t, compose.Services["collector"].CapAdd)

	// The original's BENCHMARK/FILE_NAME turn on the latency CSV.
	env := merged("probe")
	env["BENCHMARK"] = "True"
	cfg = runConfig(t, bin, env)
	require.Equal(t, probeEnv["FILE_NAME"], cfg["export"].(map[string]any)["benchmarkFile"])

	cfg = runConfig(t, bin, merged("collector"))
	require.Equal(t, "collect", cfg["role"])
	colEnv := compose.Services["collector"].Environment
	listen := cfg["listen"].(map[string]any)
	require.Equal(t, colEnv["COLLECTOR"], listen["host"])
	require.EqualValues(t, 2055, listen["port"])
	st := cfg["store"].(map[string]any)
	require.Equal(t, colEnv["MONGO_URL"], st["mongoURL"])
	require.Equal(t, colEnv["MONGO_COLLECTION"], st["database"], "MONGO_COLLECTION names the database, as in the original")
	require.Equal(t, "mqtt", st["collection"])
	require.Equal(t, "/data", st["dataDir"])

	cfg = runConfig(t, bin, merged("all-in-one"))
	require.Equal(t, "all-in-one", cfg["role"])
	require.Equal(t, "eth0", cfg["capture"].(map[string]any)["interface"])
	require.Equal(t, "mission", cfg["privileges"].(map[string]any)["user"])

	// ROLE=collector is accepted as an alias, and flags after it still work.
	cfg = runConfig(t, bin, map[string]string{"ROLE": "collector", "COLLECTOR_PORT": "4739"})
	require.Equal(t, "collect", cfg["role"])
}

// TestCrossBuild builds the static binary for every architecture the
// image ships (the original shipped all four for Raspberry Pis).
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Log("-short: building only for the host architecture")
	}
	targets := [][2]string{{"amd64", ""}, {"arm64", ""}, {"arm", "7"}, {"arm", "6"}}
	if testing.Short() {
		targets = [][2]string{{runtime.GOARCH, ""}}
	}
	for _, tg := range targets {
		out := filepath.Join(t.TempDir(), "mission")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tg[0], "GOARM="+tg[1])
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "GOARCH=%s GOARM=%s: %s", tg[0], tg[1], b)
		fi, err := os.Stat(out)
		require.NoError(t, err)
		require.Greater(t, fi.Size(), int64(1<<20))
	}
}
