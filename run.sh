#!/usr/bin/env bash
# Sets everything up and starts the app on the embedded defaults (Milvus Lite, local models).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python -m streamlit run app.py "$@"
