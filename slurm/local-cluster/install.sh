#!/usr/bin/env bash
# Install the Debian packages for a single-machine Slurm cluster (munge, slurmctld, slurmd, client tools,
# slurmdbd on MariaDB). Idempotent: does nothing (in well under a second) when everything is installed.
#
#   sudo slurm/local-cluster/install.sh
#
# Debian 12 ships Slurm 22.05.8. The packages' post-install scripts try to start services; with no systemd
# that fails harmlessly, and start.sh starts the daemons directly.
set -euo pipefail

# munge: authentication between Slurm daemons and clients.
# slurmctld/slurmd/slurm-client: controller, node daemon, sbatch/srun/squeue/sacct/...
# slurmdbd + mariadb-server: accounting database, without which `sacct` fails and submitit cannot tell a
#   job's final state (its `job.state` stays UNKNOWN).
# procps: `ps`, used by status.sh/stop.sh to look at process states (present on most machines, cheap).
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server procps)

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: must run as root (apt-get install)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "install.sh: needs a Debian-like system with apt-get" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    # `dpkg-query -W -f '${Status}'` prints "install ok installed" only for a fully configured package.
    if [[ $(dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null || true) != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "install.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101 tells the maintainer scripts not to start services (there is no init system to start
# them with; start.sh does it). Removed again whatever happens.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT
install_missing() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
# Try with the package lists as they are (`apt-get update` costs seconds); when they are missing or name a
# version the mirror has replaced since (a security update), the install fails: fetch fresh lists and retry.
if ! install_missing 2>/dev/null; then
    apt-get update -qq
    install_missing
fi
echo "install.sh: done"
