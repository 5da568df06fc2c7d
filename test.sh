#!/usr/bin/env bash
# Sets everything up (test tools and Chromium included), checks the code with the linter
# (ruff.toml), and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --dev
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
