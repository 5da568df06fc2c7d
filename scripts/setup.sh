#!/usr/bin/env bash
# Creates .venv and installs the pinned dependencies; `--dev` adds the test tools and Chromium.
# Safe to run again: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade "pip==25.3"
scripts/build_llama.sh
.venv/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
# OCR (see requirements-nodeps.txt): its dependencies come from requirements.txt, headless.
.venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt -c constraints.txt
# Which backend embeds fastest on this CPU with float32's quality (RAG_EMBED_BACKEND=auto), measured
# once per machine here so that the app never waits for it; the app measures it itself otherwise.
echo "choosing the fastest embedding backend for this CPU (measured once per machine)..."
.venv/bin/python -m rag embed-backends --once >/dev/null \
  || echo "note: the embedding backends were not measured; the app will measure them at first use" >&2

if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing Chromium for the browser tests (Debian package)..."
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "note: Chromium is not installed; the browser tests will be skipped (apt-get install chromium)" >&2
    fi
  fi
fi
