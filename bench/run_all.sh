#!/usr/bin/env bash
# Every benchmark of docs/BENCHMARKS.md, in the order and with the commands recorded there.
# Run on an otherwise idle machine (each script warns when other processes use the CPU).
# Results: bench/results/*.json; the tables on stdout are also appended to bench/results/run_all.log.
# About 20 minutes on 2 cores. BEFORE=/path/to/old/checkout adds the before/after runs of the serving path.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export CUDA_VISIBLE_DEVICES=""
mkdir -p bench/results
exec > >(tee -a bench/results/run_all.log) 2>&1
echo "== run_all.sh $(date -u +%FT%TZ) on $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"

# The shipped default model when it exists, else the same architecture and input with random weights.
if [[ -f weights/model.pt ]]; then DEFAULT=default; else DEFAULT=resnet20; fi

# 5. decode and preprocess
$PY -m bench.decode_bench --seconds 1.5

# 1. raw model limit: resnet50 at 224 (random weights), resnet18 (the issue's reference), the default model
$PY -m bench.model_limit --model resnet50 --seconds 3
# bf16 autocast: this CPU has no native bf16 (no avx512_bf16/amx), so it is measured forced, for the record
$PY -m bench.model_limit --model resnet50 --modes eager,bf16 --force-bf16 --batch-sizes 1 --seconds 2 \
    --name model_limit_resnet50_bf16_forced
$PY -m bench.model_limit --model resnet18 --modes eager,onnxruntime --batch-sizes 1,8 --seconds 3
$PY -m bench.model_limit --model "$DEFAULT" --seconds 2 --name model_limit_default

# 2. pipeline limit (the ceiling of the service), then 3 + 4: the service and the naive server under load
$PY -m bench.pipeline_limit --model resnet50 --image photo --backends onnxruntime,torch --batch-sizes 1,8,16 \
    --seconds 3
$PY -m bench.load_test --model resnet50 --image photo --servers onnxruntime,torch,naive --seconds 10 --warmup 3
$PY -m bench.pipeline_limit --model "$DEFAULT" --image fmnist --backends onnxruntime,torch --batch-sizes 1,8,16 \
    --seconds 2 --name pipeline_limit_default
$PY -m bench.load_test --model "$DEFAULT" --image fmnist --servers onnxruntime,torch,naive --seconds 6 --warmup 2 \
    --pipeline-result bench/results/pipeline_limit_default.json --name load_default

# where the time goes for the default model (py-spy samples of the server under load)
$PY -m bench.profile_service --model "$DEFAULT" --image fmnist --concurrency 16 --seconds 8

# before/after of the serving path (the old checkout's app/, same checkpoint, same load)
if [[ -n "${BEFORE:-}" ]]; then
    $PY -m bench.load_test --model resnet50 --image photo --servers onnxruntime --concurrency 1,16 --seconds 8 \
        --warmup 3 --service-root "$BEFORE" --label before --name load_resnet50_before
    $PY -m bench.load_test --model "$DEFAULT" --image fmnist --servers onnxruntime --concurrency 1,16 --seconds 6 \
        --warmup 2 --service-root "$BEFORE" --label before --name load_default_before
fi

# 7. low precision (issue 11): int8 quantizers, raw runtimes, then the service per backend and precision
$PY -m bench.quantizers --part accuracy
$PY -m bench.quantizers --part speed --seconds 2
for m in resnet50@224 resnet18@224; do
    $PY -m bench.model_limit --model "$m" --batch-sizes 1,8 --seconds 3 --name "model_limit_lowp_${m%@*}" \
        --modes eager,bf16,onnxruntime,onnxruntime_int8,openvino,openvino_bf16,openvino_int8
    $PY -m bench.load_test --model "$m" --image photo --concurrency 1,16 --seconds 10 --warmup 3 \
        --servers onnxruntime,onnxruntime:int8,openvino,openvino:bf16,openvino:int8 --name "load_lowp_${m%@*}"
done
$PY -m bench.load_test --model "$DEFAULT" --image fmnist --concurrency 1,16 --seconds 6 --warmup 2 \
    --servers onnxruntime,onnxruntime:int8,openvino:int8 --name load_lowp_default

# 8. HTTP stack (uvloop + httptools vs asyncio + h11) and JPEG decoders (Pillow draft vs simplejpeg)
$PY -m bench.http_stack --model "$DEFAULT" --image fmnist --backend auto --seconds 8 --warmup 2 --rounds 3
$PY -m bench.decode --seconds 4 --rounds 4

# 9. several workers: --workers 1 (2 threads) vs --workers 2 (1 thread each), ONNX Runtime and torch
$PY -m bench.workers --backend auto --name workers_auto
$PY -m bench.workers

# 6. training throughput: resnet-train against a plain loop
$PY -m bench.train_bench --steps 40
