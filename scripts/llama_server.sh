#!/usr/bin/env bash
# A real llama.cpp `llama-server` for the GGUF test tier, built from source inside the repository.
#
#   scripts/llama_server.sh build     build llama-server + llama-quantize into .llama-build/bin (once;
#                                     10-25 minutes on 2 cores; later runs reuse the cached build)
#   scripts/llama_server.sh model     convert a tiny random Qwen3-VL to GGUF (f16 + Q8_0) and its mmproj
#                                     into .llama-build/tiny/ (needs the pack's .venv: tests/tiny_model.py)
#   scripts/llama_server.sh all       both; prints the env lines the GGUF tier reads
#   scripts/llama_server.sh await F   wait for a background "build" whose exit code goes to file F, then
#                                     "model" (.ci/run builds while the vLLM venv installs)
#
# The llama.cpp is the one vendored in the pinned llama-cpp-python sdist on PyPI (no Python build of it:
# only its C++ server and quantizer, and its GGUF converter). Recipe and traps: SPEC.md section 11.
#   - configure with -DLLAMA_USE_PREBUILT_UI=OFF, else the build downloads a web UI;
#   - the tiny model's text stack is deeper than its DeepStack layers (else llama-server asserts);
#   - the converter does not know the tiny tokenizer's pre-tokenizer hash: scripts/gguf_convert.py forces
#     `qwen2` from outside (the vendored converter is never edited);
#   - Q8_0 crashes in the AMX repack path on some CPUs: the tier starts the server with --no-repack.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${LLAMA_BUILD_DIR:-.llama-build}
SPEC=${LLAMA_CPP_PYTHON_SPEC:-llama-cpp-python==0.3.36}
VERSION=${SPEC##*==}
SRC="$ROOT/llama_cpp_python-$VERSION/vendor/llama.cpp"
BIN="$ROOT/bin"
JOBS=${LLAMA_BUILD_JOBS:-$(nproc)}
PY=${PYTHON:-.venv/bin/python}

fetch_source() {
  if [ -f "$SRC/CMakeLists.txt" ]; then
    return
  fi
  mkdir -p "$ROOT"
  if ! ls "$ROOT"/llama_cpp_python-"$VERSION".tar.gz >/dev/null 2>&1; then
    echo "[llama] downloading the $SPEC sdist from PyPI" >&2
    python3 -m pip download -q --no-deps --no-binary :all: "$SPEC" -d "$ROOT"
  fi
  tar -xzf "$ROOT"/llama_cpp_python-"$VERSION".tar.gz -C "$ROOT"
  test -f "$SRC/CMakeLists.txt" || { echo "[llama] no vendor/llama.cpp in the $SPEC sdist" >&2; exit 1; }
}

build() {
  if [ -x "$BIN/llama-server" ] && [ -x "$BIN/llama-quantize" ] && [ -f "$BIN/.spec" ] \
    && [ "$(cat "$BIN/.spec")" = "$SPEC" ]; then
    echo "[llama] $BIN/llama-server ready ($SPEC, cached)" >&2
    return
  fi
  command -v cmake >/dev/null || { echo "[llama] cmake is missing (apt-get install cmake)" >&2; exit 1; }
  fetch_source
  local start
  start=$(date +%s)
  # Only what llama-server and llama-quantize need: no tests, examples, curl/openssl, web UI download.
  cmake -S "$SRC" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_LLGUIDANCE=OFF \
    -DBUILD_SHARED_LIBS=OFF -DGGML_BACKEND_DL=OFF >"$ROOT/cmake-configure.log" 2>&1 \
    || { tail -n 40 "$ROOT/cmake-configure.log" >&2; exit 1; }
  cmake --build "$ROOT/build" -j "$JOBS" --target llama-server llama-quantize >"$ROOT/cmake-build.log" 2>&1 \
    || { tail -n 40 "$ROOT/cmake-build.log" >&2; exit 1; }
  mkdir -p "$BIN"
  cp "$ROOT/build/bin/llama-server" "$ROOT/build/bin/llama-quantize" "$BIN/"
  echo "$SPEC" >"$BIN/.spec"
  echo "[llama] built llama-server + llama-quantize in $(( $(date +%s) - start )) s" >&2
}

model() {
  fetch_source
  local out="$ROOT/tiny" hf="$ROOT/tiny/hf"
  if [ -f "$out/.done" ] && [ "$(cat "$out/.done")" = "$SPEC" ]; then
    echo "[llama] tiny GGUF ready in $out (cached)" >&2
    return
  fi
  test -x "$BIN/llama-quantize" || build
  rm -rf "$out"
  mkdir -p "$out"
  # The converter's own Python needs (gguf-py is vendored; numpy, torch, transformers, sentencepiece).
  "$PY" -c "import numpy, torch, transformers" >/dev/null
  "$PY" tests/tiny_model.py "$hf" dense gguf >/dev/null
  "$PY" scripts/gguf_convert.py "$SRC" "$hf" --outfile "$out/qwen3vl-tiny-f16.gguf" --outtype f16 \
    >"$out/convert.log" 2>&1 || { tail -n 30 "$out/convert.log" >&2; exit 1; }
  "$PY" scripts/gguf_convert.py "$SRC" "$hf" --mmproj --outfile "$out/mmproj-qwen3vl-tiny-f16.gguf" \
    --outtype f16 >>"$out/convert.log" 2>&1 || { tail -n 30 "$out/convert.log" >&2; exit 1; }
  "$BIN/llama-quantize" "$out/qwen3vl-tiny-f16.gguf" "$out/qwen3vl-tiny-Q8_0.gguf" Q8_0 \
    >>"$out/convert.log" 2>&1 || { tail -n 30 "$out/convert.log" >&2; exit 1; }
  # a projector of another width (the wider tiny shape), for the "wrong mmproj" test
  "$PY" tests/tiny_model.py "$hf-other" dense vllm >/dev/null
  "$PY" scripts/gguf_convert.py "$SRC" "$hf-other" --mmproj --outfile "$out/mmproj-other-width.gguf" \
    --outtype f16 >>"$out/convert.log" 2>&1 || { tail -n 30 "$out/convert.log" >&2; exit 1; }
  rm -rf "$hf-other"
  echo "$SPEC" >"$out/.done"
  echo "[llama] tiny GGUF + mmproj in $out" >&2
}

env_lines() {
  echo "QWEN3VL_LLAMA_SERVER=$PWD/$BIN/llama-server"
  echo "QWEN3VL_TINY_GGUF=$PWD/$ROOT/tiny/qwen3vl-tiny-Q8_0.gguf"
  echo "QWEN3VL_TINY_MMPROJ=$PWD/$ROOT/tiny/mmproj-qwen3vl-tiny-f16.gguf"
}

case "${1:-}" in
  build) build ;;
  model) model ;;
  all) build; model; env_lines ;;
  await)
    while [ ! -s "$2" ]; do sleep 5; done
    if [ "$(cat "$2")" != 0 ]; then
      echo "[llama] the background build failed:" >&2
      tail -n 40 "$ROOT/cmake-build.log" "$ROOT/ci-build.log" >&2 || true
      exit 1
    fi
    model ;;
  env) env_lines ;;
  *) echo "usage: $0 build | model | all | env | await RC_FILE" >&2; exit 2 ;;
esac
