# One image for the HTTP service (default command) and the training worker (`resnet-train`, `train-and-publish`).
#   CPU (default, PyTorch's CPU-only wheels):  docker build -t resnet-service:cpu .
#   CUDA (CUDA base image + CUDA wheels):      docker build --build-arg VARIANT=cuda \
#                                                --build-arg BASE_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04 -t resnet-service:cuda .
#   Behind a mirror / offline: --build-arg PIP_INDEX_URL=... TORCH_INDEX_URL= ... (docs/DEPLOY.md, "Building behind
#   a mirror or without internet").
# Builds with the legacy builder and with BuildKit: no `# syntax=` frontend to pull, no `RUN --mount`, and one base
# image (BASE_IMAGE) for every stage, so no builder pulls an image the target does not use.
# Configuration at run time is only the RESNET_* environment variables (docs/CONTRACTS.md); see docs/DEPLOY.md.

# cpu | cuda: the PyTorch wheel index by default (below), and whether the base needs Python installed.
ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# The image every stage starts from. For VARIANT=cuda pass a CUDA base, e.g. nvidia/cuda:13.0.2-base-ubuntu24.04
# (docker-compose.gpu.yml does): the CUDA wheels bring their own CUDA libraries, so the small "base" flavour is enough.
# A base without python3 (the CUDA images, plain Debian/Ubuntu) gets the distribution's python3 + venv installed.
ARG BASE_IMAGE=${PYTHON_IMAGE}

# ---- base: builder and runtime share it, so the virtual environment moves between them unchanged ----
FROM ${BASE_IMAGE} AS base
# The distribution's Python only where the base has none; versions follow the base image tag (its security updates).
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && if ! command -v python >/dev/null 2>&1; then ln -s "$(command -v python3)" /usr/local/bin/python; fi

# ---- builder: a virtual environment in /opt/venv with torch and the project (no source tree, no tests) ----
FROM base AS builder
ARG VARIANT
# Pinned inside pyproject's ranges (torch>=2.4,<2.15, torchvision>=0.19,<0.30).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# PyTorch's wheel flavour for VARIANT=cuda; it must match the CUDA version of BASE_IMAGE.
ARG CUDA_WHEELS=cu130
# Where torch and torchvision come from. Not given: https://download.pytorch.org/whl/cpu (VARIANT=cpu) or
# https://download.pytorch.org/whl/$CUDA_WHEELS (cuda). Empty: the pip index in effect (PIP_INDEX_URL, else PyPI).
ARG TORCH_INDEX_URL
# pip's own settings, for every `pip install` below (a company mirror, a local wheel folder served over HTTP, ...).
# Not given = pip's defaults. Entries that are neither a URL nor a path inside the build are dropped (pip-install).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
# Optional dependency groups of pyproject; "onnx" lets RESNET_BACKEND=auto pick onnxruntime on the CPU. "" = none.
ARG EXTRAS=onnx
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
COPY deploy/pip-install.sh /usr/local/bin/pip-install
RUN python3 -m venv /opt/venv
RUN default="https://download.pytorch.org/whl/cpu" \
    && if [ "$VARIANT" = cuda ]; then default="https://download.pytorch.org/whl/$CUDA_WHEELS"; fi \
    && index=${TORCH_INDEX_URL-$default} \
    && pip-install ${index:+--index-url "$index"} "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    && printf 'torch==%s\ntorchvision==%s\n' "$TORCH_VERSION" "$TORCHVISION_VERSION" > /opt/torch-pins.txt
WORKDIR /src
# Dependencies first (cached until pyproject.toml changes), then the code: the pins keep the wheels installed above.
COPY pyproject.toml README.md ./
RUN pip-install --constraint /opt/torch-pins.txt ".${EXTRAS:+[$EXTRAS]}"
# The project's packages: one COPY line per top-level package (and a `!name/` line in .dockerignore).
COPY app ./app
COPY models ./models
COPY training ./training
COPY cli ./cli
RUN pip-install --no-deps --force-reinstall . \
    && rm /opt/torch-pins.txt

# ---- runtime ----
FROM base AS runtime
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
EXPOSE 8000 8001
# Docker's default, written out: with a STOPSIGNAL set, `docker kill -s SIGHUP` (the model reload) is not taken for a
# stop, so the restart policy still restarts the container if it dies later (Docker Engine's kill path cancels the
# restart policy for any signal when the image names none).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
CMD ["resnet-serve", "--host", "0.0.0.0", "--port", "8000"]
