#!/usr/bin/env bash
# The project's test command (README "Run the tests"). Runs as root: live
# capture tests open AF_PACKET sockets and create network namespaces.
# Every prerequisite is checked up front; a missing one fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Short fuzz runs are bounded by execution count, not time: with a
# duration, Go 1.26's fuzz coordinator can report "context deadline
# exceeded" at the deadline without any failing input (go.dev/issue/75804,
# fixed in Go 1.27).
FUZZTIME=${FUZZTIME:-50000x}

fail() { echo "test.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (live capture and network namespace tests need it): sudo bash scripts/test.sh"
for tool in go mosquitto mosquitto_pub mosquitto_sub tshark dumpcap editcap tcpdump softflowd nfcapd nfdump ip; do
	command -v "$tool" >/dev/null || fail "missing $tool: apt-get install mosquitto mosquitto-clients tshark tcpdump softflowd nfdump iproute2 (see .ci/run)"
done

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go'))
[ -z "$bad" ] || fail "gofmt would change: $bad"

echo "== go vet"
go vet ./...

echo "== static build (CGO_ENABLED=0)"
CGO_ENABLED=0 go build -o /dev/null ./...

echo "== go test"
go test -count=1 -timeout 30m ./...

echo "== short fuzz runs ($FUZZTIME each)"
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for name in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "-- $pkg $name"
		go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"
	done
done
echo "== all tests passed"
