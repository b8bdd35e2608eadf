#!/usr/bin/env bash
# Create or update the project's virtual environment at .venv/ (idempotent, safe to re-run).
#   bash tools/setup-venv.sh          # the toolkit + megatron-core (run the embedded default)
#   bash tools/setup-venv.sh --dev    # + test and lint tools
# torch==2.13.0 is installed FIRST: on this kind of machine it is a CPU build lying on disk; any later
# requirement that 2.13.0 satisfies installs nothing more, so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="megatron"
[[ "${1:-}" == "--dev" ]] && extras="megatron,dev"
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
.venv/bin/python -c "import torch" 2>/dev/null || pip install "torch==2.13.0"
pip install -e ".[${extras}]"
.venv/bin/python -c "import hpc_instruct, torch; print('hpc_instruct', hpc_instruct.__version__, '| torch', torch.__version__)"
