#!/usr/bin/env bash
# Stop the local Slurm cluster: slurmd nodes and slurmctld, then slurmdbd, MariaDB and munged.
#
#   sudo slurm/local-cluster/stop.sh
#
# Jobs that are running keep running (their slurmstepd processes are not daemons of the cluster, as on any
# Slurm cluster) and are picked up again by start.sh; cancel them first (`scancel --user=$USER`) for a
# machine with nothing left over. Job and accounting state is kept on disk.
#
# Options (for start.sh): --slurm-only stops only the Slurm daemons (not MariaDB, munged);
#                         --locked means the caller holds the cluster lock already.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
require_root

slurm_only=0
locked=0
for arg in "$@"; do
    case $arg in
        --slurm-only) slurm_only=1 ;;
        --locked) locked=1 ;;
        *) echo "stop.sh: unknown option '$arg' (valid: --slurm-only, --locked)" >&2; exit 2 ;;
    esac
done
if [[ $locked == 0 ]]; then
    exec 9>"$LOCK_FILE"
    flock 9
fi

# stop_group WHAT COMM:PIDFILE...: SIGTERM every running daemon of the group, wait until none runs (a zombie
# counts as stopped: it lingers ~2 s until PID 1 reaps it), SIGKILL what is left after 30 s.
stop_group() {
    local what=$1 daemon running=()
    shift
    for daemon in "$@"; do
        if pid_running "${daemon#*:}" "${daemon%%:*}"; then
            running+=("$daemon")
            kill -TERM "$(pid_of "${daemon#*:}")" 2>/dev/null || true
        fi
    done
    [[ ${#running[@]} -gt 0 ]] || return 0
    any_running() {
        for daemon in "${running[@]}"; do pid_running "${daemon#*:}" "${daemon%%:*}" && return 0; done
        return 1
    }
    local deadline=$((SECONDS + 30))
    while any_running; do
        if ((SECONDS >= deadline)); then
            echo "stop.sh: $what did not stop within 30 s of SIGTERM, sending SIGKILL" >&2
            for daemon in "${running[@]}"; do
                if pid_running "${daemon#*:}" "${daemon%%:*}"; then
                    kill -KILL "$(pid_of "${daemon#*:}")" 2>/dev/null || true
                fi
            done
            sleep 0.5
            break
        fi
        sleep 0.1
    done
    for daemon in "${running[@]}"; do rm -f "${daemon#*:}"; done
}

# slurmd and slurmctld together (slurmctld saves its state on SIGTERM); slurmdbd after slurmctld so the
# controller's last records reach it; MariaDB after slurmdbd; munged last, everything authenticates with it.
slurmds=()
for node in "${NODES[@]}"; do slurmds+=("slurmd:$(slurmd_pid_file "$node")"); done
stop_group "slurmd/slurmctld" "${slurmds[@]}" "slurmctld:$SLURMCTLD_PID"
stop_group slurmdbd "slurmdbd:$SLURMDBD_PID"
if [[ $slurm_only == 0 ]]; then
    stop_group MariaDB "mariadbd:$MARIADB_PID"
    stop_group munged "munged:$MUNGE_PID"
fi

steps=$(pgrep --count --exact slurmstepd || true)
if [[ $steps -gt 0 ]]; then
    echo "stop.sh: $steps slurmstepd process(es) of running jobs left running; start.sh picks them up again"
fi
