"""What Slicer's own Python must get for TACEPredictLib, derived from what the library imports (issue 20).

Slicer's Python belongs to Slicer: the module may add packages but must not replace what Slicer or the PyTorch
extension installed. Every import of the library (top level or inside a function) is covered by one of:

- the standard library;
- what Slicer ships (``SLICER_SHIPS``: read from Slicer's ``SuperBuild/External_python-*.cmake`` and
  ``External_SimpleITK.cmake`` / ``External_VTK.cmake`` at tag v5.10.0, plus Slicer's own Python modules);
- the PyTorch extension (``torch``; the module asks it for ``torch>=MINIMUM_VERSIONS["torch"]``);
- the first-use list ``TACEPredict/Resources/requirements.txt`` (``~=`` specifiers, as Slicer's developer guide
  asks), which the module installs after the user confirms;
- ``NOT_INSTALLED``: optional imports the module never installs, each inside a function and each with its reason.

``Testing/test_slicer_dependencies.py`` fails when an import is covered by none of these, and
``scripts/slicer_python_env.sh`` installs exactly what the module would into a Python that mimics Slicer 5.10's.
Only the standard library is imported at module level, and ``packaging`` (which Slicer ships) inside functions:
the module calls this before anything is installed.
"""

import ast
import os
import re
import sys

# Slicer 5.10.0's Python 3.12.10 ships these (import name -> (distribution, version)); distribution None: a module
# of Slicer itself, not a pip package. vtk is Slicer's own build of VTK 9.5.2; SimpleITK Slicer's build of 2.5.2.
SLICER_SHIPS = {
    # External_python-numpy.cmake, External_python-scipy.cmake, External_SimpleITK.cmake, External_VTK.cmake
    "numpy": ("numpy", "2.0.2"),
    "scipy": ("scipy", "1.13.1"),
    "SimpleITK": ("SimpleITK", "2.5.2"),
    "vtk": ("vtk", "9.5.2"),
    "vtkmodules": ("vtk", "9.5.2"),
    # External_python-dicom-requirements.cmake
    "pydicom": ("pydicom", "2.4.4"),
    "six": ("six", "1.17.0"),
    "PIL": ("pillow", "11.2.1"),
    "retrying": ("retrying", "1.3.4"),
    "dicomweb_client": ("dicomweb-client", "0.60.0"),
    # External_python-requests-requirements.cmake
    "certifi": ("certifi", "2025.4.26"),
    "idna": ("idna", "3.10"),
    "charset_normalizer": ("charset-normalizer", "3.4.2"),
    "urllib3": ("urllib3", "2.4.0"),
    "requests": ("requests", "2.32.3"),
    # External_python-pythonqt-requirements.cmake
    "packaging": ("packaging", "25.0"),
    "pyparsing": ("pyparsing", "3.2.3"),
    # External_python-extension-manager-requirements.cmake and -ssl-requirements.cmake
    "chardet": ("chardet", "5.2.0"),
    "couchdb": ("CouchDB", "1.2"),
    "gitdb": ("gitdb", "4.0.12"),
    "smmap": ("smmap", "5.0.2"),
    "git": ("GitPython", "3.1.44"),
    "cryptography": ("cryptography", "45.0.3"),
    "jwt": ("PyJWT", "2.10.1"),
    "wrapt": ("wrapt", "1.17.2"),
    "deprecated": ("Deprecated", "1.2.18"),
    "pycparser": ("pycparser", "2.22"),
    "cffi": ("cffi", "1.17.1"),
    "nacl": ("PyNaCl", "1.5.0"),
    "dateutil": ("python-dateutil", "2.9.0.post0"),
    "typing_extensions": ("typing_extensions", "4.14.0"),
    "github": ("PyGithub", "2.6.1"),
    # External_python-pip.cmake, -setuptools.cmake, -wheel.cmake
    "pip": ("pip", "25.1.1"),
    "setuptools": ("setuptools", "80.9.0"),
    "pkg_resources": ("setuptools", "80.9.0"),
    "wheel": ("wheel", "0.45.1"),
    # Slicer's own modules
    "slicer": (None, None), "qt": (None, None), "ctk": (None, None), "sitkUtils": (None, None),
    "vtkITK": (None, None), "vtkAddon": (None, None), "vtkSegmentationCore": (None, None),
    "PythonQt": (None, None), "DICOMLib": (None, None),
}
SLICER_PYTHON = (3, 12)

# torch comes from the PyTorch extension (its module is PyTorchUtils), never from the first-use list.
PYTORCH_EXTENSION = {"torch": "torch", "PyTorchUtils": None}

# The oldest versions the library supports (pyproject.toml's lower bounds; the test keeps them equal). Slicer's
# numpy, SciPy and SimpleITK and the PyTorch extension's torch are checked against these before anything is
# installed: the module cannot upgrade them without breaking Slicer or the PyTorch extension.
MINIMUM_VERSIONS = {"numpy": "1.24", "scipy": "1.10", "SimpleITK": "2.2", "torch": "2.2"}
MINIMUM_PYTHON = (3, 10)

# Import names whose distribution has another name.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "radiomics": "pyradiomics", "PIL": "pillow", "yaml": "PyYAML",
                 "skimage": "scikit-image", "dateutil": "python-dateutil"}

# Requirements that no library file imports but that a library call needs.
ENGINES = {"pyarrow": "pandas reads and writes features.parquet (extraction, cohort training) with it"}

# Optional imports that the module never installs: each is imported inside a function only.
NOT_INSTALLED = {
    "distributed": "Dask cluster extraction (`tacepredict extract --dask`) only; the module extracts with one "
                   "worker process",
    "highdicom": "DICOM SEG / RTSTRUCT reading and SEG write-back need highdicom, which needs pydicom >= 3; Slicer "
                 "5.10 ships pydicom 2.4.4, which the module must not replace (Slicer's own DICOM module loads SEG "
                 "into the scene); the command line has it (the dicom extra)",
    "jinja2": "the HTML model report (`tacepredict report`) is a command-line feature; the module shows reports "
              "as scene tables and charts",
    "markupsafe": "Jinja2's escaping, for the command-line model report only",
    "radiomics": "pyradiomics, the reference engine (`--radiomics-engine pyradiomics`), does not build on Slicer's "
                 "Python 3.12; Slicer uses the library's own torch engine, which gives its features",
}


def canonical(name):
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement):
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0]


def read_requirements(path):
    """The requirement lines of a pip requirements file, without comments."""
    with open(path) as f:
        lines = [re.sub(r"(^|\s)#.*", "", line).strip() for line in f]
    return [line for line in lines if line]


def library_imports(paths):
    """{top-level import name: [(file, line, inside a function or class)]} of every absolute import in the .py
    files under ``paths`` (folders or files)."""
    files = []
    for path in paths:
        if os.path.isfile(path):
            files.append(path)
            continue
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    found = {}

    def visit(node, file, nested):
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.setdefault(alias.name.split(".")[0], []).append((file, child.lineno, nested))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.setdefault(child.module.split(".")[0], []).append((file, child.lineno, nested))
            visit(child, file, inner)

    for file in files:
        with open(file, encoding="utf-8") as f:
            visit(ast.parse(f.read(), filename=file), file, False)
    return found


def coverage_problems(paths, requirements, own_packages=("TACEPredictLib",)):
    """One line per import under ``paths`` that Slicer's Python would lack after the first-use install of
    ``requirements`` (requirement strings), and per requirement that nothing needs; empty when all agree."""
    imports = library_imports(paths)
    listed = {canonical(requirement_name(r)) for r in requirements}
    stdlib = set(sys.stdlib_module_names)
    problems = []
    for name, places in sorted(imports.items()):
        distribution = canonical(DISTRIBUTIONS.get(name, name))
        if (name in stdlib or name in own_packages or name in SLICER_SHIPS or name in PYTORCH_EXTENSION
                or distribution in listed):
            continue
        where = ", ".join(f"{os.path.basename(f)}:{line}" for f, line, _ in places)
        if name in NOT_INSTALLED:
            top = [f"{os.path.basename(f)}:{line}" for f, line, nested in places if not nested]
            if top:
                problems.append(f"import {name} at module level ({', '.join(top)}): it is not installed in Slicer "
                                f"({NOT_INSTALLED[name]}), so import it inside the function that needs it")
            continue
        problems.append(f"import {name} ({where}) is covered neither by requirements.txt, nor by what Slicer "
                        f"ships, nor by the PyTorch extension: add '{DISTRIBUTIONS.get(name, name)}~=X.Y' to "
                        "TACEPredict/Resources/requirements.txt")
    imported = {canonical(DISTRIBUTIONS.get(n, n)) for n in imports}
    for requirement in requirements:
        name = canonical(requirement_name(requirement))
        if name not in imported and name not in {canonical(e) for e in ENGINES}:
            problems.append(f"{requirement} is in requirements.txt but nothing imports it")
        if not re.search(r"~=\s*\d+\.\d+", requirement):
            problems.append(f"{requirement}: Slicer's guidelines ask for a ~=X.Y specifier")
        if name in {canonical(d) for d, _ in SLICER_SHIPS.values() if d} | {"torch"}:
            problems.append(f"{requirement}: Slicer or the PyTorch extension owns it; never install it")
    for name in sorted(NOT_INSTALLED):
        if name not in imports:
            problems.append(f"NOT_INSTALLED names {name}, which nothing imports any more: remove the entry")
    return problems


def installed_version(distribution, module=None):
    """The installed version of a distribution, or of a module's ``__version__`` where Slicer's own builds (e.g.
    SimpleITK) carry no pip metadata; None when absent."""
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pass
    if module is not None:
        import importlib.util
        if importlib.util.find_spec(module) is not None:
            return getattr(__import__(module), "__version__", None)
    return None


def version_problems(versions=None, python=None):
    """What in Slicer's Python is older than the library supports, one sentence each (empty: fine). ``versions``:
    {name: version or None}, default what is installed; absent packages are not a problem here (torch is then
    installed by the PyTorch extension with the minimum version as its requirement)."""
    from packaging.version import Version
    python = tuple(python or sys.version_info[:2])
    problems = []
    if python < MINIMUM_PYTHON:
        problems.append(f"Slicer's Python {'.'.join(map(str, python))} is older than TACEPredict supports "
                        f"({'.'.join(map(str, MINIMUM_PYTHON))} or later): use Slicer 5.10 or later.")
    for name, minimum in MINIMUM_VERSIONS.items():
        version = versions.get(name) if versions is not None else installed_version(name, name)
        if version is None or Version(version).release >= Version(minimum).release:
            continue
        if name == "torch":
            problems.append(f"torch {version} (installed by the PyTorch extension) is older than TACEPredict "
                            f"supports ({minimum} or later): uninstall it in the PyTorch Utils module and install "
                            f"torch>={minimum} there.")
        else:
            problems.append(f"Slicer's {name} {version} is older than TACEPredict supports ({minimum} or later): "
                            "use Slicer 5.10 or later (TACEPredict never replaces Slicer's own packages).")
    return problems


def missing_requirements(requirements, versions=None):
    """The requirements that the installed distributions (or ``versions``: {distribution: version}) do not
    satisfy, in their order."""
    from packaging.requirements import Requirement
    missing = []
    for requirement in requirements:
        parsed = Requirement(requirement)
        version = (versions.get(parsed.name) if versions is not None else installed_version(parsed.name))
        if version is None or not parsed.specifier.contains(version, prereleases=True):
            missing.append(requirement)
    return missing


def pinned_constraints():
    """``name==version`` for every installed distribution that Slicer ships or the PyTorch extension installed:
    given to pip as a constraints file, so that no requirement replaces them."""
    names = sorted({d for d, _ in SLICER_SHIPS.values() if d} | {"torch"}, key=str.lower)
    pins = []
    for name in names:
        version = installed_version(name)
        if version is not None:
            pins.append(f"{name}=={version}")
    return pins


def install_steps(requirements, constraints_file):
    """The first-use install as named steps ``[(title, pip install arguments)]``: one per missing requirement, each
    constrained by ``constraints_file`` (see ``pinned_constraints``). One step per package, so that a failure
    names the package; the module and scripts/slicer_python_env.sh run the same steps."""
    return [(f"install {requirement}", [requirement, "-c", constraints_file])
            for requirement in missing_requirements(requirements)]


class InstallStepError(RuntimeError):
    """A first-use install step failed; the message says which, and what was installed before it."""


def run_steps(steps, pip_install):
    """Run ``pip_install(arguments)`` for each step in order; on the first failure raise InstallStepError naming
    the step (the steps before it stay installed; nothing after it is tried)."""
    for number, (title, arguments) in enumerate(steps, 1):
        try:
            pip_install(arguments)
        except Exception as exc:  # noqa: BLE001 - re-raised with the step named
            done = ", ".join(t for t, _ in steps[:number - 1]) or "nothing"
            raise InstallStepError(f"Step {number} of {len(steps)} failed: {title} ({exc}). Installed before "
                                   f"it: {done}.") from exc
