#!/usr/bin/env bash
# The test command (README, and exactly what .ci/run calls): set up everything on a fresh machine, run all tests.
#   bash tools/test.sh                 # everything, slow integration tests included (what CI runs)
#   bash tools/test.sh -m "not slow"   # extra arguments go to pytest
# pytest always prints the 20 slowest tests (--durations=20): CI passes no arguments, so it is set here.
# Installs: the venv with dev tools (tools/setup-venv.sh); as root on Debian also a real local Slurm cluster
# and Debian's chromium + chromium-driver (the report is checked in a real headless browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-venv.sh --dev
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  bash slurm/local-cluster/up.sh      # munge, slurmctld, 3 slurmd nodes, slurmdbd on MariaDB
  bash tools/install-chromium.sh      # headless Chromium for the report test
fi
export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m pytest -q --timeout=900 --durations=20 "$@"  # the 20 slowest tests in every CI log
