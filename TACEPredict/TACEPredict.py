"""TACEPredict: outcome prediction after TACE for hepatocellular carcinoma (research use only).

The Widget is thin: every action goes through TACEPredictLogic, which works from scripts and headless Slicer
without any dialog, and which delegates the work to the TACEPredictLib package.
"""

import logging
import os
import pathlib

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin

# What TACEPredictLib needs beyond Slicer's own numpy and SimpleITK; installed on first use.
REQUIREMENTS_FILE = os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")


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
    """Distribution names that cannot be imported in Slicer's Python yet."""
    import importlib.util
    import re
    names = [re.split(r"[<>=!~\[ ]", requirement)[0] for requirement in requirements()]
    return [name for name in names if importlib.util.find_spec(name) is None]


@parameterNodeWrapper
class TACEPredictParameterNode:
    manifestPath: pathlib.Path
    demoFolder: pathlib.Path
    demoCases: int = 20
    demoSeed: int = 0
    caseId: str = ""


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

        notice = qt.QLabel("<b>Research use only</b> - not for diagnosis or treatment decisions.")
        notice.setWordWrap(True)
        self.layout.addWidget(notice)

        cohort = ctk.ctkCollapsibleButton()
        cohort.text = "Cohort manifest"
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
        self.loadCaseButton.toolTip = "Load the case's CT phases and segmentation into the scene"
        row = qt.QHBoxLayout()
        row.addWidget(self.caseCombo, 1)
        row.addWidget(self.loadCaseButton)
        form.addRow("Case:", row)

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
        self.validateButton.connect("clicked(bool)", self.onValidate)
        self.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        self.generateButton.connect("clicked(bool)", self.onGenerate)
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
        self._connectionTag = self._parameterNode.connectParametersToGui({
            "manifestPath": self.manifestEdit, "demoFolder": self.demoFolderEdit,
            "demoCases": self.demoCasesSpin, "demoSeed": self.demoSeedSpin})

    def disconnectParameterNode(self):
        if self._parameterNode is not None and self._connectionTag is not None:
            self._parameterNode.disconnectGui(self._connectionTag)
        self._connectionTag = None

    def ensureDependencies(self):
        missing = missingRequirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                "TACEPredict needs these Python packages, installed once into Slicer's Python: "
                + ", ".join(missing) + ". Install now?"):
            return False
        with slicer.util.WaitCursor():
            self.logic.installRequirements()
        return True

    def report(self, lines):
        self.output.setPlainText("\n".join(lines))

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
            nodes = self.logic.loadCase(self._parameterNode.manifestPath, self.caseCombo.currentText)
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


class TACEPredictLogic(ScriptedLoadableModuleLogic):
    """Batch-safe: no dialogs; errors are exceptions (InputError names case and field)."""

    def getParameterNode(self):
        return TACEPredictParameterNode(super().getParameterNode())

    def installRequirements(self):
        packaging = getattr(slicer, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(requirements())  # Slicer 5.12+
        else:
            slicer.util.pip_install(requirements())

    @staticmethod
    def _path(value, what):
        text = str(value or "").strip()
        if text in ("", "."):
            raise ValueError(f"Choose the {what}.")
        return text

    def validateManifest(self, manifestPath, checkImages=True):
        from TACEPredictLib.manifest import validate_manifest
        return validate_manifest(self._path(manifestPath, "cohort manifest (CSV)"), check_images=checkImages)

    def caseIds(self, manifestPath):
        from TACEPredictLib.manifest import read_manifest
        return read_manifest(self._path(manifestPath, "cohort manifest (CSV)")).case_ids

    def generateDemoCohort(self, folder, cases=20, seed=0):
        from TACEPredictLib.phantom import generate_cohort
        # One worker: Slicer's own executable must not be re-launched as a process-pool worker.
        return generate_cohort(self._path(folder, "output folder for the demo cohort"), cases=cases, seed=seed,
                               workers=1)

    def loadCase(self, manifestPath, caseId):
        """Load a case's CT phases and segmentation into the scene; returns {column: node}."""
        from TACEPredictLib.manifest import read_manifest
        manifest = read_manifest(self._path(manifestPath, "cohort manifest (CSV)"))
        row = manifest.row(caseId)
        nodes = {}
        for column in manifest.phases:
            path = manifest.resolve(row.get(column))
            if path:
                nodes[column] = slicer.util.loadVolume(path, {"name": f"{caseId}_{column}", "show": False})
        seg = manifest.resolve(row.get("seg"))
        if seg:
            if seg.lower().endswith(".seg.nrrd"):
                nodes["seg"] = slicer.util.loadSegmentation(seg, {"name": f"{caseId}_seg"})
            else:
                labelmap = slicer.util.loadLabelVolume(seg, {"name": f"{caseId}_seg_labelmap"})
                segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{caseId}_seg")
                slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
                slicer.mrmlScene.RemoveNode(labelmap)
                nodes["seg"] = segmentation
        if nodes:
            first = next(iter(v for k, v in nodes.items() if k != "seg"), None)
            if first is not None:
                slicer.util.setSliceViewerLayers(background=first, fit=True)
        logging.info(f"TACEPredict: loaded case {caseId} ({', '.join(nodes)})")
        return nodes


class TACEPredictTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest): real assertions on a small synthetic cohort."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_demo_cohort_validates_and_loads()

    def test_demo_cohort_validates_and_loads(self):
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
            segmentation = nodes["seg"].GetSegmentation()
            self.assertGreaterEqual(segmentation.GetNumberOfSegments(), 1)
            if caseId == "demo_0000":  # the .seg.nrrd case keeps its segment names
                self.assertEqual(segmentation.GetNthSegment(0).GetName(), "Tumor 1")
        with self.assertRaises(ValueError):
            logic.loadCase(manifest, "no_such_case")
        self.delayDisplay("Test passed")
