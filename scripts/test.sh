#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: ruff, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
echo "==> ruff check"
.venv/bin/ruff check .
echo "==> pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
[ "$rc" -eq 5 ] && { echo "pytest collected no tests: failing"; exit 1; }
exit "$rc"
