#!/usr/bin/env bash
# Start the single-machine Slurm cluster: munged, MariaDB, slurmdbd, slurmctld and one slurmd per emulated
# node, then wait until every node is idle and sacct answers.
#
#   sudo slurm/local-cluster/start.sh        # after install.sh (or use up.sh for both)
#
# Idempotent: when the cluster is already healthy with the same configuration it returns at once; a daemon
# that is not running is started; a changed configuration restarts the Slurm daemons (they read it only at
# start). There is no systemd here, so the daemons are started directly, detached from the caller.
#
# Environment:
#   HPCI_SLURM_CGROUP=1  enforce memory requests with cgroups (jobs over --mem end OUT_OF_MEMORY). Default 1
#                        where the v1 memory controller is mounted and writable, else 0 (plain linuxproc).
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_root

for tool in munged mariadbd slurmdbd slurmctld slurmd sinfo sacct; do
    if ! command -v "$tool" >/dev/null; then
        echo "start.sh: '$tool' not found: run slurm/local-cluster/install.sh first (or up.sh)" >&2
        exit 1
    fi
done

exec 9>"$LOCK_FILE"
flock 9
started_at=$(date +%s.%N)

# ---------------------------------------------------------------------------------------------------------
# Render the configuration into a temporary folder, so it can be compared with what the daemons run with.
host=$(hostname -s)
cgroup_default=0
probe=/sys/fs/cgroup/memory/hpci_probe_$$
# The memory controller is usable when we can create a child group and set a limit in it.
if mkdir "$probe" 2>/dev/null; then
    if echo $((64 * 1024 * 1024)) >"$probe/memory.limit_in_bytes" 2>/dev/null; then cgroup_default=1; fi
    rmdir "$probe" 2>/dev/null || true
fi
cgroup=${HPCI_SLURM_CGROUP:-$cgroup_default}
if [[ $cgroup == 1 ]]; then
    # Jobs run in a memory cgroup of their size, which the kernel enforces.
    proctrack=proctrack/cgroup task_plugin=task/cgroup jobacct=jobacct_gather/cgroup
    jobacct_params="# JobAcctGatherParams: none, the memory cgroup enforces --mem"
else
    # No cgroups: processes are tracked by parent PID, memory is enforced by polling.
    proctrack=proctrack/linuxproc task_plugin=task/none jobacct=jobacct_gather/linux
    jobacct_params="JobAcctGatherParams=OverMemoryKill"
fi
db_password=hpci-local-slurm
render_dir=$(mktemp -d)
trap 'rm -rf "$render_dir"' EXIT
sed -e "s|@HOST@|$host|g" -e "s|@PROCTRACK@|$proctrack|" -e "s|@TASK_PLUGIN@|$task_plugin|" \
    -e "s|@JOBACCT_GATHER@|$jobacct|" -e "s|@JOBACCT_PARAMS@|$jobacct_params|" \
    "$HERE/slurm.conf.in" >"$render_dir/slurm.conf"
sed -e "s|@DB_PASSWORD@|$db_password|" "$HERE/slurmdbd.conf.in" >"$render_dir/slurmdbd.conf"
cp "$HERE/cgroup.conf.in" "$render_dir/cgroup.conf"

config_changed=0
for name in slurm.conf slurmdbd.conf cgroup.conf; do
    if ! cmp -s "$render_dir/$name" "$SLURM_ETC/$name"; then config_changed=1; fi
done

if [[ $config_changed == 0 ]] && line=$("$HERE/status.sh" 2>&1); then
    echo "$line"
    exit 0
fi

# ---------------------------------------------------------------------------------------------------------
# Node names must resolve: submitit reports them as hostnames and torch.distributed connects to them.
for name in "$host" "${NODES[@]}"; do
    if ! getent hosts "$name" >/dev/null; then
        echo "127.0.0.1 $name  # hpc_instruct local Slurm cluster" >>/etc/hosts
    fi
done

mkdir -p "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/slurmctld" /run/munge /var/log/munge /var/lib/munge /run/mysqld
for node in "${NODES[@]}"; do mkdir -p "$STATE_DIR/slurmd/$node"; done
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chown mysql:mysql /run/mysqld

if [[ $config_changed == 1 ]]; then
    # The Slurm daemons read their configuration only at start: stop the running ones before replacing it.
    "$HERE/stop.sh" --slurm-only --locked
    install -m 644 "$render_dir/slurm.conf" "$SLURM_CONF_FILE"
    install -m 644 "$render_dir/cgroup.conf" "$CGROUP_CONF_FILE"
    # slurmdbd refuses a config that others can read (it holds the DB password).
    install -m 600 "$render_dir/slurmdbd.conf" "$SLURMDBD_CONF_FILE"
fi

# Start a daemon detached from the caller: its own session (a Ctrl-C in pytest must not reach it), a clean
# environment (the caller's variables, e.g. a test's SLURM_* or a venv, must not leak into the cluster), and
# no inherited stdin/stdout (a caller that captures output would otherwise wait for the daemon to exit), and
# not the lock's fd 9 (a daemon holding it would block every later start.sh/stop.sh forever).
launch() {
    local log=$1
    shift
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
}

show_log_tail() { echo "--- last lines of $1 ---" >&2; tail -n 15 "$1" >&2 || true; }

# --- munge: authenticates every message between Slurm daemons and clients ---
if ! pid_running "$MUNGE_PID" munged; then
    if [[ ! -s /etc/munge/munge.key ]]; then runuser -u munge -- mungekey --create; fi
    # munged forks into the background itself; it runs as the munge user, who owns its key and folders.
    launch /var/log/munge/start.log runuser -u munge -- munged
    wait_for 10 "munged" bash -c 'munge -n | unmunge' || { show_log_tail /var/log/munge/munged.log; exit 1; }
fi

# --- MariaDB: storage for slurmdbd ---
if ! pid_running "$MARIADB_PID" mariadbd; then
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOG_DIR/mariadb-install.log" 2>&1
    fi
    # mariadbd stays in the foreground; `launch` detaches it. Loopback only. A lock wait timeout of 900 s is
    # what slurmdbd asks for (it warns at start otherwise); the log goes where the other logs are.
    launch "$LOG_DIR/mariadb.log" mariadbd --user=mysql --bind-address=127.0.0.1 \
        --socket="$MARIADB_SOCKET" --pid-file="$MARIADB_PID" --innodb-lock-wait-timeout=900 \
        --log-error="$LOG_DIR/mariadb.log"
    wait_for 60 "MariaDB" mariadb-admin --socket="$MARIADB_SOCKET" ping || { show_log_tail "$LOG_DIR/mariadb.log"; exit 1; }
fi
# root logs in through the socket without a password (unix_socket auth, Debian's default). Idempotent.
mariadb --socket="$MARIADB_SOCKET" <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$db_password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# --- slurmdbd: accounting; must be up before slurmctld so the controller registers the cluster with it ---
if ! pid_running "$SLURMDBD_PID" slurmdbd; then
    launch "$LOG_DIR/slurmdbd.start.log" slurmdbd
    wait_for 60 "slurmdbd" sacctmgr --noheader --parsable2 list cluster \
        || { show_log_tail "$LOG_DIR/slurmdbd.log"; exit 1; }
fi

# --- slurmctld: the controller ---
if ! pid_running "$SLURMCTLD_PID" slurmctld; then
    launch "$LOG_DIR/slurmctld.start.log" slurmctld
    wait_for 30 "slurmctld" scontrol ping || { show_log_tail "$LOG_DIR/slurmctld.log"; exit 1; }
fi

# --- slurmd: one per emulated node, told which node it is with -N ---
for node in "${NODES[@]}"; do
    if ! pid_running "$(slurmd_pid_file "$node")" slurmd; then
        launch "$LOG_DIR/slurmd-$node.start.log" slurmd -N "$node"
    fi
done

# A node left drained or down (e.g. a job whose processes could not be killed drains its node) would keep
# the cluster unhealthy: this is a development cluster, so return such nodes to service.
wait_for 10 "slurmctld" scontrol ping
sinfo --noheader --Node --format='%N %T' | sort -u | while read -r node state; do
    case $state in
        drain* | down | fail*) scontrol update nodename="$node" state=resume || true ;;
    esac
done

# Every node responding and idle (or running jobs that survived a restart), and sacct answering.
nodes_ready() {
    local states
    states=$(sinfo --noheader --Node --format='%N %T' | sort -u | awk '{print $2}')
    [[ $(wc -l <<<"$states") -eq ${#NODES[@]} ]] || return 1
    ! grep -qvE '^(idle|mixed|allocated|completing)$' <<<"$states"
}
wait_for 60 "all ${#NODES[@]} nodes to be idle" nodes_ready || {
    sinfo --Node >&2 || true
    show_log_tail "$LOG_DIR/slurmctld.log"
    exit 1
}
wait_for 30 "sacct" sacct --noheader -X --starttime=now || { show_log_tail "$LOG_DIR/slurmdbd.log"; exit 1; }

echo "$("$HERE/status.sh" || true) (started in $(awk -v t0="$started_at" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }') s, cgroup mode $cgroup)"
