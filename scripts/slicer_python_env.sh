#!/usr/bin/env bash
# A Python that mimics Slicer 5.10's, given exactly what the module's first-use install gives it, then the
# extension's paths run in it (scripts/slicer_env_run.py): Apply with a bundle of every model kind, the headless
# batch script on 3 cases, train and evaluate of one model per task, all on slicer-core's real MRML scene.
#
#   bash scripts/slicer_python_env.sh [VENV] [WORK]      (defaults: .venv-slicer, a new temporary folder)
#
# Run it when the library's dependencies change (issue 20). Not in CI: torch for Python 3.12 comes from PyPI as a
# CUDA build with several GB of NVIDIA wheels; it is installed once into VENV, which later runs reuse.
# Environment: PYTHON312 (an interpreter; default pyenv's newest 3.12), TORCH_VERSION (default 2.13.0),
# SLICER_CORE_VERSION (default 5.11.0.6: the index has no 5.10 build; 5.11 is the preview that followed it),
# CASES (demo cohort size, default 40; 12 is the fewest with 5 OS events and every mRECIST class twice), EPOCHS
# (image networks, default 2), JOBS (train steps run at a time, default 1), PIP_FIND_LINKS (a folder of
# already-downloaded wheels, e.g. torch's).
#
# What stands in for Slicer 5.10 (its superbuild at tag v5.10.0; TACEPredictLib/slicer/dependencies.py lists it):
# Python 3.12 (Slicer: 3.12.10), every pip package Slicer ships at Slicer's version (numpy 2.0.2, SciPy 1.13.1,
# SimpleITK 2.5.2, pydicom, pillow, requests, packaging ...), slicer-core's MRML with PyPI's VTK 9.6.0 (Slicer
# 5.10 has its own VTK 9.5.2 build; installed without VTK's pip dependencies, which Slicer's VTK does not have),
# and torch standing in for the PyTorch extension.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${1:-.venv-slicer}
WORK=${2:-$(mktemp -d -t tacepredict-slicer-env.XXXXXX)}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
SLICER_CORE_VERSION=${SLICER_CORE_VERSION:-5.11.0.6}
if [ -z "${PYTHON312:-}" ]; then
  version=$(pyenv versions --bare | grep -E '^3\.12(\.[0-9]+)?$' | sort -V | tail -1)
  [ -n "$version" ] || { echo "no Python 3.12 in pyenv: set PYTHON312" >&2; exit 2; }
  PYTHON312=$(pyenv root)/versions/$version/bin/python
fi
mkdir -p "$WORK"
echo "== Slicer-like Python: $VENV ($($PYTHON312 --version)); work folder: $WORK"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON312" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# TACEPredictLib/slicer/dependencies.py imports only the standard library: usable before anything is installed.
export PYTHONPATH="$REPO"

echo "== 1. what Slicer 5.10 ships, at its versions"
"$PY" - "$WORK/slicer_ships.txt" <<'EOF'
import sys
from TACEPredictLib.slicer.dependencies import SLICER_SHIPS
pins = sorted({f"{d}=={v}" for d, v in SLICER_SHIPS.values() if d and d != "vtk"}, key=str.lower)
open(sys.argv[1], "w").write("\n".join(pins) + "\n")
print(" ".join(pins))
EOF
"$PY" -m pip install -q -r "$WORK/slicer_ships.txt"
"$PY" -m pip install -q --no-deps "slicer-core==$SLICER_CORE_VERSION" "vtk==9.6.0"

echo "== 2. torch $TORCH_VERSION, standing in for the PyTorch extension"
"$PY" -m pip install -q "torch==$TORCH_VERSION" -c "$WORK/slicer_ships.txt"

echo "== 3. the module's first-use install (the same library calls as TACEPredictLogic.installRequirements)"
"$PY" - "$REPO/TACEPredict/Resources/requirements.txt" "$WORK/constraints.txt" <<'EOF'
import subprocess
import sys
from TACEPredictLib.slicer import dependencies as deps

requirements_file, constraints_file = sys.argv[1:]
problems = deps.version_problems()
if problems:
    sys.exit("version check failed before installing anything: " + " ".join(problems))
before = deps.pinned_constraints()
open(constraints_file, "w").write("\n".join(before) + "\n")
steps = deps.install_steps(deps.read_requirements(requirements_file), constraints_file)
print(f"{len(steps)} step(s): " + "; ".join(title for title, _ in steps))

def pip_install(arguments):
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *arguments], check=True)

deps.run_steps(steps, pip_install)
after = deps.pinned_constraints()
if after != before:
    sys.exit(f"the install changed what Slicer ships: {sorted(set(before) ^ set(after))}")
missing = deps.missing_requirements(deps.read_requirements(requirements_file))
if missing:
    sys.exit(f"still missing after the install: {missing}")
print("Slicer's packages and torch unchanged: " + " ".join(before))
EOF
"$PY" -m pip check || echo "(pip check reports the conflicts above)"

echo "== 4. the extension's paths in it"
cd "$REPO"
"$PY" scripts/slicer_env_run.py --work "$WORK/run" --cases "${CASES:-40}" --epochs "${EPOCHS:-2}" --jobs "${JOBS:-1}"
