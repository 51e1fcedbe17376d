#!/usr/bin/env bash
# Set up (if needed) and serve the default checkpoint (weights/model.pt) on http://127.0.0.1:8000.
# Extra arguments go to resnet-serve (e.g. --port 9000); RESNET_* environment variables configure the service.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/resnet-serve --host "${RESNET_HOST:-127.0.0.1}" "$@"
