#!/bin/sh
# Training worker of the compose `trainer` service (installed in the image as `train-and-publish`).
# Runs `resnet-train` (or `torchrun -m training.train` for several GPUs/nodes) into a run folder on the models
# volume, then publishes that run's model.pt + class_indices.json as the model the `api` service serves.
# Training never writes beside the served model, so the service can restart or reload mid-training safely.
#
#   train-and-publish [resnet-train flags...]      e.g. --data /data --arch resnet50 --epochs 30
#
# Environment (all optional):
#   MODELS_DIR     the models volume, default /app/weights; the served model is $MODELS_DIR/model.pt
#   TRAIN_NPROC    processes per node under torchrun ("gpu" = one per GPU); unset = one plain process
#   TORCHRUN_ARGS  torchrun flags for multi-node (--nnodes, --node-rank, --rdzv-backend, --rdzv-endpoint, ...);
#                  unset = --standalone (one node)
#   PUBLISH        0 = train only and leave the served model alone (default 1)
# The run folder is $MODELS_DIR/runs/<UTC time> unless --out says otherwise (use --out DIR --resume to resume).
set -eu

models=${MODELS_DIR:-/app/weights}
for arg in "$@"; do
    case "$arg" in -h | --help) exec resnet-train "$@" ;; esac
done
out="$models/runs/$(date -u +%Y%m%dT%H%M%SZ)"
prev=""
for arg in "$@"; do
    if [ "$prev" = "--out" ]; then out=$arg; fi
    case "$arg" in --out=*) out=${arg#--out=} ;; esac
    prev=$arg
done

if [ -n "${TRAIN_NPROC:-}${TORCHRUN_ARGS:-}" ]; then
    # TORCHRUN_ARGS is a list of flags: word splitting is intended.
    # shellcheck disable=SC2086
    torchrun ${TORCHRUN_ARGS:---standalone} --nproc-per-node "${TRAIN_NPROC:-1}" \
        -m training.train --out "$out" "$@"
else
    resnet-train --out "$out" "$@"
fi

if [ "${PUBLISH:-1}" = 0 ]; then
    echo "train-and-publish: PUBLISH=0, trained into $out; the served model is unchanged"
    exit 0
fi
if [ ! -f "$out/model.pt" ]; then
    # Under multi-node torchrun only the node of rank 0 writes the checkpoint.
    echo "train-and-publish: no $out/model.pt on this node (rank 0 writes it): nothing to publish" >&2
    exit 0
fi
# Copy next to the target, then rename: a reader sees the old file or the new one, never half a file.
cp "$out/class_indices.json" "$models/.class_indices.json.tmp"
cp "$out/model.pt" "$models/.model.pt.tmp"
mv -f "$models/.class_indices.json.tmp" "$models/class_indices.json"
mv -f "$models/.model.pt.tmp" "$models/model.pt"
echo "train-and-publish: published $out/model.pt as $models/model.pt;" \
    "serve it with: docker compose restart api (or POST /v1/model/reload)"
