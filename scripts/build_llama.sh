#!/usr/bin/env bash
# Installs llama-cpp-python into .venv built for any x86-64 CPU, never the build machine's alone.
#
# pip compiles llama.cpp from source, and by default for the CPU it runs on (GGML_NATIVE): on a
# CPU with AMX that build repacks the weights for AMX kernels that crash (llama.cpp #20824), and
# the wheel would not run on an older CPU. pip also reuses a wheel it built once for the same
# version, whatever CMAKE_ARGS say, so the portable build goes through its own wheel folder,
# named after the version and the flags, built with pip's cache off and kept for the next set-up.
# A venv that holds another build of llama-cpp-python (an earlier native one) gets this one.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^llama-cpp-python\(\[server\]\)\{0,1\}==//p' requirements.txt)
flags="-DGGML_NATIVE=OFF"  # AVX2/FMA/F16C (x86-64-v3) kernels; no AVX-512, no AMX
build_id="$version-portable-v1"
wheels="${RAG_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rag-wheels}/llama-cpp-python-$build_id"
marker=.venv/.llama-cpp-python-$build_id

[ -f "$marker" ] && exit 0
if ! compgen -G "$wheels/llama_cpp_python-$version-*.whl" >/dev/null; then
  echo "building llama.cpp $version for any x86-64 CPU (once per machine: several minutes on 2 cores)..."
  rm -rf "$wheels.partial"
  CMAKE_ARGS="$flags" .venv/bin/python -m pip wheel --quiet --no-cache-dir --no-deps \
    -w "$wheels.partial" "llama-cpp-python==$version"
  rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
fi
.venv/bin/python -m pip install --quiet --force-reinstall --no-deps "$wheels"/llama_cpp_python-"$version"-*.whl
touch "$marker"
