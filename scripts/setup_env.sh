#!/usr/bin/env bash
# Creates .venv (once) and installs TACEPredict with the versions in constraints.txt.
# Usage: scripts/setup_env.sh [EXTRAS]   (default extras: test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-test}
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[${extras}]"
