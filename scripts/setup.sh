#!/usr/bin/env bash
# Create .venv (once) and install netadjust with its test and report extras into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
quiet() { grep -v "^WARNING: Location" || true; }  # pip's notes on this machine's local indexes
# The CPU build of torch (a newer or unpinned torch would pull a multi-GB CUDA build).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU) into .venv" >&2
  .venv/bin/pip install -q "torch==2.13.0" 2>&1 | quiet
fi
.venv/bin/pip install -q -e ".[test,report]" 2>&1 | quiet
.venv/bin/python -c "import netadjust" # fail loudly if the install did not work
