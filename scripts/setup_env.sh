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
"${pip[@]}" -e ".[${extras}]"
