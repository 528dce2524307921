"""TACEPredict: outcome prediction after TACE for hepatocellular carcinoma (research use only).

The Widget is thin: every action goes through TACEPredictLogic, which works from scripts and headless Slicer
without any dialog, and which delegates the work to the TACEPredictLib package.
"""

import functools
import json
import logging
import math
import os
import pathlib
import shutil
import sys
from typing import Annotated

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin

# What TACEPredictLib needs beyond what Slicer ships and the PyTorch extension; installed on first use.
REQUIREMENTS_FILE = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")
# The default model-bundle folder (every sub-folder holding a model.json is used); a Slicer setting.
BUNDLE_FOLDER_SETTING = "TACEPredict/BundleFolder"


def libraryCall(func):
    """The Logic's error boundary (TACEPredictLib.errors.user_errors): whatever a library call raises leaves as
    an InputError whose message names the case, file or column and the fix (the widget shows it); the
    original traceback is kept only with TACEPREDICT_DEBUG=1."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from TACEPredictLib.errors import user_errors
        return user_errors(func)(*args, **kwargs)
    return wrapper


def _modelCatalogue():
    """The library's model declarations (TACEPredictLib/Resources/model_catalogue.json, written from its registry):
    plain JSON, so the list is there before the first-use install. TACEPredictLib sits next to this module in an
    installed extension, one folder up in the source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (here, os.path.dirname(here)):
        path = os.path.join(root, "TACEPredictLib", "Resources", "model_catalogue.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
    raise RuntimeError("TACEPredictLib/Resources/model_catalogue.json is missing: reinstall the extension")


# The cohort section's model choices: model kind -> its declaration (published scores: evaluate only).
COHORT_MODELS = {entry["kind"]: entry for entry in _modelCatalogue()}


class TACEPredict(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TACEPredict"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []
        self.parent.contributors = ["TACEPredict developers"]
        self.parent.helpText = (
            "Predicts outcome after transarterial chemoembolization (TACE) of hepatocellular carcinoma from "
            "contrast CT, the tumour segmentation and clinical data. <b>Research use only</b>: not a medical "
            "device. Cohort manifests, the demo cohort and the command line are described in the README.")
        self.parent.acknowledgementText = (
            "Clinical reference data: TCIA HCC-TACE-Seg (Moawad et al. 2021, CC BY 4.0).")


def requirements():
    """The first-use list (Resources/requirements.txt); TACEPredictLib.slicer.dependencies needs only the standard
    library and Slicer's own packaging, so it is usable before anything is installed."""
    from TACEPredictLib.slicer.dependencies import read_requirements
    return read_requirements(REQUIREMENTS_FILE)


def missingRequirements():
    """What the first-use install would add: torch (from the PyTorch extension) if absent, and every requirement
    that the installed packages do not satisfy."""
    import importlib.util
    from TACEPredictLib.slicer.dependencies import missing_requirements
    torch = [] if importlib.util.find_spec("torch") is not None else ["torch (PyTorch extension)"]
    return torch + missing_requirements(requirements())


@parameterNodeWrapper
class TACEPredictParameterNode:
    """The module's state, saved with the scene. Fields named by a SlicerParameterName property in
    Resources/UI/TACEPredict.ui are bound to their widget (Testing/test_module_ui.py checks the names and types);
    the ranges and choices here are what connectGui gives the spin boxes and the model combo box."""
    manifestPath: pathlib.Path
    demoFolder: pathlib.Path
    demoCases: Annotated[int, WithinRange(1, 1000)] = 20
    demoSeed: Annotated[int, WithinRange(0, 1000000)] = 0
    caseId: str = ""
    # Patient (Apply)
    arterialVolume: vtkMRMLScalarVolumeNode
    portalVolume: vtkMRMLScalarVolumeNode
    delayedVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    segmentId: str = ""
    labelmap: vtkMRMLLabelMapVolumeNode
    clinicalJson: str = "{}"
    bundleFolder: pathlib.Path
    forceCpu: bool = False
    heatmaps: bool = True
    # Cohort
    cohortOut: pathlib.Path
    trainTask: str = "survival"
    trainModel: Annotated[str, Choice(list(COHORT_MODELS))] = "nomogram"


class TACEPredictWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._connectionTag = None

    def setup(self):
        """The layout is Resources/UI/TACEPredict.ui (Qt Designer); widgets with a SlicerParameterName property
        are bound to the parameter node by connectGui, the rest is wired here."""
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TACEPredict.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)  # the .ui passes the scene on to every MRML selector
        self.ui.trainModelCombo.toolTip = ("A model kind (its task: " + ", ".join(
            f"{k} {v['task']}" for k, v in COHORT_MODELS.items()) + "); published scores: evaluate only")

        self.logic = TACEPredictLogic()
        self.process = None  # the running cohort job (a background PythonSlicer process)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.loadClinicalButton.connect("clicked(bool)", self.onLoadClinical)
        self.ui.validateButton.connect("clicked(bool)", self.onValidate)
        self.ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.ui.generateButton.connect("clicked(bool)", self.onGenerate)
        self.ui.extractButton.connect("clicked(bool)", lambda: self.onCohortJob("extract"))
        self.ui.trainButton.connect("clicked(bool)", lambda: self.onCohortJob("train"))
        self.ui.evaluateButton.connect("clicked(bool)", lambda: self.onCohortJob("evaluate"))
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.clinicalTable.connect("cellChanged(int,int)", self.onClinicalEdited)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        self.disconnectParameterNode()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.disconnectParameterNode()

    def onSceneStartClose(self, caller, event):
        self.disconnectParameterNode()
        self._parameterNode = None

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.disconnectParameterNode()
        self._parameterNode = self.logic.getParameterNode()
        p = self._parameterNode
        if not str(p.bundleFolder or "").strip(".") and qt.QSettings().value(BUNDLE_FOLDER_SETTING):
            p.bundleFolder = pathlib.Path(qt.QSettings().value(BUNDLE_FOLDER_SETTING))
        # every widget of the .ui with a SlicerParameterName property (segment and clinical form: by hand)
        self._connectionTag = p.connectGui(self.ui)
        self.ui.segmentSelector.setCurrentNode(p.segmentation)
        if p.segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(p.segmentId)
        self.populateClinicalForm()

    def disconnectParameterNode(self):
        if self._parameterNode is not None and self._connectionTag is not None:
            self._parameterNode.disconnectGui(self._connectionTag)
        self._connectionTag = None

    def onSegmentChanged(self, *args):
        if self._parameterNode is not None:
            self._parameterNode.segmentation = self.ui.segmentSelector.currentNode()
            self._parameterNode.segmentId = self.ui.segmentSelector.currentSegmentID() or ""

    def populateClinicalForm(self):
        """Fill the form's fields (once TACEPredictLib can be imported) and values (from the parameter node)."""
        try:
            fields = self.logic.clinicalFields()
        except ImportError:
            return  # dependencies not installed yet: filled after the first Apply installs them
        values = json.loads(self._parameterNode.clinicalJson or "{}") if self._parameterNode else {}
        self.ui.clinicalTable.blockSignals(True)
        self.ui.clinicalTable.setRowCount(len(fields))
        for row, (name, description) in enumerate(fields.items()):
            item = qt.QTableWidgetItem(name)
            item.setFlags(qt.Qt.ItemIsEnabled)
            item.setToolTip(description)
            self.ui.clinicalTable.setItem(row, 0, item)
            value = values.get(name)
            self.ui.clinicalTable.setItem(row, 1, qt.QTableWidgetItem("" if value is None else str(value)))
        self.ui.clinicalTable.blockSignals(False)

    def clinicalValues(self):
        values = {}
        for row in range(self.ui.clinicalTable.rowCount):
            name, value = self.ui.clinicalTable.item(row, 0), self.ui.clinicalTable.item(row, 1)
            if name is not None and value is not None and value.text().strip():
                values[name.text()] = value.text().strip()
        return values

    def onClinicalEdited(self, row, column):
        if self._parameterNode is not None:
            self._parameterNode.clinicalJson = json.dumps(self.clinicalValues())

    def ensureDependencies(self):
        """First use: say what in Slicer's Python is too old before installing anything, then ask, then install
        (a failed step raises with its name; the callers show it)."""
        problems = self.logic.versionProblems()
        if problems:
            slicer.util.errorDisplay("\n\n".join(problems), windowTitle="TACEPredict")
            return False
        missing = missingRequirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                "TACEPredict needs these Python packages, installed once into Slicer's Python (Slicer's own "
                "packages and the PyTorch extension's torch are kept as they are):\n\n" + "\n".join(missing)
                + "\n\nInstall now?", windowTitle="TACEPredict"):
            return False
        with slicer.util.WaitCursor():
            self.logic.installRequirements()
        self.populateClinicalForm()
        return True

    def report(self, lines):
        self.ui.output.setPlainText("\n".join(lines))

    def onApply(self):
        with slicer.util.tryWithErrorDisplay("TACEPredict could not run.", waitCursor=True):
            if not self.ensureDependencies():
                return
            p = self._parameterNode
            folder = str(p.bundleFolder or "").strip()
            if folder not in ("", "."):
                qt.QSettings().setValue(BUNDLE_FOLDER_SETTING, folder)
            out = self.logic.process(
                arterial=p.arterialVolume, portal=p.portalVolume, delayed=p.delayedVolume,
                segmentation=p.segmentation, segmentId=p.segmentId or None, labelmap=p.labelmap,
                clinical=self.clinicalValues(), bundleFolder=folder, caseId=p.caseId or "patient",
                forceCpu=p.forceCpu, heatmaps=p.heatmaps)
            heat = [node for name, node in out["nodes"].items() if name.startswith("heatmap")]
            if heat:  # the first heat map over the arterial CT
                slicer.util.setSliceViewerLayers(background=p.arterialVolume, foreground=heat[0],
                                                 foregroundOpacity=0.4)
            results = out["results"]
            lines = [f"{r.task} / {r.model}: score {r.score:.3f}, {r.probability_of} {r.probability:.3f}, "
                     (f"{r.risk_group} risk (cut-off {r.cutoff:.3f})" if r.risk_group else "no cut-off (none "
                      "published)") if not r.error else
                     f"{r.task} / {r.model}: NOT RUN - {r.error}" for r in results.itertuples()]
            lines += sorted(set(results["notice"])) + [f"{k}: {v:.1f} s" for k, v in out["timings"].items()]
            self.report(lines)

    def onLoadClinical(self):
        with slicer.util.tryWithErrorDisplay("Loading the clinical row failed.", waitCursor=True):
            if not self.ensureDependencies():
                return
            values = self.logic.clinicalFromCsv(self.ui.clinicalCsvEdit.currentPath, self.ui.clinicalCaseEdit.text)
            self._parameterNode.clinicalJson = json.dumps(values)
            self._parameterNode.caseId = self.ui.clinicalCaseEdit.text
            self.populateClinicalForm()

    def onValidate(self):
        with slicer.util.tryWithErrorDisplay("Manifest validation failed.", waitCursor=True):
            if not self.ensureDependencies():
                return
            problems = self.logic.validateManifest(self._parameterNode.manifestPath)
            errors = [p for p in problems if p.severity == "error"]
            self.report([str(p) for p in problems]
                        + [f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)"])
            self.ui.caseCombo.clear()
            if not errors:
                self.ui.caseCombo.addItems(self.logic.caseIds(self._parameterNode.manifestPath))

    def onLoadCase(self):
        with slicer.util.tryWithErrorDisplay("Loading the case failed.", waitCursor=True):
            p = self._parameterNode
            caseId = self.ui.caseCombo.currentText
            nodes = self.logic.loadCase(p.manifestPath, caseId)
            p.arterialVolume = nodes.get("ct_ap")
            p.portalVolume = nodes.get("ct_pvp")
            p.delayedVolume = nodes.get("ct_dp")
            self.ui.segmentSelector.setCurrentNode(nodes.get("seg"))
            p.caseId = caseId
            p.clinicalJson = json.dumps(self.logic.clinicalFromCsv(p.manifestPath, caseId))
            self.populateClinicalForm()
            self.report([f"loaded {name}: {node.GetName()}" for name, node in nodes.items()])

    def onGenerate(self):
        with slicer.util.tryWithErrorDisplay("Generating the demo cohort failed.", waitCursor=True):
            if not self.ensureDependencies():
                return
            p = self._parameterNode
            path = self.logic.generateDemoCohort(p.demoFolder, p.demoCases, p.demoSeed)
            p.manifestPath = pathlib.Path(path)
            self.report([f"wrote {p.demoCases} synthetic cases: {path}",
                         "SYNTHETIC DEMO COHORT - not patient data."])

    def onCohortJob(self, action):
        """Extract, train or evaluate in a background PythonSlicer process: Slicer stays responsive."""
        with slicer.util.tryWithErrorDisplay(f"The {action} job could not start."):
            if self.process is not None:
                raise RuntimeError("a cohort job is running; wait for it or press Cancel")
            if not self.ensureDependencies():
                return
            p = self._parameterNode
            command, self.jobOutput = self.logic.cohortCommand(action, p.manifestPath, p.cohortOut,
                                                               model=p.trainModel, forceCpu=p.forceCpu)
            self.jobAction = action
            self.process = qt.QProcess()
            self.process.setProcessChannelMode(qt.QProcess.MergedChannels)
            self.process.connect("readyRead()", self.onJobOutput)
            self.process.connect("finished(int)", self.onJobFinished)
            self.report([" ".join(command)])
            self.ui.progressBar.setRange(0, 0)  # busy until the job reports its progress
            self.ui.cancelButton.enabled = True
            self.process.start(command[0], command[1:])

    def onJobOutput(self):
        text = self.process.readAll().data().decode("utf-8", "replace")
        self.ui.output.appendPlainText(text.rstrip())
        done = self.logic.progressFromOutput(text)
        if done is not None:
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.value = int(100 * done)

    def onJobFinished(self, exitCode):
        action, self.process = self.jobAction, None
        self.ui.cancelButton.enabled = False
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 100 if exitCode == 0 else 0
        if exitCode != 0:
            self.ui.output.appendPlainText(f"{action} stopped (exit code {exitCode}); see the lines above.")
            return
        if action == "evaluate":
            with slicer.util.tryWithErrorDisplay("Showing the report failed."):
                self.logic.showReport(self.jobOutput, f"TACEPredict {self._parameterNode.trainModel}")
        self.ui.output.appendPlainText(f"{action} finished: {self.jobOutput}")

    def onCancel(self):
        if self.process is not None:
            self.process.kill()
            self.ui.output.appendPlainText("cancelled")


class TACEPredictLogic(ScriptedLoadableModuleLogic):
    """Batch-safe: no dialogs; errors are exceptions (InputError names case and field). Every method works
    from a script or ``Slicer --no-main-window``; the work itself is in TACEPredictLib."""

    def getParameterNode(self):
        return TACEPredictParameterNode(super().getParameterNode())

    @staticmethod
    def versionProblems():
        """What in Slicer's Python is older than TACEPredictLib supports (Python, numpy, SciPy, SimpleITK, torch),
        one sentence each; empty when fine."""
        from TACEPredictLib.slicer.dependencies import version_problems
        return version_problems()

    def installRequirements(self):
        """The first-use install, without any dialog (the widget asks first; scripts call this directly).

        1. Slicer's numpy, SciPy, SimpleITK and an installed torch are checked against the versions the library
           supports; if one is older, this raises before anything is installed.
        2. torch from the PyTorch extension, if absent (its requirement: the library's minimum).
        3. One pip step per missing line of Resources/requirements.txt, with every package Slicer ships and torch
           pinned at their installed versions, so that none of them is replaced.
        A failed step raises TACEPredictLib.slicer.dependencies.InstallStepError naming the step."""
        import tempfile
        from TACEPredictLib.slicer import dependencies as deps
        problems = self.versionProblems()
        if problems:
            raise RuntimeError("Nothing was installed: " + " ".join(problems))
        try:
            self.installTorch()
        except Exception as exc:
            raise deps.InstallStepError(f"Installing torch through the PyTorch extension failed: {exc}") from exc
        problems = self.versionProblems()  # the torch the extension may just have installed
        if problems:
            raise RuntimeError("torch was installed, nothing else: " + " ".join(problems))
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
            handle.write("\n".join(deps.pinned_constraints()) + "\n")
        try:
            deps.run_steps(deps.install_steps(requirements(), handle.name), self._pipInstall)
        except deps.InstallStepError as exc:
            raise deps.InstallStepError(f"{exc} pip's output is in the Python console.") from exc
        finally:
            os.remove(handle.name)

    @staticmethod
    def _pipInstall(arguments):
        """pip install in Slicer's Python; Slicer 5.12+'s installer without its progress dialog (batch-safe)."""
        packaging = getattr(slicer, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_install"):
            packaging.pip_install(arguments, show_progress=False)
        else:
            slicer.util.pip_install(arguments)

    @staticmethod
    def installTorch():
        """torch from the PyTorch extension (the right build for this machine's GPU), never from PyPI here."""
        import importlib.util
        from TACEPredictLib.slicer.dependencies import MINIMUM_VERSIONS
        if importlib.util.find_spec("torch") is not None:
            return
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError("TACEPredict needs the PyTorch extension: install 'PyTorch' from the Extension "
                               "Manager, restart Slicer and try again.") from None
        PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                      torchVersionRequirement=f">={MINIMUM_VERSIONS['torch']}")

    @staticmethod
    def _path(value, what):
        from TACEPredictLib import InputError
        text = str(value or "").strip()
        if text in ("", "."):
            raise InputError(f"no {what} chosen", fix=f"choose the {what}")
        return text

    def clinicalFields(self):
        from TACEPredictLib.data.manifest import CLINICAL_COLUMNS, COLUMNS
        return {name: COLUMNS[name].description + (f" ({COLUMNS[name].unit})" if COLUMNS[name].unit else "")
                for name in CLINICAL_COLUMNS}

    @libraryCall
    def clinicalFromCsv(self, path, caseId):
        """One patient's clinical fields from a manifest or clinical CSV (e.g. the imported HCC-TACE-Seg)."""
        from TACEPredictLib.data.manifest import CLINICAL_COLUMNS, read_manifest
        row = read_manifest(self._path(path, "clinical CSV")).row(caseId)
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()
                if k in CLINICAL_COLUMNS and v == v and v is not None}

    @staticmethod
    @libraryCall
    def bundlesIn(folder):
        """Every model bundle (a sub-folder with a model.json) in ``folder``; the folder itself if it is one."""
        folder = str(folder or "").strip()
        if folder in ("", "."):
            return []
        if os.path.isfile(os.path.join(folder, "model.json")):
            return [folder]
        if not os.path.isdir(folder):
            from TACEPredictLib import InputError
            raise InputError(f"model bundle folder not found: {folder}", column="model folder",
                             fix="choose the folder holding the model bundles (each with a model.json)")
        return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                      if os.path.isfile(os.path.join(folder, name, "model.json")))

    @libraryCall
    def process(self, arterial, portal=None, delayed=None, segmentation=None, segmentId=None, labelmap=None,
                label=None, clinical=None, bundleFolder=None, bundles=(), caseId="patient", forceCpu=False,
                heatmaps=True, scene=None):
        """Predict one patient from scene nodes; results go into table, chart and heat-map nodes of ``scene``
        (default: Slicer's). Returns what ``TACEPredictLib.mrml.run_case`` returns."""
        from TACEPredictLib.slicer.mrml import run_case
        phases = {"ct_ap": arterial, "ct_pvp": portal, "ct_dp": delayed}
        return run_case(scene or slicer.mrmlScene, phases, segmentation=segmentation, segment_id=segmentId,
                        labelmap=labelmap, label=label, clinical=clinical,
                        bundles=list(bundles) + self.bundlesIn(bundleFolder), case_id=caseId or "patient",
                        heatmaps=heatmaps, device="cpu" if forceCpu else "auto")

    @libraryCall
    def cohortCommand(self, action, manifestPath, outFolder, model="nomogram", forceCpu=False):
        """The command line of a cohort job and the folder it writes (run in a background process)."""
        manifest = self._path(manifestPath, "cohort manifest (CSV)")
        out = self._path(outFolder, "output folder")
        python = shutil.which("PythonSlicer") or sys.executable
        # TACEPredictLib sits next to this module, which is not on PythonSlicer's own path
        here = os.path.dirname(os.path.abspath(__file__))
        base = [python, "-c", f"import sys; sys.path.insert(0, {here!r}); from TACEPredictLib.cli import main; "
                "sys.exit(main())"]
        # A button press re-runs the job into the module's own cohort folder: replacing its previous result is
        # what the user asked for (the command line asks for --overwrite instead).
        device = ["--device", "cpu"] if forceCpu else []
        features = os.path.join(out, "features")
        if action == "extract":
            # radiomics by the library's own torch engine (its default): pyradiomics is never installed in Slicer;
            # every backbone a trained model reads by default, so that each one's Train finds its features
            from TACEPredictLib.slicer import COHORT_BACKBONES
            return (base + ["extract", "--manifest", manifest, "--out", features, "--workers", "1",
                            "--deep", ",".join(COHORT_BACKBONES), "--overwrite"] + device, features)
        spec = COHORT_MODELS[model]
        if spec["published"]:  # published coefficients: nothing to extract or train
            if action != "evaluate":
                raise ValueError(f"{spec['title']} needs no extraction or training: choose Evaluate.")
            report = os.path.join(out, "reports", model)
            return base + ["evaluate", "--task", spec["task"], "--model", model, "--manifest", manifest,
                           "--out", report, "--overwrite"], report
        model_dir = os.path.join(out, "models", model)
        if action == "train":
            extra = ["--features", features] if os.path.isdir(features) else []
            return base + ["train", "--task", spec["task"], "--model", model, "--manifest",
                           manifest, "--out", model_dir, "--overwrite"] + extra, model_dir
        if action == "evaluate":
            report = os.path.join(out, "reports", model)
            extra = ["--features", features] if os.path.isdir(features) else []
            return base + ["evaluate", "--model", model_dir, "--manifest", manifest, "--out", report,
                           "--overwrite"] + extra, report
        raise ValueError(f"unknown cohort action {action!r}")

    @staticmethod
    def progressFromOutput(text):
        """The last 'done/total' of the library's progress lines in ``text`` as a fraction, or None."""
        import re
        found = re.findall(r"\] (\d+)/(\d+) ", text)
        if not found:
            return None
        done, total = (int(v) for v in found[-1])
        return done / total if total else None

    @libraryCall
    def showReport(self, reportDir, name, scene=None):
        from TACEPredictLib.slicer.mrml import report_to_scene
        return report_to_scene(scene or slicer.mrmlScene, reportDir, name)

    @libraryCall
    def validateManifest(self, manifestPath, checkImages=True):
        from TACEPredictLib.data.manifest import validate_manifest
        return validate_manifest(self._path(manifestPath, "cohort manifest (CSV)"), check_images=checkImages)

    @libraryCall
    def caseIds(self, manifestPath):
        from TACEPredictLib.data.manifest import read_manifest
        return read_manifest(self._path(manifestPath, "cohort manifest (CSV)")).case_ids

    @libraryCall
    def generateDemoCohort(self, folder, cases=20, seed=0):
        from TACEPredictLib.data.demo_cohort import generate_cohort
        # One worker: Slicer's own executable must not be re-launched as a process-pool worker.
        return generate_cohort(self._path(folder, "output folder for the demo cohort"), cases=cases, seed=seed,
                               workers=1)

    @libraryCall
    def loadCase(self, manifestPath, caseId, scene=None):
        """Load a case's CT phases and segmentation into the scene: {column: node, "seg": segmentation or
        labelmap node, "segment": the segment the manifest names}."""
        from TACEPredictLib.data.manifest import read_manifest
        from TACEPredictLib.slicer.mrml import load_case_nodes
        manifest = read_manifest(self._path(manifestPath, "cohort manifest (CSV)"))
        nodes = load_case_nodes(scene or slicer.mrmlScene, manifest, caseId)
        first = next((nodes[c] for c in ("ct_ap", "ct_pvp", "ct_dp") if c in nodes), None)
        if first is not None and scene is None and slicer.app is not None:
            slicer.util.setSliceViewerLayers(background=first, fit=True)
        logging.info(f"TACEPredict: loaded case {caseId} ({', '.join(nodes)})")
        return nodes


class TACEPredictTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest): real assertions on a small synthetic cohort."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_demo_case_loads_and_predicts()

    def test_demo_case_loads_and_predicts(self):
        import tempfile
        self.delayDisplay("Generating a 2-case demo cohort")
        logic = TACEPredictLogic()
        if missingRequirements():
            logic.installRequirements()
        folder = tempfile.mkdtemp(prefix="TACEPredictTest")
        manifest = logic.generateDemoCohort(folder, cases=2, seed=1)
        self.assertEqual(logic.validateManifest(manifest), [])
        self.assertEqual(logic.caseIds(manifest), ["demo_0000", "demo_0001"])
        for caseId in ["demo_0000", "demo_0001"]:
            nodes = logic.loadCase(manifest, caseId)
            ct = nodes["ct_ap"]
            self.assertTrue(0.65 < ct.GetSpacing()[0] < 0.9)
            self.assertLess(slicer.util.arrayFromVolume(ct).min(), -900)
            isSegmentation = nodes["seg"].IsA("vtkMRMLSegmentationNode")
            self.assertEqual(isSegmentation, caseId == "demo_0000")  # .seg.nrrd, then a labelmap
            clinical = logic.clinicalFromCsv(manifest, caseId)
            out = logic.process(ct, nodes["ct_pvp"], segmentation=nodes["seg"] if isSegmentation else None,
                                segmentId=nodes["segment"], labelmap=None if isSegmentation else nodes["seg"],
                                clinical=clinical, caseId=caseId, forceCpu=True)
            # the published aggressive-progression score: logistic of its linear score; paper 004 gives Model_CS
            # no cut-off, so no risk group
            row = out["results"].set_index("task").loc["aggressive-pd"]
            self.assertAlmostEqual(row["probability"], 1 / (1 + math.exp(-row["score"])), places=9)
            self.assertEqual(row["risk_group"], "")
            table = out["nodes"]["results"].GetTable()
            self.assertEqual(table.GetValueByName(0, "task").ToString(), "aggressive-pd")
            self.assertIn("RESEARCH USE ONLY", table.GetValueByName(0, "notice").ToString())
            self.assertEqual(out["nodes"]["probability_chart"].GetNumberOfPlotSeriesNodes(), 2)
        with self.assertRaises(ValueError):
            logic.loadCase(manifest, "no_such_case")
        self.delayDisplay("Test passed")
