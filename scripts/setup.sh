#!/usr/bin/env bash
# Create .venv (once) and install netadjust with its test and report extras into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The CPU build of torch (a newer or unpinned torch would pull a multi-GB CUDA build).
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[test,report]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import netadjust" # fail loudly if the install did not work
