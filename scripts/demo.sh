#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default data.
# Extra arguments go to `netadjust flops`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/netadjust flops --arch resnet20 --num-classes 100 "$@"
