#!/usr/bin/env bash
# Create or update the project's virtual environment at .venv/ (idempotent, safe to re-run).
#   bash tools/setup-venv.sh          # the toolkit + megatron-core (run the embedded default)
#   bash tools/setup-venv.sh --dev    # + test and lint tools, and DeepSpeed (its backend is tested too)
# torch==2.13.0 is installed FIRST: on this kind of machine it is a CPU build lying on disk; any later
# requirement that 2.13.0 satisfies installs nothing more, so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="megatron"
[[ "${1:-}" == "--dev" ]] && extras="megatron,dev"
PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
# pip's own exit status counts (pipefail); only its "is ignored: it is neither ..." chatter is filtered out.
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
.venv/bin/python -c "import torch" 2>/dev/null || pip install "torch==2.13.0"
pip install -e ".[${extras}]"
if [[ "$extras" == *dev* ]] && ! .venv/bin/python -c "import deepspeed" 2>/dev/null; then
  # No CUDA ops are prebuilt (DS_BUILD_OPS=0); on CPU DeepSpeed JIT-compiles what it uses (g++ and ninja).
  DS_BUILD_OPS=0 pip install --no-build-isolation "deepspeed>=0.16,<0.20" "ninja>=1.11,<2"
fi
.venv/bin/python -c "import hpc_instruct, torch; print('hpc_instruct', hpc_instruct.__version__, '| torch', torch.__version__)"
