#!/usr/bin/env bash
# Measures the store against an external MongoDB-compatible server: FerretDB
# v1 over PostgreSQL, in their own processes (there is no MongoDB server
# package on these machines; with one, run the benchmark directly:
#   MISSION_BENCH_MONGO_URL=mongodb://HOST:27017/ go test ./store -run '^$' -bench ExternalInsert -benchtime 30000x
# ). Needs root (PostgreSQL runs as the postgres user) and the Debian
# postgresql package. Nothing listens on a fixed port: PostgreSQL uses a
# Unix socket in a temporary directory, FerretDB a free loopback port.
#
#   sudo bash scripts/bench-external-store.sh [go test flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -z "$pgbin" || ! -x "$pgbin/postgres" ]]; then
	echo "bench-external-store: PostgreSQL not found: apt-get install postgresql" >&2
	exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "bench-external-store: run as root (PostgreSQL is started as the postgres user)" >&2
	exit 1
fi

work=$(mktemp -d /tmp/mission-extstore-XXXXXX)
chown postgres "$work"
pgpid=""
ferretpid=""
cleanup() {
	[[ -n "$ferretpid" ]] && kill "$ferretpid" 2>/dev/null && wait "$ferretpid" 2>/dev/null || true
	[[ -n "$pgpid" ]] && su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $work/pg -m fast stop" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

su postgres -s /bin/sh -c "$pgbin/initdb -D $work/pg -A trust -U postgres" >"$work/initdb.log"
su postgres -s /bin/sh -c "$pgbin/pg_ctl -D $work/pg -l $work/pg.log -w -o \"-c listen_addresses='' -c unix_socket_directories=$work -c fsync=on -c synchronous_commit=off -c shared_buffers=512MB -c max_wal_size=4GB\" start" >/dev/null
pgpid=$(head -1 "$work/pg/postmaster.pid")
su postgres -s /bin/sh -c "$pgbin/createdb -h $work ferretdb"

go build -o "$work/ferretserver" ./store/internal/ferretserver
"$work/ferretserver" -postgresql "postgres://postgres@/ferretdb?host=$work" >"$work/ferret.url" 2>"$work/ferret.log" &
ferretpid=$!
for _ in $(seq 100); do
	[[ -s "$work/ferret.url" ]] && break
	sleep 0.1
done
url=$(head -1 "$work/ferret.url")
if [[ -z "$url" ]]; then
	echo "bench-external-store: FerretDB did not start:" >&2
	cat "$work/ferret.log" >&2
	exit 1
fi
echo "external server: FerretDB $(go list -m -f '{{.Version}}' github.com/FerretDB/FerretDB) over PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') (synchronous_commit=off, like MongoDB's default w:1 without j), at $url"
if [[ -n "${PARALLEL:-}" ]]; then
	# PARALLEL=N: N benchmark processes at once (is the server, not one
	# client's batch at a time, the limit?)
	go test -c -o "$work/store.test" ./store
	pids=()
	for _ in $(seq "$PARALLEL"); do
		(cd store && MISSION_BENCH_MONGO_URL="$url" "$work/store.test" -test.run '^$' -test.bench ExternalInsert -test.benchtime 30000x) &
		pids+=($!)
	done
	wait "${pids[@]}"
	exit 0
fi
MISSION_BENCH_MONGO_URL="$url" go test ./store -run '^$' -bench ExternalInsert -benchtime 30000x "$@"
