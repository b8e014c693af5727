#!/usr/bin/env bash
# Set up (if needed) and run the main job: a complete small network-adjustment search on the
# embedded digits data (ResNet-20, `--preset demo`), writing runs/demo/.
# Extra arguments go to `netadjust search` (e.g. --rounds 3, or --overwrite to rerun).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
# A rerun of the default demo replaces the previous one.
[ ${#args[@]} -eq 0 ] && args=(--overwrite)
exec .venv/bin/netadjust search "${args[@]}"
