#!/usr/bin/env bash
# Set up, then run the whole test suite (slow tests included), ruff and mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check exprgrad tests benchmarks
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q "$@"
