#!/usr/bin/env bash
# Every benchmark of docs/BENCHMARKS.md, in the order and with the commands recorded there.
# Run on an otherwise idle machine: each script warns when other processes are using the CPU.
# Results: bench/results/*.json (plus the tables on stdout). Takes about 35 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export CUDA_VISIBLE_DEVICES=""

# 5. decode and preprocess
$PY -m bench.decode_bench

# 1. raw model limit: resnet50 at 224 (random weights), and the shipped Fashion-MNIST resnet20
$PY -m bench.model_limit --model resnet50
$PY -m bench.model_limit --model resnet18 --modes eager,onnxruntime --batch-sizes 1,8
if [[ -f weights/model.pt ]]; then DEFAULT=default; else DEFAULT=resnet20; fi
$PY -m bench.model_limit --model "$DEFAULT" --seconds 2

# 2. pipeline limit (the ceiling of the service), then 3 + 4: service and naive server under load
$PY -m bench.pipeline_limit --model resnet50 --image photo
$PY -m bench.load_test --model resnet50 --image photo --servers onnxruntime,torch,naive
$PY -m bench.pipeline_limit --model "$DEFAULT" --image fmnist --seconds 3
$PY -m bench.load_test --model "$DEFAULT" --image fmnist --servers onnxruntime,torch,naive --seconds 10

# 6. training throughput: resnet-train against a plain loop
$PY -m bench.train_bench
