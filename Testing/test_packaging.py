"""Extension packaging: the CMake lists name every file an installed extension needs."""

import json
import os
import re
import shutil
import struct
import tomllib

from conftest import REPO

MODULE_DIR = os.path.join(REPO, "TACEPredict")


def cmake_lists(path):
    """The `set(NAME item item ...)` lists of a CMakeLists.txt, with ${MODULE_NAME} expanded."""
    text = re.sub(r"(?m)^\s*#.*$", "", open(path).read())
    lists = {}
    for name, body in re.findall(r'set\(\s*(\w+)((?:\s+(?:"[^"]*"|[^\s")]+))*)\s*\)', text):
        lists[name] = re.findall(r'"[^"]*"|\S+', body)
    module = lists.get("MODULE_NAME", [""])[0]
    return {k: [v.replace("${MODULE_NAME}", module) for v in items] for k, items in lists.items()}


def unlisted_files(repo):
    """Files of the tree that the module's CMakeLists.txt does not install, and listed files that do not exist.
    Every file under TACEPredict/ and TACEPredictLib/ counts (scripts, .ui layouts, icons, data files of the
    library wherever they sit), except CMakeLists.txt and Python's caches."""
    lists = cmake_lists(os.path.join(repo, "TACEPredict", "CMakeLists.txt"))
    listed = ({os.path.join("TACEPredict", f) for f in lists["MODULE_PYTHON_SCRIPTS"]}
              | {os.path.join("TACEPredict", f) for f in lists["MODULE_PYTHON_RESOURCES"]}
              | set(lists["TACEPREDICTLIB_PYTHON_SCRIPTS"]) | set(lists["TACEPREDICTLIB_RESOURCES"]))
    present = set()
    for top in ("TACEPredict", "TACEPredictLib"):
        for folder, dirs, files in os.walk(os.path.join(repo, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                if f == "CMakeLists.txt" or f.endswith(".pyc"):
                    continue
                present.add(os.path.relpath(os.path.join(folder, f), repo))
    return sorted(present - listed), sorted(listed - present)


def test_cmake_lists_name_every_file():
    missing, dangling = unlisted_files(REPO)
    assert missing == [], f"not in TACEPredict/CMakeLists.txt (an installed extension would lack them): {missing}"
    assert dangling == [], f"listed but not in the tree: {dangling}"


def test_the_check_catches_a_forgotten_file(tmp_path):
    copy = tmp_path / "repo"
    for top in ("TACEPredict", "TACEPredictLib"):
        shutil.copytree(os.path.join(REPO, top), copy / top, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "TACEPredictLib" / "forgotten.py").write_text("x = 1\n")
    (copy / "TACEPredictLib" / "sub").mkdir()
    (copy / "TACEPredictLib" / "sub" / "__init__.py").write_text("")
    (copy / "TACEPredictLib" / "coefficients.json").write_text("{}")
    (copy / "TACEPredict" / "Resources" / "Icons" / "extra.png").write_bytes(b"")
    (copy / "TACEPredict" / "Resources" / "UI" / "Extra.ui").write_text("<ui/>")
    os.remove(copy / "TACEPredictLib" / "data" / "demo_cohort.py")
    os.remove(copy / "TACEPredict" / "Resources" / "UI" / "TACEPredict.ui")
    missing, dangling = unlisted_files(str(copy))
    assert missing == ["TACEPredict/Resources/Icons/extra.png", "TACEPredict/Resources/UI/Extra.ui",
                       "TACEPredictLib/coefficients.json", "TACEPredictLib/forgotten.py",
                       "TACEPredictLib/sub/__init__.py"]
    assert dangling == ["TACEPredict/Resources/UI/TACEPredict.ui", "TACEPredictLib/data/demo_cohort.py"]


def test_extension_metadata():
    lists = cmake_lists(os.path.join(REPO, "CMakeLists.txt"))
    text = open(os.path.join(REPO, "CMakeLists.txt")).read()
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                  "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert lists.get(field), f"{field} is not set"
    assert lists["EXTENSION_DEPENDS"] == ['"PyTorch"']
    assert "add_subdirectory(TACEPredict)" in text and "Slicer_EXTENSION_CPACK" in text
    module_cmake = open(os.path.join(MODULE_DIR, "CMakeLists.txt")).read()
    assert "slicerMacroBuildScriptedModule" in module_cmake

    entry = json.load(open(os.path.join(REPO, "TACEPredict.json")))
    assert entry["tier"] == 1 and entry["category"] == lists["EXTENSION_CATEGORY"][0].strip('"')
    assert entry["build_dependencies"] == ["PyTorch"] and entry["scm_url"].endswith(".git")
    # The screenshot the extension catalogue shows is in the tree.
    screenshot = lists["EXTENSION_SCREENSHOTURLS"][0].strip('"').split("/main/")[1]
    assert os.path.isfile(os.path.join(REPO, screenshot))


def _png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_icons_are_128_png():
    assert _png_size(os.path.join(REPO, "TACEPredict.png")) == (128, 128)
    assert _png_size(os.path.join(MODULE_DIR, "Resources", "Icons", "TACEPredict.png")) == (128, 128)


def test_pip_metadata():
    project = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["project"]
    assert project["name"] == "tacepredict"
    assert project["scripts"]["tacepredict"] == "TACEPredictLib.cli:main"
    assert {"deep", "radiomics", "slicer", "test"} <= set(project["optional-dependencies"])
    pinned = {line.split("==")[0].lower() for line in open(os.path.join(REPO, "constraints.txt"))
              if "==" in line}
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        name = re.split(r"[<>=!\[ ]", requirement)[0].lower()
        assert name in pinned, f"{name} is not pinned in constraints.txt"
    # Slicer's module installs these into Slicer's Python: never numpy or SimpleITK.
    slicer_requirements = open(os.path.join(MODULE_DIR, "Resources", "requirements.txt")).read().lower()
    assert "numpy" not in re.sub(r"#.*", "", slicer_requirements)
    assert "simpleitk" not in re.sub(r"#.*", "", slicer_requirements)


def test_module_compiles():
    import py_compile
    py_compile.compile(os.path.join(MODULE_DIR, "TACEPredict.py"), doraise=True)
