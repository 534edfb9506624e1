#!/usr/bin/env bash
# A real single-node SLURM cluster for logitlab's sweeps (hydra/launcher=slurm), on loopback only.
#
#   scripts/slurm.sh install   # apt-get install slurm-wlm, slurmdbd, munge, mariadb-server, only if missing
#   scripts/slurm.sh start     # write the configs, start every daemon; idempotent
#   scripts/slurm.sh stop      # stop every daemon; idempotent, keeps the state
#   scripts/slurm.sh status    # say what runs; exit 0 only if the node takes jobs
#
# Daemons: munged (authentication), MariaDB + slurmdbd (accounting: `sacct` is how submitit learns that a job
# ended without a result), slurmctld (the controller) and slurmd (the one node, with this machine's CPUs and
# memory, in one partition). All state lives in ${LOGITLAB_SLURM_DIR:-<project>/.slurm} (git-ignored):
#   slurm.conf, slurmdbd.conf (0600), cluster.env (SLURM_CONF for clients), munge/ (key, socket),
#   mariadb/ (accounting database), ctld/ and spool/ (daemon state), log/ (every daemon's log), run/ (pids)
#
# Settings (environment): SLURMCTLD_PORT (6817), SLURMD_PORT (6818), SLURMDBD_PORT (6819),
# SLURM_DB_PORT (6820, MariaDB), LOGITLAB_SLURM_PARTITION (logitlab), LOGITLAB_SLURM_START_TIMEOUT (60 s).
# Needs root: slurmd starts each job as the user who submitted it. See docs/cluster.md.
set -euo pipefail
umask 077

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${LOGITLAB_SLURM_DIR:-$PROJECT_DIR/.slurm}"
[[ "$STATE_DIR" == /* ]] || STATE_DIR="$PWD/$STATE_DIR"
START_TIMEOUT="${LOGITLAB_SLURM_START_TIMEOUT:-60}"

SLURM_CONF_FILE="$STATE_DIR/slurm.conf"
DBD_CONF_FILE="$STATE_DIR/slurmdbd.conf"
CLUSTER_ENV="$STATE_DIR/cluster.env"
SETTINGS="$STATE_DIR/settings.env"
CRED_FILE="$STATE_DIR/credentials.env"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_KEY="$MUNGE_DIR/munge.key"
MUNGE_SOCKET="$MUNGE_DIR/munged.socket"
DB_DIR="$STATE_DIR/mariadb"
DB_DATA="$DB_DIR/data"
DB_SOCKET="$DB_DIR/mariadb.sock"
LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"
CLUSTER_NAME=logitlab
DB_NAME=slurm_acct_db
DB_USER=slurm

export SLURM_CONF="$SLURM_CONF_FILE"

die() { echo "slurm.sh: error: $*" >&2; exit 1; }
info() { echo "slurm.sh: $*"; }

# ---------------------------------------------------------------- settings
# Ports of a running cluster win over the environment for stop/status (as scripts/server.sh does).
load_settings() {
    local use_saved="$1" key val
    if [[ "$use_saved" == 1 && -f "$SETTINGS" ]]; then
        while IFS='=' read -r key val; do
            case "$key" in
                SLURMCTLD_PORT) SLURMCTLD_PORT="$val" ;;
                SLURMD_PORT) SLURMD_PORT="$val" ;;
                SLURMDBD_PORT) SLURMDBD_PORT="$val" ;;
                SLURM_DB_PORT) SLURM_DB_PORT="$val" ;;
                PARTITION) PARTITION="$val" ;;
            esac
        done <"$SETTINGS"
    fi
    SLURMCTLD_PORT="${SLURMCTLD_PORT:-6817}"
    SLURMD_PORT="${SLURMD_PORT:-6818}"
    SLURMDBD_PORT="${SLURMDBD_PORT:-6819}"
    SLURM_DB_PORT="${SLURM_DB_PORT:-6820}"
    PARTITION="${PARTITION:-${LOGITLAB_SLURM_PARTITION:-logitlab}}"
    local port
    for port in "$SLURMCTLD_PORT" "$SLURMD_PORT" "$SLURMDBD_PORT" "$SLURM_DB_PORT"; do
        [[ "$port" =~ ^[0-9]+$ ]] || die "ports must be numbers, got '$port'"
    done
    [[ "$PARTITION" =~ ^[A-Za-z0-9_-]+$ ]] || die "LOGITLAB_SLURM_PARTITION may only hold letters, digits, _ and -"
    NODE_NAME="$(hostname -s)"
    # The daemons bind to the address this host name resolves to (CommunicationParameters=NoInAddrAny):
    # it must be a loopback address, so that nothing listens on the network.
    NODE_ADDR="$(getent ahostsv4 "$NODE_NAME" | awk 'NR == 1 {print $1}')"
}

require_loopback() {
    [[ "$NODE_ADDR" == 127.* ]] || die "host name '$NODE_NAME' resolves to '${NODE_ADDR:-nothing}', not a loopback address; the daemons bind to it, so map it to 127.0.1.1 in /etc/hosts for a cluster that stays on this machine"
}

# ---------------------------------------------------------------- packages
MISSING=()
find_missing() {
    MISSING=()
    local cmd
    for cmd in slurmctld slurmd sbatch sacct slurmdbd munged mungekey mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || MISSING+=("$cmd")
    done
}

cmd_install() {
    find_missing
    if (( ${#MISSING[@]} == 0 )); then
        info "SLURM, munge and MariaDB found ($(slurmctld -V))"
        return 0
    fi
    info "missing: ${MISSING[*]}; installing them from Debian's packages"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install slurm-wlm (22.05), slurmdbd, munge and mariadb-server yourself"
    local SUDO=""
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "installing packages needs root or sudo"
        SUDO=sudo
    fi
    $SUDO apt-get update -q
    # The packages' own services stay unused (where they start at all): ours run from $STATE_DIR on other ports.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        slurm-wlm slurmdbd munge mariadb-server mariadb-client
    find_missing
    (( ${#MISSING[@]} == 0 )) || die "apt-get ran but these are still missing: ${MISSING[*]}"
    info "installed $(slurmctld -V)"
}

# ---------------------------------------------------------------- processes
pid_of() {  # pid_of NAME -> pid of our daemon NAME if it runs (pid file + the process is that program)
    local file="$RUN_DIR/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$1" || return 1  # guard against pid reuse
    echo "$pid"
}

stop_daemon() {  # stop_daemon NAME: SIGTERM, wait up to 15 s, then SIGKILL
    local pid _
    pid="$(pid_of "$1")" || { rm -f "$RUN_DIR/$1.pid"; return 0; }
    info "stopping $1 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        info "$1 did not stop within 15 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$1.pid"
}

wait_until() {  # wait_until WHAT COMMAND...: poll once a second, at most START_TIMEOUT seconds
    local what="$1" deadline=$((SECONDS + START_TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || die "$what did not come up within ${START_TIMEOUT}s; see $LOG_DIR"
        sleep 1
    done
}

port_busy() { (exec 3<>"/dev/tcp/$2/$1") 2>/dev/null; }

check_port_free() {  # check_port_free NAME PORT [ADDR]: refuse to start NAME on a port something else holds
    ! port_busy "$2" "${3:-$NODE_ADDR}" || die "port ${3:-$NODE_ADDR}:$2 for $1 is in use by another process; set the port (see the header of $0)"
}

# ---------------------------------------------------------------- credentials
random_secret() { od -An -tx1 -N"${1:-24}" /dev/urandom | tr -d ' \n'; }

db_password() {  # generated once, kept in credentials.env (0600)
    if [[ ! -f "$CRED_FILE" ]]; then
        printf '# accounting database password, generated by scripts/slurm.sh (private, git-ignored)\nSLURM_DB_PASSWORD=%s\n' \
            "$(random_secret 24)" >"$CRED_FILE.tmp.$$"
        mv -f "$CRED_FILE.tmp.$$" "$CRED_FILE"
    fi
    chmod 600 "$CRED_FILE"
    sed -n 's/^SLURM_DB_PASSWORD=//p' "$CRED_FILE"
}

# ---------------------------------------------------------------- configs
write_atomic() {  # write_atomic FILE MODE < content
    local tmp="$1.tmp.$$"
    cat >"$tmp"
    chmod "$2" "$tmp"
    mv -f "$tmp" "$1"
}

node_hardware() {  # this machine as slurmd sees it: "CPUs=2 Boards=1 ... RealMemory=23000"
    local line
    line="$(slurmd -C 2>/dev/null | head -n1)" || die "slurmd -C failed: cannot read this machine's CPUs and memory"
    line="${line#NodeName=* }"
    [[ "$line" == CPUs=* ]] || die "unexpected output of slurmd -C: $line"
    echo "$line"
}

write_configs() {
    local password="$1"
    write_atomic "$SLURM_CONF_FILE" 644 <<EOF
# generated by scripts/slurm.sh on every start - edit the script, not this file
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE_NAME($NODE_ADDR)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
# every daemon binds to the host name's loopback address, never to every interface
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: the node may itself be a container
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
# memory is a consumable resource, so hydra.launcher.mem_gb is enforced at scheduling
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
# accounting (sacct) through slurmdbd
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE_ADDR
AccountingStoragePort=$SLURMDBD_PORT
# for slurmdbd connections the munge socket is named here, not in AuthInfo
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
# a finished job stays visible to scontrol/squeue for 5 minutes
MinJobAge=300
KillWait=10
NodeName=$NODE_NAME NodeAddr=$NODE_ADDR NodeHostname=$NODE_NAME $(node_hardware) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE_NAME Default=YES MaxTime=INFINITE State=UP
EOF
    # slurmdbd refuses a config readable by others: it holds the database password
    write_atomic "$DBD_CONF_FILE" 600 <<EOF
# generated by scripts/slurm.sh on every start - edit the script, not this file
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$NODE_NAME
DbdAddr=$NODE_ADDR
DbdPort=$SLURMDBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$SLURM_DB_PORT
StorageUser=$DB_USER
StoragePass=$password
StorageLoc=$DB_NAME
EOF
    write_atomic "$CLUSTER_ENV" 644 <<EOF
# source this file (or export the line) to use the cluster: sbatch, squeue, sinfo, sacct and the sweeps
export SLURM_CONF=$SLURM_CONF_FILE
EOF
    write_atomic "$SETTINGS" 644 <<EOF
SLURMCTLD_PORT=$SLURMCTLD_PORT
SLURMD_PORT=$SLURMD_PORT
SLURMDBD_PORT=$SLURMDBD_PORT
SLURM_DB_PORT=$SLURM_DB_PORT
PARTITION=$PARTITION
EOF
}

# ---------------------------------------------------------------- daemons
start_munge() {
    if pid_of munged >/dev/null; then return 0; fi
    if [[ ! -f "$MUNGE_KEY" ]]; then
        mungekey --create --keyfile="$MUNGE_KEY" >/dev/null || die "mungekey could not create $MUNGE_KEY"
    fi
    chmod 400 "$MUNGE_KEY"
    info "starting munged"
    # --force: munged runs as root here, which it otherwise refuses
    munged --force --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$RUN_DIR/munged.pid" \
        --log-file="$LOG_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
        || die "munged did not start; see $LOG_DIR/munged.log"
    wait_until munged munge --socket="$MUNGE_SOCKET" -n
}

db_sql() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }

start_mariadb() {
    local password="$1"
    if ! pid_of mariadbd >/dev/null; then
        check_port_free MariaDB "$SLURM_DB_PORT" 127.0.0.1
        if [[ ! -d "$DB_DATA/mysql" ]]; then
            info "initialising the accounting database in $DB_DATA"
            mariadb-install-db --no-defaults --user=root --datadir="$DB_DATA" --skip-test-db \
                --auth-root-authentication-method=socket >"$LOG_DIR/mariadb-install.log" 2>&1 \
                || die "mariadb-install-db failed; see $LOG_DIR/mariadb-install.log"
        fi
        info "starting MariaDB on 127.0.0.1:$SLURM_DB_PORT"
        # --user=root: the accounting database belongs to this root-run cluster and its state directory
        setsid mariadbd --no-defaults --user=root --datadir="$DB_DATA" --socket="$DB_SOCKET" \
            --bind-address=127.0.0.1 --port="$SLURM_DB_PORT" --pid-file="$RUN_DIR/mariadbd.pid" \
            --log-error="$LOG_DIR/mariadb.log" --innodb-lock-wait-timeout=900 --skip-name-resolve \
            </dev/null >/dev/null 2>&1 &
        wait_until MariaDB db_sql -e "SELECT 1"
    fi
    local sql_pw="${password//\'/\'\'}"
    db_sql <<SQL || die "could not create the accounting database user; see $LOG_DIR/mariadb.log"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$sql_pw';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$sql_pw';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
SQL
}

start_slurmdbd() {
    if ! pid_of slurmdbd >/dev/null; then
        check_port_free slurmdbd "$SLURMDBD_PORT"
        info "starting slurmdbd on $NODE_ADDR:$SLURMDBD_PORT"
        slurmdbd || die "slurmdbd did not start; see $LOG_DIR/slurmdbd.log"
    fi
    wait_until slurmdbd sacctmgr -n list cluster
    if [[ -z "$(sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster)" ]]; then
        sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null || die "sacctmgr could not add cluster $CLUSTER_NAME"
    fi
}

start_slurmctld() {
    if pid_of slurmctld >/dev/null; then
        scontrol reconfigure >/dev/null 2>&1 || true  # the config was just rewritten
        return 0
    fi
    check_port_free slurmctld "$SLURMCTLD_PORT"
    info "starting slurmctld on $NODE_ADDR:$SLURMCTLD_PORT"
    slurmctld || die "slurmctld did not start; see $LOG_DIR/slurmctld.log"
    wait_until slurmctld scontrol ping
}

node_state() { sinfo -h -n "$NODE_NAME" -o %T 2>/dev/null | head -n1; }

node_takes_jobs() { [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing) ]]; }

start_slurmd() {
    if ! pid_of slurmd >/dev/null; then
        check_port_free slurmd "$SLURMD_PORT"
        info "starting slurmd for node $NODE_NAME"
        slurmd -N "$NODE_NAME" || die "slurmd did not start; see $LOG_DIR/slurmd.log"
    fi
    # a node that went down with its daemons (a machine restart) comes back with them
    if [[ "$(node_state)" =~ ^(down|drain) ]]; then
        scontrol update nodename="$NODE_NAME" state=resume >/dev/null 2>&1 || true
    fi
    wait_until "node $NODE_NAME" node_takes_jobs
}

# ---------------------------------------------------------------- commands
require_root() {
    [[ "$(id -u)" == 0 ]] || die "run it as root (sudo $0 $1): slurmd starts each job as the user who submitted it"
}

cmd_start() {
    require_root start
    load_settings 0
    require_loopback
    if [[ -f "$SETTINGS" ]] && pid_of slurmctld >/dev/null; then
        load_settings 1  # already running: keep its ports, the environment may differ
    fi
    cmd_install >/dev/null
    mkdir -p "$STATE_DIR" "$MUNGE_DIR" "$DB_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/ctld" "$STATE_DIR/spool"
    chmod 711 "$MUNGE_DIR"  # clients reach the socket; the key itself is 0400
    chmod 700 "$DB_DIR"
    chmod 755 "$STATE_DIR"  # clients read slurm.conf
    local password
    password="$(db_password)"
    write_configs "$password"
    start_munge
    start_mariadb "$password"
    start_slurmdbd
    start_slurmctld
    start_slurmd
    cat <<EOF
slurm.sh: SLURM cluster '$CLUSTER_NAME' is up: node $NODE_NAME ($(node_hardware | grep -oE 'CPUs=[0-9]+|RealMemory=[0-9]+' | tr '\n' ' ')MB), partition '$PARTITION'
  state: $STATE_DIR
Sweeps find it in any shell:
  python -m logitlab.sweep -m hydra/launcher=slurm model.C=0.1,1,10
SLURM's own commands (sinfo, squeue, sacct) need:
  export SLURM_CONF=$SLURM_CONF_FILE
EOF
}

cmd_stop() {
    load_settings 1
    # jobs first, while the controller can still end them
    if pid_of slurmctld >/dev/null; then scancel --full --partition="$PARTITION" >/dev/null 2>&1 || true; fi
    local name
    for name in slurmd slurmctld slurmdbd mariadbd munged; do stop_daemon "$name"; done
    info "stopped"
}

cmd_status() {
    load_settings 1
    local rc=0 name pid
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid="$(pid_of "$name")"; then
            echo "$name: running (pid $pid)"
        else
            echo "$name: stopped"; rc=1
        fi
    done
    if (( rc == 0 )) && node_takes_jobs; then
        echo "node $NODE_NAME: $(node_state) in partition '$PARTITION' (SLURM_CONF=$SLURM_CONF_FILE)"
    else
        echo "node $NODE_NAME: not taking jobs"; rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart) cmd_stop; cmd_start ;;
    *) echo "usage: $0 {install|start|stop|status|restart}" >&2; exit 2 ;;
esac
