#!/usr/bin/env bash
# Set up .venv if needed, then run the whole test suite (the command CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh "${TRANSFORMERS_SPEC:-transformers>=5,<6}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest -q -ra "$@"
