#!/usr/bin/env bash
# Creates .venv (once) and installs TACEPredict with the versions in constraints.txt.
# Usage: scripts/setup_env.sh [EXTRAS]   (default extras: deep,radiomics,dask,models,dicom,test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-deep,radiomics,dask,models,dicom,test}
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt)
if [[ ",${extras}," == *",radiomics,"* ]] && ! .venv/bin/python -c "import radiomics" 2>/dev/null; then
  # pyradiomics 3.0.1 ships only an sdist whose build needs numpy and versioneer from this environment.
  "${pip[@]}" numpy setuptools wheel versioneer
  "${pip[@]}" --no-build-isolation pyradiomics
fi
# uv installs the same pinned packages several times faster than pip (a fresh environment with the demo's
# extras: 19 s against 122 s). It does not read pip's configuration, so pip's find-links (where a machine
# keeps its local torch wheel) are passed on; if uv cannot be had or fails, pip does the install.
uv=(.venv/bin/python -m uv pip install --quiet --python .venv/bin/python -c constraints.txt)
links="${PIP_FIND_LINKS:-$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)}"
for link in $links; do uv+=(--find-links "$link"); done
if ! { "${pip[@]}" uv 2>/dev/null && "${uv[@]}" -e ".[${extras}]"; }; then
  "${pip[@]}" -e ".[${extras}]"
fi
