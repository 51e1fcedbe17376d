#!/usr/bin/env bash
# Set up a fresh machine: Debian packages (Fashion-MNIST, Chromium for the browser test), a venv, the project.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; [ "${1:-}" = "--dev" ] && DEV=1
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_pkgs=(dataset-fashion-mnist)
[ "$DEV" = 1 ] && apt_pkgs+=(chromium)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ] && command -v apt-get >/dev/null; then
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "==> creating .venv"; "$PY" -m venv .venv; }
extra="[onnx]"; [ "$DEV" = 1 ] && extra="[dev]"  # onnx: RESNET_BACKEND=auto serves with ONNX Runtime on the CPU (~1.9x torch)
base=".venv/.installed-$(sha256sum < pyproject.toml | cut -c1-16)"
stamp="$base$extra"
if [ ! -f "$stamp" ] && [ ! -f "$base[dev]" ]; then  # a dev install covers the serving one
  echo "==> pip install (torch from the local cache, then the project$extra)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/pip install -q -e ".$extra"
  touch "$stamp"
fi
# Triton's perf_analyzer for the tests and bench/perf_analyzer.py (.venv/perf_analyzer/, a wrapper in .venv/bin/).
[ "$DEV" = 1 ] && scripts/install-perf-analyzer.sh
echo "==> ready: $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
