#!/usr/bin/env bash
# Print ONE line about the local Slurm cluster and exit 0 only when it is healthy:
#
#   $ slurm/local-cluster/status.sh
#   slurm: up, 3 nodes idle, accounting ok
#
# Unhealthy examples (exit 1): "slurm: not installed (run install.sh)", "slurm: down (not running: slurmctld,
# slurmd n2)", "slurm: unhealthy, 2 nodes idle, 1 down*, accounting ok". Healthy means: every daemon runs,
# every node responds and is idle/mixed/allocated/completing, and sacct answers.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! command -v slurmctld >/dev/null || ! command -v sacct >/dev/null || ! command -v mariadbd >/dev/null; then
    echo "slurm: not installed (run slurm/local-cluster/install.sh or up.sh)"
    exit 1
fi
if [[ ! -r $SLURM_CONF_FILE ]]; then
    echo "slurm: not configured (run slurm/local-cluster/start.sh)"
    exit 1
fi

# Pid files under /run are world-readable, so this part works for any user.
missing=()
pid_running "$MUNGE_PID" munged || missing+=(munged)
pid_running "$MARIADB_PID" mariadbd || missing+=(mariadb)
pid_running "$SLURMDBD_PID" slurmdbd || missing+=(slurmdbd)
pid_running "$SLURMCTLD_PID" slurmctld || missing+=(slurmctld)
for node in "${NODES[@]}"; do
    pid_running "$(slurmd_pid_file "$node")" slurmd || missing+=("slurmd $node")
done
if [[ ${#missing[@]} -eq $((4 + ${#NODES[@]})) ]]; then
    echo "slurm: down (run slurm/local-cluster/start.sh)"
    exit 1
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    printf -v joined '%s, ' "${missing[@]}"
    echo "slurm: down (not running: ${joined%, })"
    exit 1
fi

healthy=1
# A node is listed once per partition it is in; sort -u keeps one line per node. %T is the long state, with
# a '*' suffix when the node does not respond.
if ! states=$(timeout 10 sinfo --noheader --Node --format='%N %T' 2>&1 | sort -u | awk '{print $2}'); then
    echo "slurm: unhealthy, sinfo failed: $states"
    exit 1
fi
# "3 nodes idle" / "1 node drained, 2 idle": counts per state, in a stable order.
summary=$(sort <<<"$states" | uniq -c | awk '{
    printf "%s%d %s%s", (NR > 1 ? ", " : ""), $1, (NR > 1 ? "" : ($1 == 1 ? "node " : "nodes ")), $2 }')
if [[ $(grep -c . <<<"$states") -ne ${#NODES[@]} ]] || grep -qvE '^(idle|mixed|allocated|completing)$' <<<"$states"; then
    healthy=0
fi

if timeout 10 sacct --noheader -X --starttime=now >/dev/null 2>&1; then
    accounting="accounting ok"
else
    accounting="accounting down"
    healthy=0
fi

if [[ $healthy == 1 ]]; then
    echo "slurm: up, $summary, $accounting"
else
    echo "slurm: unhealthy, $summary, $accounting"
    exit 1
fi
