#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests (CI and developers alike).
#   .ci/postgres.sh start   installs PostgreSQL if needed (as root), starts a server in a temp
#                           folder on a free port and prints its URL (also saved in $PGDIR/url):
#                             export REGSEARCH_TEST_POSTGRES="$(.ci/postgres.sh start)"
#   .ci/postgres.sh stop    stops it and removes the folder.
# The server trusts local connections: never use it for anything but tests.
set -euo pipefail
PGDIR="${REGSEARCH_PGDIR:-${TMPDIR:-/tmp}/regsearch-postgres}"

bindir() {
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# initdb refuses to run as root: as root, run the server as the postgres user.
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    if [ -z "$(bindir)" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "postgres.sh: PostgreSQL is not installed; run: sudo apt-get install -y postgresql" >&2
            exit 1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    fi
    local bin port
    bin="$(bindir)"
    [ -f "$PGDIR/url" ] && stop
    mkdir -p "$PGDIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_owner "$bin/initdb" -D "$PGDIR/data" -U regsearch --auth=trust -E UTF8 >"$PGDIR/initdb.log"
    as_owner "$bin/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $PGDIR -c max_connections=200 -c fsync=off" start >&2
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U regsearch regsearch
    echo "postgresql://regsearch@127.0.0.1:$port/regsearch" | tee "$PGDIR/url"
}

stop() {
    local bin
    bin="$(bindir)"
    if [ -d "$PGDIR/data" ] && [ -n "$bin" ]; then
        as_owner "$bin/pg_ctl" -D "$PGDIR/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$PGDIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
