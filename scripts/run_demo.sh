#!/usr/bin/env bash
# Sets up the environment and runs the main job on the built-in synthetic demo cohort (output: demo_run/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh deep,models  # what the demo needs; the tests' command installs the rest
hcc=../shared/data/hcc_tace_seg/clinical.csv
exec .venv/bin/tacepredict demo --out demo_run $([ -f "$hcc" ] && echo --hcc-tace-seg "$hcc")
