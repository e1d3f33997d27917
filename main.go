// Command mission is a process-aware intrusion detection system for MQTT
// networks: `mission probe` turns MQTT traffic into flow records exported
// as IPFIX, `mission collect` stores them in MongoDB, `mission all-in-one`
// does both in one process; `query`, `mine` and `detect` work on the
// stored flows. The command line itself is internal/command; see README.md.
package main

import (
	"os"

	"github.com/mission-ids/mission/internal/command"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(command.Main(version))
}
