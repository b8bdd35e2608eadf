#!/usr/bin/env bash
# Install (if needed) and start (if needed) the local Slurm cluster; what CI and the test fixture call.
#
#   sudo slurm/local-cluster/up.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/install.sh"
"$here/start.sh"
