package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/mission-ids/mission/"

// TestArchitecture checks the dependency rules of docs/architecture.md
// on the real import graph (direct and indirect imports, tests excluded).
func TestArchitecture(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps", "./...").Output()
	require.NoError(t, err)
	deps := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		require.NoError(t, dec.Decode(&p))
		deps[strings.TrimPrefix(p.ImportPath, module)] = p.Deps
	}
	roles := []string{"probe", "collector", "store", "mining"}
	testHelpers := []string{"internal/plant", "internal/coapplant", "internal/mqtttest", "internal/fixtures"}
	never := map[string][]string{
		"mqttparse":        append(append([]string{"flow", "ipfix", "internal/metrics", "internal/command"}, roles...), "go.mongodb.org/mongo-driver", "github.com/rs/zerolog"),
		"ipfix":            append(append([]string{"flow", "mqttparse", "internal/metrics", "internal/command"}, roles...), "go.mongodb.org/mongo-driver", "github.com/rs/zerolog"),
		"flow":             append(append([]string{"internal/command"}, roles...), "go.mongodb.org/mongo-driver"),
		"probe":            append([]string{"collector", "store", "mining", "internal/command"}, testHelpers...),
		"collector":        append([]string{"probe", "store", "mining", "internal/command"}, testHelpers...),
		"store":            append([]string{"probe", "collector", "mining", "internal/command"}, testHelpers...),
		"mining":           append([]string{"probe", "collector", "store", "internal/command"}, testHelpers...),
		"internal/command": testHelpers,
	}
	for pkg, forbidden := range never {
		d, ok := deps[pkg]
		require.True(t, ok, "package %s exists", pkg)
		for _, dep := range d {
			dep = strings.TrimPrefix(dep, module)
			for _, f := range forbidden {
				require.False(t, dep == f || strings.HasPrefix(dep, f+"/"), "%s must not depend on %s (docs/architecture.md), but imports %s", pkg, f, dep)
			}
		}
	}
}
