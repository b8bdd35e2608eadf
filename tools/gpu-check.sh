#!/usr/bin/env bash
# One-shot GPU check: ~1B Llama in bf16 with and without Transformer Engine (tokens/s, MFU), packed THD vs
# dense-mask loss parity, save / kill / resume, HF export + reload + batched generation; again at TP=2 when two
# GPUs are visible. Then the eval part (tools/gpu_check_eval.py): the same items through the native loop and
# vLLM, verdicts compared, items/s. Ends with two lines:
#   RESULT gpu_eval native_items_s=<x> vllm_items_s=<y> doit_items_s=<z> agree=<fraction>
#   RESULT gpu_check mfu=<x> tok_s=<y> parity=<ok|fail> resume=<ok|fail> export=<ok|fail>
#
#   tools/gpu-check.sh [--dry-run] [--out DIR] [--no-install]
#
# vLLM is installed only with GPU_CHECK_VLLM=1 (it pins its own torch, which would replace the node's): on a
# node where it is already installed the eval part uses it; otherwise its figure is 0 and `agree` compares
# the native loop with the DoIT-style loop.
# --dry-run: the same parts on a tiny model in fp32 on CPU (CI runs it: tests/tools/test_gpu_check.py).
# Installs what it needs from PyPI into the current Python (PYTHON, default: python) unless --no-install or
# --dry-run: this package with its megatron extra, and Transformer Engine if it installs (it needs CUDA and a
# compiler; without it the TE parts are skipped and the local layers are measured). Budget: ~8 min on one GPU.
# The parts are tools/gpu_check.py's PARTS (`python tools/gpu_check.py list`): a new check adds one there.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DRY=0; INSTALL=1; OUT=${TMPDIR:-/tmp}/gpu-check-$$
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1; INSTALL=0 ;;
    --no-install) INSTALL=0 ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: $0 [--dry-run] [--out DIR] [--no-install]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONWARNINGS=ignore

if [ "$INSTALL" = 1 ]; then
  "$PY" -m pip install -q -e ".[megatron]" || { echo "gpu-check: installing hpc_instruct[megatron] failed" >&2; exit 1; }
  "$PY" -c "import transformer_engine" 2>/dev/null \
    || timeout 900 "$PY" -m pip install -q --no-build-isolation "transformer_engine[pytorch]>=2.1,<3" \
    || echo "gpu-check: Transformer Engine did not install; measuring the local layers only"
  if [ "${GPU_CHECK_VLLM:-0}" = 1 ]; then
    "$PY" -c "import vllm" 2>/dev/null || timeout 900 "$PY" -m pip install -q "vllm>=0.8,<1" \
      || echo "gpu-check: vLLM did not install; the eval part compares native with the DoIT-style loop"
  fi
fi

if [ "$DRY" = 1 ]; then
  GPUS=1; FLAG=--dry-run
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
else
  GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
  FLAG=
  [ "$GPUS" -ge 1 ] || { echo "gpu-check: no GPU visible (use --dry-run for the CPU parts)" >&2; exit 1; }
  export CUDA_DEVICE_MAX_CONNECTIONS=1 NVTE_ALLOW_NONDETERMINISTIC_ALGO=0
fi

run_part() {  # run_part NPROC PART [ARGS...]: one part under torchrun; its report lands in $OUT
  local n=$1 part=$2; shift 2
  echo "== $part on $n process(es) $*"
  "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" tools/gpu_check.py "$part" "$OUT" $FLAG "$@" \
    > "$OUT/$part-$n.log" 2>&1
  local rc=$?
  grep -E "^$part tp" "$OUT/$part-$n.log" || { echo "gpu-check: $part exited $rc; log tail:"; tail -20 "$OUT/$part-$n.log"; }
}

for part in $("$PY" tools/gpu_check.py list); do
  run_part 1 "$part"  # resume-save ends by killing itself: its report is what counts
done
if [ "$GPUS" -ge 2 ]; then
  for part in $("$PY" tools/gpu_check.py list); do
    run_part 2 "$part" --tp 2
  done
fi
echo "== eval: native vs vLLM vs DoIT-style loop"
"$PY" tools/gpu_check_eval.py $FLAG > "$OUT/eval.log" 2>&1 || { echo "gpu-check: eval part failed; log tail:"; tail -20 "$OUT/eval.log"; }
grep -E "^RESULT gpu_eval" "$OUT/eval.log" || echo "RESULT gpu_eval native_items_s=n/a vllm_items_s=n/a doit_items_s=n/a agree=n/a"
"$PY" tools/gpu_check.py summary "$OUT"
