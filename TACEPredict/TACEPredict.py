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

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin

# What TACEPredictLib needs beyond Slicer's own numpy and SimpleITK; installed on first use.
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


def cohortModels():
    """The cohort section's model choices, from the library's registry: {kind: its declaration}."""
    from TACEPredictLib.models.registry import MODELS
    return {spec.kind: spec for spec in MODELS}


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
    with open(REQUIREMENTS_FILE) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def missingRequirements():
    """Required distributions that cannot be imported in Slicer's Python yet. pyradiomics is optional: it is
    tried at the first install, and its absence alone does not ask again."""
    import importlib.util
    import re
    names = ["torch"] + [re.split(r"[<>=!~\[ ]", requirement)[0] for requirement in requirements()]
    return [name for name in names if name.lower() != "pyradiomics" and importlib.util.find_spec(name) is None]


@parameterNodeWrapper
class TACEPredictParameterNode:
    manifestPath: pathlib.Path
    demoFolder: pathlib.Path
    demoCases: int = 20
    demoSeed: int = 0
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
    trainModel: str = "nomogram"


class TACEPredictWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._connectionTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        import ctk

        notice = qt.QLabel("<b>Research use only</b> - not for diagnosis or treatment decisions. Every result "
                           "names the data its model was trained on.")
        notice.setWordWrap(True)
        self.layout.addWidget(notice)

        # --- one patient
        patient = ctk.ctkCollapsibleButton()
        patient.text = "Patient"
        self.layout.addWidget(patient)
        form = qt.QFormLayout(patient)
        self.arterialSelector = self._nodeSelector(["vtkMRMLScalarVolumeNode"], "arterial-phase CT (required)")
        form.addRow("Arterial CT:", self.arterialSelector)
        self.portalSelector = self._nodeSelector(["vtkMRMLScalarVolumeNode"], "portal-venous-phase CT")
        form.addRow("Portal CT:", self.portalSelector)
        self.delayedSelector = self._nodeSelector(["vtkMRMLScalarVolumeNode"], "delayed-phase CT (optional)")
        form.addRow("Delayed CT:", self.delayedSelector)
        self.segmentSelector = slicer.qMRMLSegmentSelectorWidget()
        self.segmentSelector.setMRMLScene(slicer.mrmlScene)
        self.segmentSelector.noneEnabled = True
        self.segmentSelector.toolTip = "The segmentation and the segment holding the target tumour"
        form.addRow("Tumour segment:", self.segmentSelector)
        self.labelmapSelector = self._nodeSelector(["vtkMRMLLabelMapVolumeNode"],
                                                   "or a labelmap (every non-zero voxel is tumour)")
        form.addRow("or labelmap:", self.labelmapSelector)

        self.clinicalTable = qt.QTableWidget(0, 2)
        self.clinicalTable.setHorizontalHeaderLabels(["field", "value"])
        self.clinicalTable.horizontalHeader().setStretchLastSection(True)
        self.clinicalTable.verticalHeader().setVisible(False)
        self.clinicalTable.setMinimumHeight(160)
        form.addRow("Clinical data:", self.clinicalTable)
        self.clinicalCsvEdit = ctk.ctkPathLineEdit()
        self.clinicalCsvEdit.filters = ctk.ctkPathLineEdit.Files
        self.clinicalCsvEdit.nameFilters = ["Manifest (*.csv)"]
        self.clinicalCaseEdit = qt.QLineEdit()
        self.clinicalCaseEdit.placeholderText = "case_id"
        self.loadClinicalButton = qt.QPushButton("Load row")
        row = qt.QHBoxLayout()
        row.addWidget(self.clinicalCsvEdit, 2)
        row.addWidget(self.clinicalCaseEdit, 1)
        row.addWidget(self.loadClinicalButton)
        form.addRow("from CSV:", row)

        self.bundleFolderEdit = ctk.ctkPathLineEdit()
        self.bundleFolderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.bundleFolderEdit.toolTip = ("Folder of model bundles (each sub-folder with a model.json is used). "
                                         "The published aggressive-progression score needs none.")
        form.addRow("Model bundles:", self.bundleFolderEdit)
        self.forceCpuCheck = qt.QCheckBox("Force CPU")
        self.heatmapCheck = qt.QCheckBox("Grad-CAM heat maps")
        row = qt.QHBoxLayout()
        row.addWidget(self.forceCpuCheck)
        row.addWidget(self.heatmapCheck)
        form.addRow(row)
        self.applyButton = qt.QPushButton("Apply")
        self.applyButton.toolTip = "Run every model that can run on this patient"
        form.addRow(self.applyButton)

        # --- cohort
        cohort = ctk.ctkCollapsibleButton()
        cohort.text = "Cohort"
        cohort.collapsed = True
        self.layout.addWidget(cohort)
        form = qt.QFormLayout(cohort)
        self.manifestEdit = ctk.ctkPathLineEdit()
        self.manifestEdit.filters = ctk.ctkPathLineEdit.Files
        self.manifestEdit.nameFilters = ["Manifest (*.csv)"]
        form.addRow("Manifest:", self.manifestEdit)
        self.validateButton = qt.QPushButton("Validate manifest")
        self.validateButton.toolTip = "Check every row and file; one line per problem"
        form.addRow(self.validateButton)
        self.caseCombo = qt.QComboBox()
        self.loadCaseButton = qt.QPushButton("Load case")
        self.loadCaseButton.toolTip = "Load the case's CT phases, segmentation and clinical row into the inputs"
        row = qt.QHBoxLayout()
        row.addWidget(self.caseCombo, 1)
        row.addWidget(self.loadCaseButton)
        form.addRow("Case:", row)
        self.cohortOutEdit = ctk.ctkPathLineEdit()
        self.cohortOutEdit.filters = ctk.ctkPathLineEdit.Dirs
        form.addRow("Output folder:", self.cohortOutEdit)
        self.trainModelCombo = qt.QComboBox()
        self.trainModelCombo.addItems(list(cohortModels()))
        self.trainModelCombo.toolTip = ("A model kind (its task: " + ", ".join(
            f"{k} {v.task}" for k, v in cohortModels().items()) + "); published scores: evaluate only")
        form.addRow("Model:", self.trainModelCombo)
        self.extractButton = qt.QPushButton("Extract")
        self.trainButton = qt.QPushButton("Train")
        self.evaluateButton = qt.QPushButton("Evaluate")
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.enabled = False
        row = qt.QHBoxLayout()
        for button in (self.extractButton, self.trainButton, self.evaluateButton, self.cancelButton):
            row.addWidget(button)
        form.addRow(row)
        self.progressBar = qt.QProgressBar()
        self.progressBar.setRange(0, 100)
        form.addRow(self.progressBar)

        # --- demo cohort
        demo = ctk.ctkCollapsibleButton()
        demo.text = "Synthetic demo cohort"
        demo.collapsed = True
        self.layout.addWidget(demo)
        demoForm = qt.QFormLayout(demo)
        self.demoFolderEdit = ctk.ctkPathLineEdit()
        self.demoFolderEdit.filters = ctk.ctkPathLineEdit.Dirs
        demoForm.addRow("Output folder:", self.demoFolderEdit)
        self.demoCasesSpin = qt.QSpinBox()
        self.demoCasesSpin.setRange(1, 1000)
        demoForm.addRow("Cases:", self.demoCasesSpin)
        self.demoSeedSpin = qt.QSpinBox()
        self.demoSeedSpin.setRange(0, 1000000)
        demoForm.addRow("Seed:", self.demoSeedSpin)
        self.generateButton = qt.QPushButton("Generate demo cohort")
        demoForm.addRow(self.generateButton)

        self.output = qt.QPlainTextEdit()
        self.output.readOnly = True
        self.layout.addWidget(self.output)
        self.layout.addStretch(1)

        self.logic = TACEPredictLogic()
        self.process = None  # the running cohort job (a background PythonSlicer process)
        self.applyButton.connect("clicked(bool)", self.onApply)
        self.loadClinicalButton.connect("clicked(bool)", self.onLoadClinical)
        self.validateButton.connect("clicked(bool)", self.onValidate)
        self.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.generateButton.connect("clicked(bool)", self.onGenerate)
        self.extractButton.connect("clicked(bool)", lambda: self.onCohortJob("extract"))
        self.trainButton.connect("clicked(bool)", lambda: self.onCohortJob("train"))
        self.evaluateButton.connect("clicked(bool)", lambda: self.onCohortJob("evaluate"))
        self.cancelButton.connect("clicked(bool)", self.onCancel)
        self.segmentSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onSegmentChanged)
        self.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.clinicalTable.connect("cellChanged(int,int)", self.onClinicalEdited)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def _nodeSelector(self, nodeTypes, toolTip):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = nodeTypes
        selector.selectNodeUponCreation = False
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.noneEnabled = True
        selector.showHidden = False
        selector.setMRMLScene(slicer.mrmlScene)
        selector.toolTip = toolTip
        return selector

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
        self._connectionTag = p.connectParametersToGui({
            "manifestPath": self.manifestEdit, "demoFolder": self.demoFolderEdit,
            "demoCases": self.demoCasesSpin, "demoSeed": self.demoSeedSpin,
            "arterialVolume": self.arterialSelector, "portalVolume": self.portalSelector,
            "delayedVolume": self.delayedSelector, "labelmap": self.labelmapSelector,
            "bundleFolder": self.bundleFolderEdit, "forceCpu": self.forceCpuCheck, "heatmaps": self.heatmapCheck,
            "cohortOut": self.cohortOutEdit, "trainModel": self.trainModelCombo})
        self.segmentSelector.setCurrentNode(p.segmentation)
        if p.segmentId:
            self.segmentSelector.setCurrentSegmentID(p.segmentId)
        self.populateClinicalForm()

    def disconnectParameterNode(self):
        if self._parameterNode is not None and self._connectionTag is not None:
            self._parameterNode.disconnectGui(self._connectionTag)
        self._connectionTag = None

    def onSegmentChanged(self, *args):
        if self._parameterNode is not None:
            self._parameterNode.segmentation = self.segmentSelector.currentNode()
            self._parameterNode.segmentId = self.segmentSelector.currentSegmentID() or ""

    def populateClinicalForm(self):
        """Fill the form's fields (once TACEPredictLib can be imported) and values (from the parameter node)."""
        try:
            fields = self.logic.clinicalFields()
        except ImportError:
            return  # dependencies not installed yet: filled after the first Apply installs them
        values = json.loads(self._parameterNode.clinicalJson or "{}") if self._parameterNode else {}
        self.clinicalTable.blockSignals(True)
        self.clinicalTable.setRowCount(len(fields))
        for row, (name, description) in enumerate(fields.items()):
            item = qt.QTableWidgetItem(name)
            item.setFlags(qt.Qt.ItemIsEnabled)
            item.setToolTip(description)
            self.clinicalTable.setItem(row, 0, item)
            value = values.get(name)
            self.clinicalTable.setItem(row, 1, qt.QTableWidgetItem("" if value is None else str(value)))
        self.clinicalTable.blockSignals(False)

    def clinicalValues(self):
        values = {}
        for row in range(self.clinicalTable.rowCount):
            name, value = self.clinicalTable.item(row, 0), self.clinicalTable.item(row, 1)
            if name is not None and value is not None and value.text().strip():
                values[name.text()] = value.text().strip()
        return values

    def onClinicalEdited(self, row, column):
        if self._parameterNode is not None:
            self._parameterNode.clinicalJson = json.dumps(self.clinicalValues())

    def ensureDependencies(self):
        missing = missingRequirements()
        if not missing:
            return True
        packaging = getattr(slicer, "packaging", None)
        ensure = packaging is not None and hasattr(packaging, "pip_ensure")  # Slicer 5.12+: it asks itself
        if not ensure and not slicer.util.confirmOkCancelDisplay(
                "TACEPredict needs these Python packages, installed once into Slicer's Python: "
                + ", ".join(missing) + ". Install now?"):
            return False
        with slicer.util.WaitCursor():
            notes = self.logic.installRequirements(ensure=ensure)
        if missingRequirements():
            return False  # the user declined pip_ensure's prompt
        if notes:
            slicer.util.warningDisplay("\n".join(notes))
        self.populateClinicalForm()
        return True

    def report(self, lines):
        self.output.setPlainText("\n".join(lines))

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
                     f"{r.risk_group} risk (cut-off {r.cutoff:.3f})" if not r.error else
                     f"{r.task} / {r.model}: NOT RUN - {r.error}" for r in results.itertuples()]
            lines += sorted(set(results["notice"])) + [f"{k}: {v:.1f} s" for k, v in out["timings"].items()]
            self.report(lines)

    def onLoadClinical(self):
        with slicer.util.tryWithErrorDisplay("Loading the clinical row failed.", waitCursor=True):
            if not self.ensureDependencies():
                return
            values = self.logic.clinicalFromCsv(self.clinicalCsvEdit.currentPath, self.clinicalCaseEdit.text)
            self._parameterNode.clinicalJson = json.dumps(values)
            self._parameterNode.caseId = self.clinicalCaseEdit.text
            self.populateClinicalForm()

    def onValidate(self):
        with slicer.util.tryWithErrorDisplay("Manifest validation failed.", waitCursor=True):
            if not self.ensureDependencies():
                return
            problems = self.logic.validateManifest(self._parameterNode.manifestPath)
            errors = [p for p in problems if p.severity == "error"]
            self.report([str(p) for p in problems]
                        + [f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)"])
            self.caseCombo.clear()
            if not errors:
                self.caseCombo.addItems(self.logic.caseIds(self._parameterNode.manifestPath))

    def onLoadCase(self):
        with slicer.util.tryWithErrorDisplay("Loading the case failed.", waitCursor=True):
            p = self._parameterNode
            caseId = self.caseCombo.currentText
            nodes = self.logic.loadCase(p.manifestPath, caseId)
            p.arterialVolume = nodes.get("ct_ap")
            p.portalVolume = nodes.get("ct_pvp")
            p.delayedVolume = nodes.get("ct_dp")
            self.segmentSelector.setCurrentNode(nodes.get("seg"))
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
            self.progressBar.setRange(0, 0)  # busy until the job reports its progress
            self.cancelButton.enabled = True
            self.process.start(command[0], command[1:])

    def onJobOutput(self):
        text = self.process.readAll().data().decode("utf-8", "replace")
        self.output.appendPlainText(text.rstrip())
        done = self.logic.progressFromOutput(text)
        if done is not None:
            self.progressBar.setRange(0, 100)
            self.progressBar.value = int(100 * done)

    def onJobFinished(self, exitCode):
        action, self.process = self.jobAction, None
        self.cancelButton.enabled = False
        self.progressBar.setRange(0, 100)
        self.progressBar.value = 100 if exitCode == 0 else 0
        if exitCode != 0:
            self.output.appendPlainText(f"{action} stopped (exit code {exitCode}); see the lines above.")
            return
        if action == "evaluate":
            with slicer.util.tryWithErrorDisplay("Showing the report failed."):
                self.logic.showReport(self.jobOutput, f"TACEPredict {self._parameterNode.trainModel}")
        self.output.appendPlainText(f"{action} finished: {self.jobOutput}")

    def onCancel(self):
        if self.process is not None:
            self.process.kill()
            self.output.appendPlainText("cancelled")


class TACEPredictLogic(ScriptedLoadableModuleLogic):
    """Batch-safe: no dialogs; errors are exceptions (InputError names case and field). Every method works
    from a script or ``Slicer --no-main-window``; the work itself is in TACEPredictLib."""

    def getParameterNode(self):
        return TACEPredictParameterNode(super().getParameterNode())

    def installRequirements(self, ensure=False):
        """Install what is missing, without replacing Slicer's numpy, SimpleITK or the PyTorch extension's
        torch; returns notes for the user (e.g. pyradiomics not installable). ``ensure``: use Slicer 5.12+'s
        ``slicer.packaging.pip_ensure`` (it asks the user itself); otherwise no dialog (batch use)."""
        import importlib.util
        import inspect
        import tempfile
        from importlib import metadata
        self.installTorch()
        # Pin what Slicer (and the PyTorch extension) own, so that no requirement upgrades them.
        pinned = []
        for name in ("numpy", "SimpleITK", "torch"):
            try:
                pinned.append(f"{name}=={metadata.version(name)}")
            except metadata.PackageNotFoundError:
                pass
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
            handle.write("\n".join(pinned) + "\n")
            constraints = handle.name
        wanted = requirements()
        required = [r for r in wanted if not r.lower().startswith("pyradiomics")]
        packaging = getattr(slicer, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_install"):  # Slicer 5.12+
            install = packaging.pip_ensure if ensure else packaging.pip_install
            options = {"constraints": constraints} if "constraints" in inspect.signature(install).parameters else {}
            if ensure:
                options["requester"] = "TACEPredict"
            install(required, **options)
        else:
            slicer.util.pip_install(required + ["-c", constraints])
        notes = []
        if importlib.util.find_spec("radiomics") is None:
            try:  # pyradiomics often fails to build on Slicer's Python 3.12: everything else still works
                slicer.util.pip_install(["setuptools", "wheel", "versioneer", "-c", constraints])
                slicer.util.pip_install(["--no-build-isolation", "-c", constraints]
                                        + [r for r in wanted if r.lower().startswith("pyradiomics")])
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                notes.append(f"pyradiomics could not be installed ({exc}). Radiomics features and the models "
                             "that use them (lasso-cox) are unavailable; everything else works.")
        os.remove(constraints)
        return notes

    @staticmethod
    def installTorch():
        """torch from the PyTorch extension (the right build for this machine's GPU), never from PyPI here."""
        import importlib.util
        if importlib.util.find_spec("torch") is not None:
            return
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError("TACEPredict needs the PyTorch extension: install 'PyTorch' from the Extension "
                               "Manager, restart Slicer and try again.") from None
        PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)

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
        (default: Slicer's). Returns what ``TACEPredictLib.slicer.mrml.run_case`` returns."""
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
            return base + ["extract", "--manifest", manifest, "--out", features, "--workers", "1", "--overwrite"] \
                + device, features
        spec = cohortModels()[model]
        if spec.published:  # published coefficients: nothing to extract or train
            if action != "evaluate":
                raise ValueError(f"{spec.title} needs no extraction or training: choose Evaluate.")
            report = os.path.join(out, "reports", model)
            return base + ["evaluate", "--task", spec.task, "--model", model, "--manifest", manifest,
                           "--out", report, "--overwrite"], report
        model_dir = os.path.join(out, "models", model)
        if action == "train":
            extra = ["--features", features] if os.path.isdir(features) else []
            return base + ["train", "--task", spec.task, "--model", model, "--manifest",
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
            # the published aggressive-progression score: logistic of its linear score, high risk at 0.28
            row = out["results"].set_index("task").loc["aggressive-pd"]
            self.assertAlmostEqual(row["probability"], 1 / (1 + math.exp(-row["score"])), places=9)
            self.assertEqual(row["risk_group"], "high" if row["probability"] >= 0.28 else "low")
            table = out["nodes"]["results"].GetTable()
            self.assertEqual(table.GetValueByName(0, "task").ToString(), "aggressive-pd")
            self.assertIn("RESEARCH USE ONLY", table.GetValueByName(0, "notice").ToString())
            self.assertEqual(out["nodes"]["probability_chart"].GetNumberOfPlotSeriesNodes(), 2)
        with self.assertRaises(ValueError):
            logic.loadCase(manifest, "no_such_case")
        self.delayDisplay("Test passed")
