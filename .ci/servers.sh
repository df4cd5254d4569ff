#!/usr/bin/env bash
# Real servers for the test suite: redis-server and PostgreSQL 15, from Debian's packages.
#
#   bash .ci/servers.sh run CMD [ARG...]   install, start both, run CMD with the servers' URLs in
#                                          its environment, stop both on every exit path
#   bash .ci/servers.sh start DIR          install and start both under DIR (no trap: the caller
#                                          stops them); prints the export lines for the URLs
#   bash .ci/servers.sh stop DIR           stop what `start DIR` started (idempotent)
#
# Both listen on 127.0.0.1 only, on free ports, with their data, sockets, pid files and logs in
# a private directory (`run` makes a fresh one and removes it). The tests find them through
#   RESOURCELOOP_TEST_REDIS_URL     redis://127.0.0.1:PORT/0
#   RESOURCELOOP_TEST_POSTGRES_DSN  postgresql://postgres@127.0.0.1:PORT/resourceloop
# A chroot that shares the host's network (the 3.14/3.15 runs) reaches them at the same URLs;
# pass the two variables (and CI) into it.
#
# Needs root (apt-get, and PostgreSQL's server runs as the `postgres` user). Facts and timings:
# ../shared/REAL_SERVERS.md (redis answers within 0.05 s, initdb takes ~2 s on 2 cores).
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PG_DB=resourceloop

log() { echo "servers.sh: $*" >&2; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

install() {
    local missing=()
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
    [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
    command -v psql >/dev/null || missing+=(postgresql-client-15)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} from Debian"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
}

start() {
    local dir=$1
    install
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    chmod 755 "$dir"

    local redis_port pg_port
    redis_port=$(free_port)
    mkdir -p "$dir/redis"
    redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes \
        --pidfile "$dir/redis/redis.pid" --dir "$dir/redis" --logfile "$dir/redis/log" \
        --save '' --appendonly no
    echo "$redis_port" >"$dir/redis/port"
    local tries=0
    until redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 200 ] || { log "redis-server did not answer PING"; cat "$dir/redis/log" >&2; return 1; }
        sleep 0.05
    done

    pg_port=$(free_port)
    mkdir -p "$dir/postgres"
    chown postgres "$dir/postgres"
    chmod 700 "$dir/postgres"
    su postgres -s /bin/sh -c \
        "'$PG_BIN/initdb' -D '$dir/postgres/data' -U postgres --auth=trust -E UTF8 >'$dir/postgres/initdb.log' 2>&1" \
        || { cat "$dir/postgres/initdb.log" >&2; return 1; }
    # -w waits until the server accepts connections.
    su postgres -s /bin/sh -c \
        "'$PG_BIN/pg_ctl' -D '$dir/postgres/data' -l '$dir/postgres/log' -w -t 60 -o \"-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories='$dir/postgres' -c max_connections=200 -c fsync=off\" start >/dev/null" \
        || { cat "$dir/postgres/log" >&2; return 1; }
    psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE $PG_DB" >/dev/null

    echo "export RESOURCELOOP_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
    echo "export RESOURCELOOP_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:$pg_port/$PG_DB"
    log "redis-server on 127.0.0.1:$redis_port, PostgreSQL 15 on 127.0.0.1:$pg_port (under $dir)"
}

stop() {
    local dir=$1 status=0
    [ -d "$dir" ] || return 0
    if [ -f "$dir/redis/redis.pid" ]; then
        local pid
        pid=$(cat "$dir/redis/redis.pid")
        kill "$pid" 2>/dev/null || true
        # redis-server removes its pid file as it exits; wait for that (bounded).
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && { kill -9 "$pid" 2>/dev/null || true; }
        rm -f "$dir/redis/redis.pid"
    fi
    if [ -f "$dir/postgres/data/postmaster.pid" ]; then
        su postgres -s /bin/sh -c "'$PG_BIN/pg_ctl' -D '$dir/postgres/data' -m immediate -w stop >/dev/null" \
            || status=1
    fi
    return "$status"
}

run() {
    # Global, not local: the EXIT trap runs after this function has returned.
    SERVERS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/resourceloop-servers.XXXXXX")
    # Every exit path: normal, failure of CMD or of a start step, SIGINT/SIGTERM.
    trap 'stop "$SERVERS_DIR" || true; rm -rf "$SERVERS_DIR"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    eval "$(start "$SERVERS_DIR")"
    export RESOURCELOOP_TEST_REDIS_URL RESOURCELOOP_TEST_POSTGRES_DSN
    local rc=0
    "$@" || rc=$?
    return "$rc"
}

case "${1:-}" in
    run) shift; [ "$#" -gt 0 ] || { log "usage: servers.sh run CMD [ARG...]"; exit 2; }; run "$@" ;;
    start) [ "$#" -eq 2 ] || { log "usage: servers.sh start DIR"; exit 2; }; start "$2" ;;
    stop) [ "$#" -eq 2 ] || { log "usage: servers.sh stop DIR"; exit 2; }; stop "$2" ;;
    *) log "usage: servers.sh run CMD [ARG...] | start DIR | stop DIR"; exit 2 ;;
esac
