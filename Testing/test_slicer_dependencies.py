"""Slicer's Python gets what the library imports (issue 20): the import-coverage check on the real tree, the same
check failing on purpose on a copy with an uncovered import, and the first-use install's version checks and steps.

The Slicer-like environment itself (Python 3.12, Slicer 5.10's numpy and SimpleITK, slicer-core) is built and run by
scripts/slicer_python_env.sh, not here: it needs a multi-GB torch download.
"""

import os
import re
import shutil
import tomllib

import pytest

from conftest import REPO

from TACEPredictLib.slicer import dependencies as deps

REQUIREMENTS = os.path.join(REPO, "TACEPredict", "Resources", "requirements.txt")
SOURCES = ("TACEPredictLib", os.path.join("TACEPredict", "TACEPredict.py"))


def test_every_import_of_the_library_and_module_is_covered():
    problems = deps.coverage_problems([os.path.join(REPO, p) for p in SOURCES],
                                      deps.read_requirements(REQUIREMENTS))
    assert problems == []


def test_the_list_has_what_issue_20_found_missing():
    names = {deps.canonical(deps.requirement_name(r)) for r in deps.read_requirements(REQUIREMENTS)}
    assert {"scikit-learn", "skops", "pandas", "monai", "safetensors", "pyarrow"} <= names
    # pyradiomics is replaced by the torch radiomics engine (issue 15); Slicer and the PyTorch extension own these
    assert not names & {"pyradiomics", "numpy", "scipy", "simpleitk", "torch", "vtk"}


def test_an_uncovered_import_fails_the_check(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(os.path.join(REPO, "TACEPredictLib"), copy / "TACEPredictLib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    requirements = deps.read_requirements(REQUIREMENTS)
    assert deps.coverage_problems([str(copy / "TACEPredictLib")], requirements) == []
    # an import inside a function counts as much as one at the top
    with open(copy / "TACEPredictLib" / "stats" / "metrics.py", "a") as f:
        f.write("\n\ndef _late():\n    import tabulate\n    from skimage import measure\n    return tabulate, measure\n")
    # an optional package that the module never installs may only be imported inside a function
    (copy / "TACEPredictLib" / "cluster.py").write_text("import distributed\nimport json\nimport vtk\n")
    problems = deps.coverage_problems([str(copy / "TACEPredictLib")], requirements)
    assert len(problems) == 3, problems
    assert problems[0].startswith("import distributed at module level (cluster.py:1)")
    assert problems[1].startswith("import skimage (metrics.py:") and "'scikit-image~=X.Y'" in problems[1]
    assert problems[2].startswith("import tabulate (metrics.py:") and "'tabulate~=X.Y'" in problems[2]
    # covered once listed; a listed requirement that nothing imports, one without ~=, or one Slicer owns fails
    listed = requirements + ["tabulate~=0.9", "scikit-image~=0.24"]
    assert deps.coverage_problems([str(copy / "TACEPredictLib")], listed) == problems[:1]
    os.remove(copy / "TACEPredictLib" / "cluster.py")
    assert deps.coverage_problems([str(copy / "TACEPredictLib")], listed + ["h5py>=3", "numpy~=2.0"]) == [
        "h5py>=3 is in requirements.txt but nothing imports it",
        "h5py>=3: Slicer's guidelines ask for a ~=X.Y specifier",
        "numpy~=2.0: Slicer or the PyTorch extension owns it; never install it",
    ]
    # dropping scikit-learn from the list (the gap issue 20 found) fails
    without = [r for r in listed if not r.startswith("scikit-learn")]
    assert [p.split(" (")[0] for p in deps.coverage_problems([str(copy / "TACEPredictLib")], without)] == [
        "import sklearn"]


def test_a_not_installed_entry_that_nothing_imports_fails(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.py").write_text("import os\n")
    monkeypatch.setitem(deps.NOT_INSTALLED, "h5py", "test entry")
    problems = deps.coverage_problems([str(tmp_path / "lib")], [])
    assert "NOT_INSTALLED names h5py, which nothing imports any more: remove the entry" in problems


def _lower_bound(requirements, name):
    for requirement in requirements:
        if deps.canonical(deps.requirement_name(requirement)) == deps.canonical(name):
            return re.search(r">=\s*([\d.]+)", requirement).group(1)
    raise AssertionError(f"{name} not in pyproject.toml")


def test_minimum_versions_are_pyprojects():
    project = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["project"]
    every = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for name, minimum in deps.MINIMUM_VERSIONS.items():
        assert _lower_bound(every, name) == minimum, name
    assert project["requires-python"] == ">=" + ".".join(map(str, deps.MINIMUM_PYTHON))
    # what Slicer 5.10 ships passes the check
    shipped = {name: deps.SLICER_SHIPS[name][1] for name in ("numpy", "scipy", "SimpleITK")}
    assert deps.version_problems(dict(shipped, torch="2.13.0+cu130"), python=deps.SLICER_PYTHON) == []


def test_version_checks_name_what_is_too_old():
    assert deps.version_problems({"numpy": "1.24.0", "scipy": "1.10", "SimpleITK": "2.2.1", "torch": "2.2.0+cu118"},
                                 python=(3, 10)) == []
    problems = deps.version_problems({"numpy": "1.23.5", "scipy": None, "SimpleITK": "2.1.1.2",
                                      "torch": "2.1.2+cpu"}, python=(3, 9))
    assert len(problems) == 4
    assert problems[0].startswith("Slicer's Python 3.9 is older than TACEPredict supports (3.10 or later)")
    assert problems[1].startswith("Slicer's numpy 1.23.5 is older than TACEPredict supports (1.24 or later)")
    assert problems[2].startswith("Slicer's SimpleITK 2.1.1.2 is older")
    assert problems[3].startswith("torch 2.1.2+cpu (installed by the PyTorch extension) is older")
    # what is installed here is recent enough (the test suite's own environment)
    assert deps.version_problems() == []


def test_missing_requirements_follow_the_specifiers():
    requirements = ["pandas~=2.2", "scikit-learn~=1.5", "skops~=0.10", "pyarrow~=26.0"]
    versions = {"pandas": "3.0.1", "scikit-learn": "1.9.1", "skops": "0.9.0"}
    assert deps.missing_requirements(requirements, versions) == ["pandas~=2.2", "skops~=0.10", "pyarrow~=26.0"]
    assert deps.missing_requirements(deps.read_requirements(REQUIREMENTS)) == []  # installed in this environment


def test_constraints_pin_what_slicer_and_the_pytorch_extension_own():
    from importlib import metadata
    pins = deps.pinned_constraints()
    assert f"numpy=={metadata.version('numpy')}" in pins
    assert any(p.startswith("torch==") for p in pins)
    assert not any(p.lower().startswith(("pandas==", "scikit-learn==")) for p in pins)


def test_a_failed_step_is_named_and_stops_the_install(tmp_path):
    constraints = str(tmp_path / "constraints.txt")
    steps = [(f"install {r}", [r, "-c", constraints]) for r in ("pandas~=2.2", "skops~=0.10", "monai~=1.5")]
    ran = []

    def pip_install(arguments):
        ran.append(arguments[0])
        if arguments[0].startswith("skops"):
            raise OSError("no matching distribution")

    with pytest.raises(deps.InstallStepError) as failure:
        deps.run_steps(steps, pip_install)
    assert str(failure.value) == ("Step 2 of 3 failed: install skops~=0.10 (no matching distribution). "
                                  "Installed before it: install pandas~=2.2.")
    assert ran == ["pandas~=2.2", "skops~=0.10"]
    # nothing missing here: no step
    assert deps.install_steps(deps.read_requirements(REQUIREMENTS), constraints) == []
