#!/usr/bin/env bash
# The GPU check, in one run of at most 8 minutes: the CUDA tests (pytest -m cuda: checkpoint on cuda, the service
# batching on cuda, a bf16 training epoch, torchrun, nccl), then bench/gpu_bench.py (resnet50 images/s per batch
# size and precision; the service on RESNET_DEVICE=cuda at 64 clients). Each phase runs under a timeout.
#
# Usage: bench/gpu_check.sh [OUTDIR]    default OUTDIR: $OUT if set, else bench/results/gpu-<UTC date and time>
# Python: $PYTHON if set (it needs the project's dependencies and pytest), else .venv/bin/python, else
# scripts/setup.sh --dev makes .venv (with no network, pip must find everything in its local cache).
# Writes to OUTDIR: env.txt, [setup.log], cuda-tests.log, gpu-bench.log, gpu_bench.json, gpu_bench.md, summary.txt.
# Exit: 0 all passed; 1 a phase failed or ran out of time; 2 no usable Python; 3 "no CUDA device: ..." (one line).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

BUDGET=${GPU_CHECK_BUDGET_S:-440}  # seconds for every phase, setup included (+10 s to kill each, at worst)
DEADLINE=$((SECONDS + BUDGET))
no_cuda() { echo "no CUDA device: $*" >&2; exit 3; }

# Before anything is set up or written: is there a GPU at all?
if command -v nvidia-smi >/dev/null; then
  smi=$(nvidia-smi -L 2>&1) || no_cuda "nvidia-smi -L failed: $(head -n1 <<<"$smi")"
  grep -q '^GPU ' <<<"$smi" || no_cuda "nvidia-smi -L lists no GPU: $(head -n1 <<<"$smi")"
elif ! compgen -G '/dev/nvidia[0-9]*' >/dev/null; then
  no_cuda "no nvidia-smi on PATH and no /dev/nvidia0 (CPU-only machine)"
fi

OUTDIR=${1:-${OUT:-bench/results/gpu-$(date -u +%Y%m%d-%H%M)}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-0}  # tests/conftest.py hides GPUs when it is unset
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
results=()

# phase NAME LIMIT CMD...: CMD under `timeout` (its whole process group: servers and torchrun workers too), at most
# LIMIT seconds and never past the deadline; output to the terminal and OUTDIR/NAME.log.
phase() {
  local name=$1 limit=$2 t0=$SECONDS rc; shift 2
  (( limit > DEADLINE - SECONDS )) && limit=$((DEADLINE - SECONDS))
  if (( limit < 20 )); then
    results+=("$name: not run, the ${BUDGET} s budget is spent"); echo "==> $name: not run (budget spent)"; return 1
  fi
  echo "==> $name (at most ${limit} s): $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUTDIR/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) results+=("$name: ok in $((SECONDS - t0)) s") ;;
    124|137) results+=("$name: TIMED OUT after ${limit} s") ;;
    *) results+=("$name: FAILED (exit $rc) in $((SECONDS - t0)) s") ;;
  esac
  return "$rc"
}

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  # No network here: fail fast instead of retrying an index that cannot be reached.
  if ! phase setup 240 env PIP_RETRIES="${PIP_RETRIES:-0}" PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-10}" \
       scripts/setup.sh --dev; then
    echo "setup: scripts/setup.sh --dev could not make .venv (see $OUTDIR/setup.log: no network, or the local pip" \
         "cache lacks a package); set PYTHON to a Python that has the project's dependencies and pytest" >&2
    exit 2
  fi
  PY=.venv/bin/python
fi

"$PY" -m bench.gpu_bench --check >"$OUTDIR/env.txt" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
  line=$(grep -m1 -E '^(no CUDA device|setup):' "$OUTDIR/env.txt")
  [ "$rc" -eq 3 ] && { echo "$line" >&2; exit 3; }
  echo "${line:-setup: $PY -m bench.gpu_bench --check failed (exit $rc):}" >&2; tail -n 5 "$OUTDIR/env.txt" >&2
  exit 2
fi
{ echo "python: $PY ($("$PY" -V 2>&1))"; nvidia-smi 2>&1 || true; } >>"$OUTDIR/env.txt"
echo "==> $(head -n1 "$OUTDIR/env.txt")"

# The CUDA tests; bench keeps at least 150 s. A skip here means a check did not run, so it fails the phase.
if phase cuda-tests $((DEADLINE - SECONDS - 150)) "$PY" -m pytest -m cuda -ra -p no:cacheprovider --timeout 200 \
     tests/cuda tests/training/test_predict_folder.py \
   && grep -qE '[0-9]+ skipped' "$OUTDIR/cuda-tests.log"; then
  results[-1]="cuda-tests: FAILED: tests were skipped on a GPU machine (see cuda-tests.log)"
fi

phase gpu-bench $((DEADLINE - SECONDS - 5)) "$PY" -m bench.gpu_bench --out "$OUTDIR"

{ echo "GPU check $(date -u +%FT%TZ), $(head -n1 "$OUTDIR/env.txt")"; printf '%s\n' "${results[@]}"; } \
  | tee "$OUTDIR/summary.txt"
echo "results in $OUTDIR"
! grep -qE 'FAILED|TIMED OUT|not run' "$OUTDIR/summary.txt"
