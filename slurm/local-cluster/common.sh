# Shared paths and helpers for the local-cluster scripts. Sourced, never run: `source common.sh`.
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this file

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Debian's Slurm tools read /etc/slurm/slurm.conf by default, so writing the configs there means `sbatch`,
# `sacct` and submitit work in any shell without SLURM_CONF.
SLURM_ETC=/etc/slurm
SLURM_CONF_FILE=$SLURM_ETC/slurm.conf
SLURMDBD_CONF_FILE=$SLURM_ETC/slurmdbd.conf
CGROUP_CONF_FILE=$SLURM_ETC/cgroup.conf
# Everything the daemons write lives under these Debian-created folders.
RUN_DIR=/run/slurm
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
MUNGE_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
MARIADB_SOCKET=/run/mysqld/mysqld.sock
SLURMDBD_PID=$RUN_DIR/slurmdbd.pid
SLURMCTLD_PID=$RUN_DIR/slurmctld.pid
# One lock for start.sh and stop.sh, so two developers (or a test and a developer) never race each other.
LOCK_FILE=/run/lock/hpci-local-slurm.lock

# The emulated node names, read from the template so the node list is written down in one place.
mapfile -t NODES < <(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$HERE/slurm.conf.in")

slurmd_pid_file() { echo "$RUN_DIR/slurmd-$1.pid"; }

# The PID in pid file $1, or nothing. Quiet when the file vanishes meanwhile (a stopping daemon removes it).
pid_of() { tr -dc '0-9' 2>/dev/null <"$1" || true; }

# pid_running PIDFILE NAME: true when the process in PIDFILE exists, is called NAME (a stale pid file may point
# at a reused PID) and is not a zombie. A stopped daemon lingers as a zombie for ~2 s here (PID 1 reaps orphans
# lazily) and `kill -0` still succeeds on a zombie, so read the state from /proc instead.
pid_running() {
    local pid stat
    if [[ -e $1 && ! -r $1 ]]; then
        # Not root: MariaDB's pid file is readable by mysql only. Any live (non-zombie) process of that name.
        stat=$(ps -C "$2" --no-headers -o stat=) || return 1
        [[ $stat =~ (^|$'\n')[^Z] ]]
        return
    fi
    pid=$(pid_of "$1")
    [[ -n $pid ]] || return 1
    # /proc/PID/stat is "pid (comm) STATE ...".
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $stat == "$pid ($2) "* ]] || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z && ${stat:0:1} != X ]]
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.1 s until it succeeds; fail after SECONDS.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "local-cluster: timed out after ${timeout}s waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "local-cluster: $(basename "$0") must run as root (it starts system daemons)" >&2
        exit 1
    fi
}
