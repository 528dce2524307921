#!/usr/bin/env bash
# Sets up the environment and runs the whole test suite (the README's test command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/ensure_chromium.sh  # the report test renders its HTML in a real headless browser
exec .venv/bin/python -m pytest Testing "$@"
