#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests (CI and developers alike).
#   .ci/postgres.sh start   installs PostgreSQL if needed (as root), starts a server in a new
#                           temp folder of its own on a free port and prints its URL (also
#                           saved in the folder's url file):
#                             export REGSEARCH_TEST_POSTGRES="$(.ci/postgres.sh start)"
#   .ci/postgres.sh stop    stops the server whose URL $REGSEARCH_TEST_POSTGRES holds and
#                           removes its folder; no other run's server.
# Each start has its own folder, so two test runs on one machine (a developer's and a CI
# clone's) never stop each other's server. $REGSEARCH_PGDIR names the folder instead, for both.
# The server trusts local connections: never use it for anything but tests.
set -euo pipefail
PREFIX="${TMPDIR:-/tmp}/regsearch-postgres."
PGDIR="${REGSEARCH_PGDIR:-}"

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
    if [ -z "$PGDIR" ]; then
        PGDIR="$(mktemp -d "${PREFIX}XXXXXX")"
    else
        [ -f "$PGDIR/url" ] && stop
        mkdir -p "$PGDIR"
    fi
    [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_owner "$bin/initdb" -D "$PGDIR/data" -U regsearch --auth=trust -E UTF8 >"$PGDIR/initdb.log"
    as_owner "$bin/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $PGDIR -c max_connections=200 -c fsync=off" start >&2
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U regsearch regsearch
    echo "postgresql://regsearch@127.0.0.1:$port/regsearch" | tee "$PGDIR/url"
}

# The folder of the server $REGSEARCH_TEST_POSTGRES names, found by the url file in it.
started_folder() {
    local url
    if [ -z "${REGSEARCH_TEST_POSTGRES:-}" ]; then
        echo "postgres.sh: which server? set REGSEARCH_TEST_POSTGRES to the URL start printed" >&2
        exit 2
    fi
    for url in "${PREFIX}"*/url; do
        if [ -f "$url" ] && [ "$(cat "$url")" = "$REGSEARCH_TEST_POSTGRES" ]; then
            dirname "$url"
            return
        fi
    done
    echo "postgres.sh: no server of this script has the URL $REGSEARCH_TEST_POSTGRES" >&2
    exit 1
}

stop() {
    local bin
    [ -n "$PGDIR" ] || PGDIR="$(started_folder)"
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
