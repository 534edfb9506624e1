#!/usr/bin/env bash
# Shared MLflow tracking server for logitlab: PostgreSQL backend + served artifact
# store + MLflow basic authentication, bound to 127.0.0.1 by default.
#
#   scripts/server.sh install   # apt-get install postgresql, only if it is missing
#   scripts/server.sh start     # init (once) + start PostgreSQL and MLflow; idempotent
#   scripts/server.sh stop      # stop MLflow, then PostgreSQL; idempotent
#   scripts/server.sh status    # say what runs; exit 0 only if both run
#   scripts/server.sh restart-db  # restart only PostgreSQL (MLflow stays up; clients retry meanwhile)
#
# All state lives in ${LOGITLAB_SERVER_DIR:-<project>/.server} (git-ignored):
#   credentials.env   admin + database passwords (mode 0600, generated if absent)
#   basic_auth.ini    generated MLflow auth config (mode 0600)
#   postgres/data     the PostgreSQL cluster; postgres/run its socket; postgres/postgres.log
#   artifacts/        artifact store served through the tracking server
#   mlflow.pid, mlflow.log, server.env (settings of the running server)
#
# Settings (environment): PG_PORT (5433), MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5001),
# MLFLOW_WORKERS (2), LOGITLAB_SERVER_ADMIN_USER / LOGITLAB_SERVER_ADMIN_PASSWORD
# (override credentials.env), LOGITLAB_SERVER_AUTH_CACHE_TTL (60 s; 0 = off),
# LOGITLAB_SERVER_START_TIMEOUT (90 s), PG_BIN (postgres bin dir),
# LOGITLAB_PYTHON (python with mlflow; default <project>/.venv/bin/python).
# See docs/server.md.
set -euo pipefail
umask 077

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${LOGITLAB_SERVER_DIR:-$PROJECT_DIR/.server}"
[[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
PYTHON="${LOGITLAB_PYTHON:-$PROJECT_DIR/.venv/bin/python}"
START_TIMEOUT="${LOGITLAB_SERVER_START_TIMEOUT:-90}"

CRED_FILE="$STATE_DIR/credentials.env"
AUTH_INI="$STATE_DIR/basic_auth.ini"
PG_DIR="$STATE_DIR/postgres"
PGDATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$PG_DIR/postgres.log"
ARTIFACTS="$STATE_DIR/artifacts"
MLFLOW_PID="$STATE_DIR/mlflow.pid"
MLFLOW_LOG="$STATE_DIR/mlflow.log"
SETTINGS="$STATE_DIR/server.env"

DB_USER=mlflow
DB_NAME=mlflow
AUTH_DB_NAME=mlflow_auth

export DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1

die() { echo "server.sh: error: $*" >&2; exit 1; }
info() { echo "server.sh: $*"; }

# ---------------------------------------------------------------- settings
# Settings of a running server win over the environment for stop/status, so
# `status` after `PG_PORT=6000 start` still looks at the right ports.
load_settings() {
    local use_saved="$1" key val
    if [[ "$use_saved" == 1 && -f "$SETTINGS" ]]; then
        while IFS='=' read -r key val; do
            case "$key" in
                PG_PORT) PG_PORT="$val" ;;
                MLFLOW_HOST) MLFLOW_HOST="$val" ;;
                MLFLOW_PORT) MLFLOW_PORT="$val" ;;
            esac
        done <"$SETTINGS"
    fi
    PG_PORT="${PG_PORT:-5433}"
    MLFLOW_HOST="${MLFLOW_HOST:-127.0.0.1}"
    MLFLOW_PORT="${MLFLOW_PORT:-5001}"
    MLFLOW_WORKERS="${MLFLOW_WORKERS:-2}"
    AUTH_CACHE_TTL="${LOGITLAB_SERVER_AUTH_CACHE_TTL:-60}"
    [[ "$AUTH_CACHE_TTL" =~ ^[0-9]+$ ]] || die "LOGITLAB_SERVER_AUTH_CACHE_TTL must be a number of seconds"
    [[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "PG_PORT must be a number, got '$PG_PORT'"
    [[ "$MLFLOW_PORT" =~ ^[0-9]+$ ]] || die "MLFLOW_PORT must be a number, got '$MLFLOW_PORT'"
    URL_HOST="$MLFLOW_HOST"
    [[ "$URL_HOST" == "0.0.0.0" ]] && URL_HOST=127.0.0.1
    TRACKING_URI="http://$URL_HOST:$MLFLOW_PORT"
}

# ---------------------------------------------------------------- postgres binaries
find_pg_bin() {
    local d best=""
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" ]] || die "PG_BIN=$PG_BIN has no initdb/pg_ctl"
        echo "$PG_BIN"; return 0
    fi
    # Debian layout: /usr/lib/postgresql/<major>/bin; take the newest major.
    while IFS= read -r d; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] && best="$d"
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
    if [[ -z "$best" ]] && command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]] && best="$d"
    fi
    if [[ -z "$best" ]] && command -v initdb >/dev/null 2>&1; then
        # e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb; resolve the
        # symlink so pg_ctl finds the postgres binary next to it. A non-ELF wrapper
        # script (like Debian's pg_wrapper for psql) is not accepted here.
        d="$(dirname "$(readlink -f "$(command -v initdb)")")"
        [[ -x "$d/pg_ctl" && -x "$d/postgres" ]] && best="$d"
    fi
    [[ -n "$best" ]] || return 1
    echo "$best"
}

cmd_install() {
    local bin
    if bin="$(find_pg_bin)"; then
        info "PostgreSQL binaries found in $bin ($("$bin/postgres" --version))"
        return 0
    fi
    info "PostgreSQL not found; installing it with apt-get"
    local SUDO=""
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "PostgreSQL is missing and we are not root (no sudo): install the 'postgresql' package"
        SUDO=sudo
    fi
    # Do not let the Debian package create and start its own 'main' cluster on 5432:
    # this project runs its own cluster under $STATE_DIR.
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/logitlab-no-main.conf >/dev/null
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql
    bin="$(find_pg_bin)" || die "apt-get installed postgresql but no binaries were found under /usr/lib/postgresql/*/bin"
    info "PostgreSQL installed in $bin"
}

# Run a command as the PostgreSQL OS user: root cannot run postgres/initdb, so as root
# we use the 'postgres' system user (created by the Debian package); otherwise the
# invoking user owns the cluster.
if [[ "$(id -u)" == 0 ]]; then
    PG_OS_USER=postgres
    as_pg() { runuser -u postgres -- "$@"; }
else
    PG_OS_USER="$(id -un)"
    as_pg() { "$@"; }
fi

# ---------------------------------------------------------------- credentials
random_secret() { od -An -tx1 -N"${1:-24}" /dev/urandom | tr -d ' \n'; }

read_cred() {  # read_cred KEY -> value from credentials.env ('' if absent)
    local key val
    [[ -f "$CRED_FILE" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ "$line" =~ ^[[:space:]]*# || "$line" != *=* ]] && continue
        key="${line%%=*}"; val="${line#*=}"
        if [[ "$key" == "$1" ]]; then printf '%s' "$val"; return 0; fi
    done <"$CRED_FILE"
}

load_credentials() {
    mkdir -p "$STATE_DIR"
    local f_user f_pass f_db f_secret
    f_user="$(read_cred LOGITLAB_SERVER_ADMIN_USER)"
    f_pass="$(read_cred LOGITLAB_SERVER_ADMIN_PASSWORD)"
    f_db="$(read_cred LOGITLAB_SERVER_DB_PASSWORD)"
    f_secret="$(read_cred LOGITLAB_SERVER_SECRET_KEY)"
    local changed=0
    [[ -n "$f_user" ]] || { f_user="admin"; changed=1; }
    [[ -n "$f_pass" ]] || { f_pass="$(random_secret 18)"; changed=1; }
    [[ -n "$f_db" ]] || { f_db="$(random_secret 24)"; changed=1; }
    [[ -n "$f_secret" ]] || { f_secret="$(random_secret 32)"; changed=1; }
    if [[ "$changed" == 1 ]]; then
        local tmp="$CRED_FILE.tmp.$$"
        (
            umask 077
            {
                echo "# logitlab MLflow server credentials - generated by scripts/server.sh."
                echo "# Private: git-ignored, mode 0600. Environment variables of the same name win."
                echo "LOGITLAB_SERVER_ADMIN_USER=$f_user"
                echo "LOGITLAB_SERVER_ADMIN_PASSWORD=$f_pass"
                echo "LOGITLAB_SERVER_DB_PASSWORD=$f_db"
                echo "LOGITLAB_SERVER_SECRET_KEY=$f_secret"
            } >"$tmp"
        )
        mv -f "$tmp" "$CRED_FILE"
        info "wrote credentials to $CRED_FILE"
    fi
    chmod 600 "$CRED_FILE"
    ADMIN_USER="${LOGITLAB_SERVER_ADMIN_USER:-$f_user}"
    ADMIN_PASSWORD="${LOGITLAB_SERVER_ADMIN_PASSWORD:-$f_pass}"
    DB_PASSWORD="$f_db"
    SECRET_KEY="$f_secret"
    [[ "$ADMIN_PASSWORD" != "password1234" ]] || die "refusing the insecure stock admin password 'password1234'; set another LOGITLAB_SERVER_ADMIN_PASSWORD"
    (( ${#ADMIN_PASSWORD} >= 12 )) || die "the admin password must be at least 12 characters (MLflow's policy)"
    [[ "$ADMIN_USER" =~ ^[A-Za-z0-9_.@-]+$ ]] || die "LOGITLAB_SERVER_ADMIN_USER may only contain letters, digits and _.@-"
    # psycopg2 named: SQLAlchemy 2.1 takes `postgresql://` to mean psycopg 3, which the project does not install.
    BACKEND_URI="postgresql+psycopg2://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"
    AUTH_DB_URI="postgresql+psycopg2://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$AUTH_DB_NAME"
}

# ---------------------------------------------------------------- postgres
pg_running() {
    [[ -f "$PGDATA/PG_VERSION" ]] || return 1
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

port_busy() {  # port_busy PORT -> 0 if something listens on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

psql_super() {  # psql_super DB SQL...
    local db="$1"; shift
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -d "$db" "$@"
}

start_postgres() {
    mkdir -p "$STATE_DIR"
    chmod 711 "$STATE_DIR"   # the postgres OS user must be able to traverse into it
    if [[ "$(id -u)" == 0 ]]; then
        # Every parent directory must be traversable by the postgres OS user.
        runuser -u postgres -- test -x "$STATE_DIR" \
            || die "the 'postgres' OS user cannot reach $STATE_DIR (a parent directory is not world-executable); set LOGITLAB_SERVER_DIR to a path it can traverse"
    fi
    # a Unix socket path is limited to ~107 bytes: $PG_SOCK/.s.PGSQL.<port>
    (( ${#PG_SOCK} <= 90 )) || die "state dir path too long for a PostgreSQL socket ($PG_SOCK); use a shorter LOGITLAB_SERVER_DIR"
    mkdir -p "$PG_DIR" "$PG_SOCK"
    if [[ "$(id -u)" == 0 ]]; then chown "$PG_OS_USER": "$PG_DIR" "$PG_SOCK"; fi
    chmod 700 "$PG_DIR" "$PG_SOCK"

    if [[ ! -f "$PGDATA/PG_VERSION" ]]; then
        info "initialising PostgreSQL cluster in $PGDATA"
        as_pg mkdir -p "$PGDATA"
        as_pg "$PGBIN/initdb" -D "$PGDATA" --encoding=UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 \
            || { as_pg "$PGBIN/initdb" -D "$PGDATA" --encoding=UTF8 --locale=C \
                    --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 \
                 || die "initdb failed, see $PG_DIR/initdb.log"; }
    fi

    if pg_running; then
        info "PostgreSQL already running ($PGDATA)"
    else
        if port_busy "$PG_PORT"; then
            die "port 127.0.0.1:$PG_PORT is already in use by another process; set PG_PORT to a free port"
        fi
        info "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        # listen only on loopback TCP + our own socket dir (not /var/run/postgresql)
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_SOCK -c password_encryption=scram-sha-256" \
            start >/dev/null || die "PostgreSQL did not start, see $PG_LOG"
    fi

    # role + databases (idempotent); password always re-set from credentials.env
    local sql_pw="${DB_PASSWORD//\'/\'\'}"
    psql_super postgres >/dev/null <<SQL
SELECT 'CREATE ROLE $DB_USER LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') \gexec
ALTER ROLE $DB_USER WITH LOGIN PASSWORD '$sql_pw';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME') \gexec
SELECT 'CREATE DATABASE $AUTH_DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$AUTH_DB_NAME') \gexec
SQL
}

stop_postgres() {
    if pg_running; then
        info "stopping PostgreSQL"
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null \
            || die "PostgreSQL did not stop, see $PG_LOG"
    fi
}

# ---------------------------------------------------------------- mlflow
mlflow_pid() {  # prints the pid if our mlflow server runs
    local pid
    [[ -f "$MLFLOW_PID" ]] || return 1
    pid="$(cat "$MLFLOW_PID" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # guard against pid reuse: the process must be an mlflow server
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "mlflow.* server" || return 1
    echo "$pid"
}

health_ok() {
    local url="http://$URL_HOST:$MLFLOW_PORT/health"
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 3 "$url" >/dev/null 2>&1
    else
        "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' \
            "$url" >/dev/null 2>&1
    fi
}

write_auth_ini() {
    local tmp="$AUTH_INI.tmp.$$"
    {
        echo "# generated by scripts/server.sh - do not edit, it is rewritten on every start"
        echo "[mlflow]"
        echo "default_permission = READ"
        echo "database_uri = $AUTH_DB_URI"
        echo "admin_username = $ADMIN_USER"
        echo "# admin_password is passed in MLFLOW_AUTH_ADMIN_PASSWORD, never written here"
        echo "authorization_function = mlflow.server.auth:authenticate_request_basic_auth"
        echo "grant_default_workspace_access = false"
        echo "# seconds a verified password stays cached per worker (0 = off; MLflow default is 0)"
        echo "auth_cache_ttl_seconds = $AUTH_CACHE_TTL"
    } >"$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$AUTH_INI"
}

# Make the stored admin user match the configured password: MLflow only uses
# admin_password when it creates the admin user, so rotating it in credentials.env or
# LOGITLAB_SERVER_ADMIN_PASSWORD would otherwise be silently ignored.
sync_admin_user() {
    AUTH_DB_URI="$AUTH_DB_URI" ADMIN_USER="$ADMIN_USER" ADMIN_PASSWORD="$ADMIN_PASSWORD" \
        "$PYTHON" - >>"$MLFLOW_LOG" 2>&1 <<'PY' || die "could not prepare the auth database, see $MLFLOW_LOG"
import logging, os
logging.basicConfig(level=logging.WARNING)
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

store = SqlAlchemyStore()
store.init_db(os.environ["AUTH_DB_URI"])  # creates/migrates the auth tables
user, password = os.environ["ADMIN_USER"], os.environ["ADMIN_PASSWORD"]
if not store.has_user(user, use_primary=True):
    store.create_user(user, password, is_admin=True)
    print(f"server.sh: created MLflow admin user {user!r}")
else:
    if not store.authenticate_user(user, password, use_primary=True):
        store.update_user(user, password=password)
        print(f"server.sh: reset the password of MLflow admin user {user!r} from the configured one")
    if not store.get_user(user).is_admin:
        store.update_user(user, is_admin=True)
        print(f"server.sh: made {user!r} an admin again")
PY
}

start_mlflow() {
    local pid
    if pid="$(mlflow_pid)"; then
        if health_ok; then
            info "MLflow already running (pid $pid)"
            return 0
        fi
        info "MLflow (pid $pid) runs but does not answer /health; restarting it"
        stop_mlflow
    fi
    if port_busy "$MLFLOW_PORT"; then
        die "port $URL_HOST:$MLFLOW_PORT is already in use by another process; set MLFLOW_PORT to a free port"
    fi
    [[ -x "$PYTHON" ]] || die "no python at $PYTHON (run 'uv sync' or set LOGITLAB_PYTHON)"
    mkdir -p "$ARTIFACTS"
    : >"$MLFLOW_LOG"
    chmod 600 "$MLFLOW_LOG"
    write_auth_ini
    sync_admin_user

    info "starting MLflow on $TRACKING_URI (log: $MLFLOW_LOG)"
    # setsid: own process group, so stop can end the server and its workers together.
    # The backend URI (it holds the DB password) goes in the environment, not argv, so
    # `ps` does not show it to other local users.
    MLFLOW_AUTH_CONFIG_PATH="$AUTH_INI" \
    MLFLOW_AUTH_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    MLFLOW_FLASK_SERVER_SECRET_KEY="$SECRET_KEY" \
    MLFLOW_BACKEND_STORE_URI="$BACKEND_URI" \
        setsid "$PYTHON" -m mlflow server \
            --artifacts-destination "$ARTIFACTS" \
            --serve-artifacts \
            --host "$MLFLOW_HOST" \
            --port "$MLFLOW_PORT" \
            --workers "$MLFLOW_WORKERS" \
            --app-name basic-auth \
            </dev/null >>"$MLFLOW_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$MLFLOW_PID"

    local deadline=$((SECONDS + START_TIMEOUT))
    until health_ok; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$MLFLOW_PID"
            die "MLflow server exited during startup; see $MLFLOW_LOG"
        fi
        if (( SECONDS >= deadline )); then
            stop_mlflow >/dev/null 2>&1 || true
            die "MLflow server did not answer $TRACKING_URI/health within ${START_TIMEOUT}s; see $MLFLOW_LOG"
        fi
        sleep 1
    done
}

stop_mlflow() {
    local pid
    if ! pid="$(mlflow_pid)"; then
        rm -f "$MLFLOW_PID"
        return 0
    fi
    info "stopping MLflow (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        info "MLflow did not stop within 15s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # workers left in the process group (if the leader died first)
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$MLFLOW_PID"
}

# ---------------------------------------------------------------- commands
cmd_start() {
    load_settings 0
    cmd_install >/dev/null
    PGBIN="$(find_pg_bin)" || die "PostgreSQL binaries not found"
    if [[ -f "$SETTINGS" ]] && { pg_running || mlflow_pid >/dev/null; }; then
        # already running: keep its ports, the environment may differ
        load_settings 1
    fi
    load_credentials
    start_postgres
    start_mlflow
    {
        echo "PG_PORT=$PG_PORT"
        echo "MLFLOW_HOST=$MLFLOW_HOST"
        echo "MLFLOW_PORT=$MLFLOW_PORT"
        echo "MLFLOW_TRACKING_URI=$TRACKING_URI"
    } >"$SETTINGS"
    cat <<EOF
server.sh: MLflow tracking server is up: $TRACKING_URI
  backend:   PostgreSQL 127.0.0.1:$PG_PORT (data $PGDATA)
  artifacts: $ARTIFACTS (served through the tracking server)
  admin:     user '$ADMIN_USER', password in $CRED_FILE (or LOGITLAB_SERVER_ADMIN_PASSWORD)
To use it from this shell:
  export MLFLOW_TRACKING_URI=$TRACKING_URI
  export MLFLOW_TRACKING_USERNAME=$ADMIN_USER
  export MLFLOW_TRACKING_PASSWORD="\$(sed -n 's/^LOGITLAB_SERVER_ADMIN_PASSWORD=//p' '$CRED_FILE')"
EOF
}

cmd_stop() {
    load_settings 1
    PGBIN="$(find_pg_bin)" || PGBIN=""
    stop_mlflow
    if [[ -n "$PGBIN" ]]; then stop_postgres; fi
    info "stopped"
}

# Restart only PostgreSQL (a configuration change, a minor upgrade): the MLflow server stays up and answers
# 5xx while its database is away, which clients retry through; nothing is lost.
cmd_restart_db() {
    load_settings 1
    PGBIN="$(find_pg_bin)" || die "PostgreSQL binaries not found"
    [[ -f "$PGDATA/PG_VERSION" ]] || die "no PostgreSQL cluster in $PGDATA; run: scripts/server.sh start"
    load_credentials
    stop_postgres
    start_postgres
    info "PostgreSQL restarted on 127.0.0.1:$PG_PORT; MLflow kept running"
}

cmd_status() {
    load_settings 1
    local rc=0 pid
    PGBIN="$(find_pg_bin)" || PGBIN=""
    if [[ -z "$PGBIN" ]]; then
        echo "postgres: not installed (run: scripts/server.sh install)"; rc=1
    elif pg_running; then
        echo "postgres: running on 127.0.0.1:$PG_PORT (data $PGDATA)"
    elif [[ -f "$PGDATA/PG_VERSION" ]]; then
        echo "postgres: stopped (data $PGDATA)"; rc=1
    else
        echo "postgres: not initialised (no $PGDATA)"; rc=1
    fi
    if pid="$(mlflow_pid)"; then
        if health_ok; then
            echo "mlflow:   running (pid $pid) at $TRACKING_URI, healthy"
        else
            echo "mlflow:   running (pid $pid) at $TRACKING_URI, NOT answering /health (log $MLFLOW_LOG)"; rc=1
        fi
    else
        echo "mlflow:   stopped"; rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart) cmd_stop; cmd_start ;;
    restart-db) cmd_restart_db ;;
    *) echo "usage: $0 {install|start|stop|status|restart|restart-db}" >&2; exit 2 ;;
esac
