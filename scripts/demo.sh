#!/usr/bin/env bash
# Set up .venv if needed, then ask the tiny random-weight Qwen3-VL about the bundled sample image.
# Random weights give random text: this shows the whole pipeline runs, not what Qwen3-VL answers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh "${TRANSFORMERS_SPEC:-transformers>=5,<6}"
HF_HUB_OFFLINE=1 .venv/bin/python cli.py ask --image assets/sample.png --max-new-tokens 32 --info "Describe this image." "$@"
