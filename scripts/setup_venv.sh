#!/usr/bin/env bash
# Create .venv (once) with torch, torchvision and this pack's requirements + test tools.
# Usage: scripts/setup_venv.sh [TRANSFORMERS_SPEC]   e.g. "transformers==4.57.1"
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC (large, once)"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $TORCH_SPEC
fi
"$VENV/bin/python" -m pip install -q -r requirements.txt -r requirements-test.txt
if [ -n "${1:-}" ]; then
  "$VENV/bin/python" -m pip install -q "$1"
fi
"$VENV/bin/python" -c "import torch, transformers; print('[setup] torch', torch.__version__, '| transformers', transformers.__version__)"
