# syntax=docker/dockerfile:1
# One image for the HTTP service (default command) and the training worker (`resnet-train`, `train-and-publish`).
#   CPU (default, PyTorch's CPU-only wheels):  docker build -t resnet-service:cpu .
#   CUDA (CUDA base image + CUDA wheels):      docker build --build-arg VARIANT=cuda -t resnet-service:cuda .
# Configuration at run time is only the RESNET_* environment variables (docs/CONTRACTS.md); see docs/DEPLOY.md.

# cpu | cuda: picks the base image below and the PyTorch wheel index.
ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# The CUDA wheels bring their own CUDA libraries, so the small "base" flavour (driver hooks, no toolkit) is enough.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

# ---- bases: builder and runtime share one, so the virtual environment moves between them unchanged ----
FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_IMAGE} AS base-cuda
# Ubuntu 24.04's Python 3.12; versions follow the pinned base image tag (security updates come with it).
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python

# ---- builder: a virtual environment in /opt/venv with torch and the project (no source tree, no tests) ----
# base-cpu or base-cuda: a stage above, not an image to pull (hadolint cannot resolve the variable).
# hadolint ignore=DL3006
FROM base-${VARIANT} AS builder
ARG VARIANT
# Pinned inside pyproject's ranges (torch>=2.4,<2.15, torchvision>=0.19,<0.30); the CUDA index must match CUDA_IMAGE.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG CUDA_WHEELS=cu130
# Optional dependency groups of pyproject; "onnx" lets RESNET_BACKEND=auto pick onnxruntime on the CPU. "" = none.
ARG EXTRAS=onnx
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
RUN --mount=type=cache,target=/root/.cache/pip \
    wheels=cpu; if [ "$VARIANT" = cuda ]; then wheels="$CUDA_WHEELS"; fi \
    && pip install --index-url "https://download.pytorch.org/whl/$wheels" \
        "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    && printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > /opt/torch-pins.txt
WORKDIR /src
# Dependencies first (cached until pyproject.toml changes), then the code: the pins keep the wheels installed above.
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --constraint /opt/torch-pins.txt ".${EXTRAS:+[$EXTRAS]}"
COPY app ./app
COPY models ./models
COPY training ./training
RUN pip install --no-cache-dir --no-deps --force-reinstall . \
    && rm /opt/torch-pins.txt

# ---- runtime ----
# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
COPY deploy/train-and-publish.sh /usr/local/bin/train-and-publish
WORKDIR /app
# The default model (RESNET_CHECKPOINT=weights/model.pt, relative to /app). A volume mounted on /app/weights
# replaces it; a new named volume starts as a copy of it, owned by the app user so the trainer can publish into it.
COPY --chown=10001:10001 weights/ ./weights/
# Numeric, so runtimes that check runAsNonRoot can verify it without the passwd file.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
CMD ["resnet-serve", "--host", "0.0.0.0", "--port", "8000"]
