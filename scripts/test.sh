#!/usr/bin/env bash
# The project's test command (README, "Run the tests"):
#
#   bash scripts/test.sh
#
# Live capture and network-namespace tests need root. Run as root, or as a
# user with sudo: the script then runs itself again under sudo. Debian
# packages the tests use (brokers, dissectors, peers) are installed with
# apt-get when missing; the script says which before it does. Nothing is
# skipped: a prerequisite that cannot be had fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test.sh: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || fail "the tests need root (live capture, network namespaces), and sudo is not installed: run this as root"
	echo "== not root: running again under sudo"
	exec sudo env "PATH=$PATH" ${GOFLAGS:+"GOFLAGS=$GOFLAGS"} ${FUZZTIME:+"FUZZTIME=$FUZZTIME"} bash "$0" "$@"
fi
# Root's tools (mosquitto, softflowd, ip) live in sbin, which a user's
# PATH carried through sudo may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
command -v go >/dev/null || fail "go is not on PATH (install Go 1.26 from go.dev/dl and add its bin directory to PATH)"
# Under sudo, root runs git (and go, for VCS stamping) in a clone another
# user owns; trust this one directory for this run only.
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0="$PWD"

# Short fuzz runs are bounded by execution count, not time: with a
# duration, Go 1.26's fuzz coordinator can report "context deadline
# exceeded" at the deadline without any failing input (go.dev/issue/75804,
# fixed in Go 1.27).
FUZZTIME=${FUZZTIME:-50000x}

# command → Debian package
declare -A need=(
	[mosquitto]=mosquitto [mosquitto_pub]=mosquitto-clients [mosquitto_sub]=mosquitto-clients
	[tshark]=tshark [dumpcap]=tshark [editcap]=tshark [tcpdump]=tcpdump [softflowd]=softflowd
	[nfcapd]=nfdump [nfdump]=nfdump [ip]=iproute2 [git]=git
	[coap-client-notls]=libcoap3-bin [coap-server-notls]=libcoap3-bin
)
missing=()
for tool in "${!need[@]}"; do
	command -v "$tool" >/dev/null || missing+=("${need[$tool]}")
done
[ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	command -v apt-get >/dev/null || fail "missing packages ($pkgs) and no apt-get to install them: install them by hand"
	echo "== installing missing test prerequisites with apt-get: $pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
	# Debian may start the packaged mosquitto on port 1883; the tests run
	# their own brokers on free ports, so stop it to keep the machine quiet.
	service mosquitto stop >/dev/null 2>&1 || true
fi

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
