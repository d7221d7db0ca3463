#!/usr/bin/env bash
# Start or stop a throw-away PostgreSQL 15 on loopback for tests and the demo.
#   hack/postgres.sh start   -> prints "export TJO_TEST_DSN=..." on its last line
#   hack/postgres.sh stop
#   hack/postgres.sh down / up   -> stop the server keeping its data / start it again (outage tests)
# Ownership: with TJO_PG_OWNER=<token>, `start` records the token when (and only when) it starts
# the server, and `stop` stops it only when the recorded token is the same: a run stops only the
# server it started, never one another run (or person) started on the same port.
# TJO_PG_LISTEN=ADDR[,ADDR]: listen there too (the host side of the real node's veth, so pods reach
# the server: pods cannot reach the host's 127.0.0.1), with password logins from the node subnets.
# PostgreSQL refuses to run as root, so the server runs as the user "tjo-pg".
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${TJO_PG_PORT:-55432}
STATE=${TJO_PG_DIR:-/tmp/tjo-pg-$PORT}
PGUSER_OS=tjo-pg
DB=tjo ROLE=tjo PASSWORD=tjo
dsn="postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
LISTEN=127.0.0.1${TJO_PG_LISTEN:+,$TJO_PG_LISTEN}
SERVER_OPTS="-c listen_addresses=$LISTEN -p $PORT -k $STATE -c fsync=off -c max_connections=200"
# The real nodes' links (hack/localcluster/network.py): pods come masqueraded as their node's IP.
NODE_NETS=10.213.0.0/16

as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u "$PGUSER_OS" -- "$@"; else "$@"; fi; }

ensure_binaries() {
  if [[ ! -x $PGBIN/initdb ]]; then
    echo "installing PostgreSQL 15 server binaries from Debian" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  fi
  if [[ $(id -u) -eq 0 ]] && ! id "$PGUSER_OS" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PGUSER_OS"
  fi
}

OWNER=${TJO_PG_OWNER:-}

running() { [[ -f $STATE/data/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" -D "$STATE/data" status >/dev/null 2>&1; }

start() {
  ensure_binaries
  # One start at a time per state directory (two runs starting together would wipe each other's).
  exec 9>"$STATE.lock"
  flock 9
  if running; then
    echo "PostgreSQL already running on 127.0.0.1:$PORT" >&2
  elif "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2; then
    echo "a PostgreSQL not started from $STATE already listens on 127.0.0.1:$PORT; not touching it" \
      "(set TJO_PG_PORT or TJO_PG_DIR)" >&2
    exit 1
  else
    rm -rf "$STATE"; mkdir -p "$STATE"
    [[ $(id -u) -eq 0 ]] && chown "$PGUSER_OS" "$STATE"
    as_pg "$PGBIN/initdb" -D "$STATE/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" 2>&1
    echo "host all all $NODE_NETS scram-sha-256" | as_pg tee -a "$STATE/data/pg_hba.conf" >/dev/null
    # 9>&-: the server must not inherit (and hold for ever) the start lock
    as_pg "$PGBIN/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w -t 60 -o "$SERVER_OPTS" start >/dev/null 9>&-
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 \
      -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD' SUPERUSER" -c "CREATE DATABASE $DB OWNER $ROLE" >/dev/null
    printf '%s' "$OWNER" >"$STATE/owner"
    echo "PostgreSQL started on $LISTEN port $PORT (data and log in $STATE)" >&2
  fi
  exec 9>&-
  echo "export TJO_TEST_DSN=$dsn"
}

stop() {
  if [[ -n $OWNER && "$(cat "$STATE/owner" 2>/dev/null)" != "$OWNER" ]]; then
    echo "PostgreSQL on port $PORT was not started by this run: left running" >&2
    return 0
  fi
  if [[ -d $STATE/data ]]; then
    as_pg "$PGBIN/pg_ctl" -D "$STATE/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$STATE"
    echo "PostgreSQL on port $PORT stopped" >&2
  fi
}

# An outage: the server stops (fast shutdown: sessions are cut) and its data stays; `up` starts it again.
down() {
  [[ -d $STATE/data ]] || { echo "no PostgreSQL state in $STATE" >&2; exit 1; }
  as_pg "$PGBIN/pg_ctl" -D "$STATE/data" -m fast -w stop >/dev/null
  echo "PostgreSQL on port $PORT down (data kept in $STATE)" >&2
}

up() {
  [[ -d $STATE/data ]] || { echo "no PostgreSQL state in $STATE" >&2; exit 1; }
  as_pg "$PGBIN/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w -t 60 -o "$SERVER_OPTS" start >/dev/null
  echo "PostgreSQL on port $PORT up" >&2
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  down) down ;;
  up) up ;;
  *) echo "usage: $0 start|stop|down|up" >&2; exit 2 ;;
esac
