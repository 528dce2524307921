"""The Slicer module's Qt Designer layout (TACEPredict/Resources/UI/TACEPredict.ui) against the module file.

Qt is not needed: the .ui is read as XML and TACEPredict.py with ``ast``. What is checked is what would otherwise
break only inside Slicer: a ``self.ui.<name>`` with no such widget (AttributeError at setup), a SlicerParameterName
naming no parameter-node field or a widget that cannot show the field's type (connectGui raises), a QComboBox
bound to a str without a Choice (connectGui raises), spin-box ranges that connectGui silently overrides, and an
MRML selector that never receives the scene.
"""

import ast
import os
import xml.etree.ElementTree as ET

from TACEPredictLib.models import registry
from conftest import REPO

MODULE_FILE = os.path.join(REPO, "TACEPredict", "TACEPredict.py")
UI_FILE = os.path.join(REPO, "TACEPredict", "Resources", "UI", "TACEPredict.ui")

# Widget classes that connectGui (Slicer's parameterNodeWrapper/guiConnectors.py, 5.10) pairs with each type.
WIDGETS_FOR_TYPE = {
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton", "ctkCheckablePushButton"},
    "int": {"QSpinBox", "QSlider", "QDoubleSpinBox", "ctkSliderWidget", "ctkDoubleSpinBox", "QComboBox"},
    "float": {"QDoubleSpinBox", "ctkSliderWidget", "ctkDoubleSpinBox", "qMRMLSliderWidget", "qMRMLSpinBox"},
    "str": {"QLineEdit", "QLabel", "QTextEdit", "QComboBox", "ctkComboBox"},
    "path": {"ctkPathLineEdit", "ctkDirectoryButton"},
}
LAYOUT_CLASSES = {"QFormLayout", "QHBoxLayout", "QVBoxLayout", "QGridLayout"}


def read_ui(text):
    """{widget name: (class, {property: value})} and the connections of a .ui file; values are str, bool, int or
    a list of str (stringlist)."""
    root = ET.fromstring(text)
    widgets = {}
    for widget in root.iter("widget"):
        name = widget.get("name")
        assert name not in widgets, f"two widgets named {name}"
        props = {}
        for prop in widget.findall("property"):
            value = prop[0]
            if value.tag == "stringlist":
                props[prop.get("name")] = [s.text or "" for s in value]
            elif value.tag == "bool":
                props[prop.get("name")] = value.text == "true"
            elif value.tag == "number":
                props[prop.get("name")] = int(value.text)
            else:
                props[prop.get("name")] = value.text
        widgets[name] = (widget.get("class"), props)
    connections = [(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in root.iter("connection")]
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    top = root.find("widget")
    return widgets, connections, custom, (top.get("name"), top.get("class"))


def _type_name(annotation):
    """'bool', 'int', 'str', 'float', 'path' or the MRML class name of a parameter-node annotation."""
    if isinstance(annotation, ast.Subscript):  # Annotated[X, ...]
        annotation = annotation.slice.elts[0]
    text = ast.unparse(annotation)
    return "path" if text in ("pathlib.Path", "Path") else text


def read_module(text):
    """From the module's source: the parameter-node fields {name: (type name, {validator: args})}, the module's
    constants that are literals, every ``self.ui.<name>`` used, the .ui files it loads and the constructor calls
    it makes (``qt.X(...)``, ``ctk.X(...)``, ``slicer.X(...)``)."""
    tree = ast.parse(text)
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    # the cohort model list is read from the library's catalogue (TACEPredictLib/Resources/model_catalogue.json)
    constants.setdefault("COHORT_MODELS", {m.kind: m for m in registry.MODELS})
    fields = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(ast.unparse(d) == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    validators = {}
                    if isinstance(item.annotation, ast.Subscript):
                        for call in item.annotation.slice.elts[1:]:
                            args = [ast.unparse(a) for a in call.args]
                            validators[ast.unparse(call.func)] = args
                    fields[item.target.id] = (_type_name(item.annotation), validators)
    used, loaded, constructed = set(), set(), set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            used.add(node.attr)
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("resourcePath") and node.args:
            loaded.add(ast.literal_eval(node.args[0]))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("qt", "ctk", "slicer")):
            constructed.add(node.func.attr)
    return fields, constants, used, loaded, constructed


def _evaluate(expression, constants):
    """A validator argument: a literal, or list(CONSTANT) of a module constant."""
    tree = ast.parse(expression, mode="eval").body
    if isinstance(tree, ast.Call) and ast.unparse(tree.func) == "list" and isinstance(tree.args[0], ast.Name):
        return list(constants[tree.args[0].id])
    return ast.literal_eval(tree)


def ui_problems(ui_text, module_text, ui_path_in_module="UI/TACEPredict.ui"):
    """Every mismatch between the .ui and the module file, one line each (empty: they agree)."""
    widgets, connections, custom, (top_name, top_class) = read_ui(ui_text)
    fields, constants, used, loaded, constructed = read_module(module_text)
    problems = []
    if ui_path_in_module not in loaded:
        problems.append(f"the module does not load {ui_path_in_module} (it loads {sorted(loaded)})")
    if top_class != "qMRMLWidget":
        problems.append(f"the top widget is a {top_class}: setMRMLScene needs a qMRMLWidget")
    for name in sorted(used - set(widgets)):
        problems.append(f"self.ui.{name} is used by the module but no widget of the .ui has that name")
    bound = {}
    for name, (cls, props) in sorted(widgets.items()):
        parameter = props.get("SlicerParameterName")
        if parameter is None:
            continue
        if parameter in bound:
            problems.append(f"{parameter} is bound to both {bound[parameter]} and {name}")
        bound[parameter] = name
        if parameter not in fields:
            problems.append(f"{name}: SlicerParameterName {parameter!r} is no field of the parameter node")
            continue
        kind, validators = fields[parameter]
        if kind.startswith("vtkMRML"):
            if cls != "qMRMLNodeComboBox":
                problems.append(f"{name} ({cls}) cannot show {parameter}, a {kind}")
            elif props.get("nodeTypes") != [kind]:
                problems.append(f"{name} lists {props.get('nodeTypes')} but {parameter} is a {kind}")
        elif cls not in WIDGETS_FOR_TYPE.get(kind, ()):
            problems.append(f"{name} ({cls}) cannot show {parameter}, a {kind}")
        if cls in ("QComboBox", "ctkComboBox") and "Choice" not in validators:
            problems.append(f"{name}: connectGui needs a Choice annotation on {parameter}")
        if cls in ("QSpinBox", "QSlider") and kind == "int":
            if "WithinRange" not in validators:
                problems.append(f"{name}: {parameter} has no WithinRange, so connectGui makes the range +-2^31")
            else:
                low, high = (_evaluate(a, constants) for a in validators["WithinRange"])
                if (props.get("minimum", 0), props.get("maximum", 99)) != (low, high):
                    problems.append(f"{name}: the .ui range {props.get('minimum', 0)}-{props.get('maximum', 99)}"
                                    f" is not the parameter's WithinRange({low}, {high})")
    for name, (cls, _) in sorted(widgets.items()):
        if cls.startswith("qMRML") and name != top_name and (
                top_name, "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") not in connections:
            problems.append(f"{name} ({cls}) never gets the scene: connect {top_name}'s mrmlSceneChanged to it")
    classes = {cls for cls, _ in widgets.values()}
    for cls in sorted(classes):
        if not cls.startswith("Q") and cls not in custom:
            problems.append(f"{cls} is not declared in <customwidgets> (Qt Designer cannot open the file)")
    for cls in sorted(constructed & (classes | LAYOUT_CLASSES)):
        problems.append(f"the module builds a {cls} in code: the layout belongs in the .ui")
    return problems


def test_ui_and_module_agree():
    problems = ui_problems(open(UI_FILE).read(), open(MODULE_FILE).read())
    assert problems == []


def test_ui_binds_the_inputs_the_module_had_by_hand():
    """The parameter-node fields that were bound in code before the .ui are still bound (behaviour unchanged)."""
    widgets, *_ = read_ui(open(UI_FILE).read())
    bound = {props["SlicerParameterName"] for _, props in widgets.values() if "SlicerParameterName" in props}
    assert bound == {"manifestPath", "demoFolder", "demoCases", "demoSeed", "arterialVolume", "portalVolume",
                     "delayedVolume", "labelmap", "bundleFolder", "forceCpu", "heatmaps", "cohortOut",
                     "trainModel"}
    fields, constants, *_ = read_module(open(MODULE_FILE).read())
    # the cohort model list is the registry's (through its catalogue), given to the combo box by connectGui
    assert _evaluate(fields["trainModel"][1]["Choice"][0], constants) == [m.kind for m in registry.MODELS]


def test_the_check_catches_a_broken_ui():
    ui = open(UI_FILE).read()
    module = open(MODULE_FILE).read()
    broken = (ui.replace("<string>forceCpu</string>", "<string>forceGpu</string>")
                .replace('name="applyButton"', 'name="runButton"')
                .replace("<string>vtkMRMLLabelMapVolumeNode</string>", "<string>vtkMRMLModelNode</string>")
                .replace("<number>1000</number>", "<number>500</number>", 1)
                .replace("<receiver>portalSelector</receiver>", "<receiver>delayedSelector</receiver>"))
    problems = ui_problems(broken, module)
    assert problems == [
        "self.ui.applyButton is used by the module but no widget of the .ui has that name",
        "demoCasesSpin: the .ui range 1-500 is not the parameter's WithinRange(1, 1000)",
        "forceCpuCheck: SlicerParameterName 'forceGpu' is no field of the parameter node",
        "labelmapSelector lists ['vtkMRMLModelNode'] but labelmap is a vtkMRMLLabelMapVolumeNode",
        "portalSelector (qMRMLNodeComboBox) never gets the scene: connect TACEPredict's mrmlSceneChanged to it",
    ]
    # a str bound to a combo box without Choice, a widget built in code, a bool shown by a line edit
    module_broken = (module.replace('Annotated[str, Choice(list(COHORT_MODELS))] = "nomogram"', 'str = "nomogram"')
                     .replace("self.logic = TACEPredictLogic()\n", "self.logic = TACEPredictLogic()\n"
                              "        extra = qt.QPushButton('More')\n", 1))
    ui_broken = ui.replace('<widget class="QCheckBox" name="heatmapCheck">',
                           '<widget class="QLineEdit" name="heatmapCheck">')
    assert ui_problems(ui_broken, module_broken) == [
        "heatmapCheck (QLineEdit) cannot show heatmaps, a bool",
        "trainModelCombo: connectGui needs a Choice annotation on trainModel",
        "the module builds a QPushButton in code: the layout belongs in the .ui",
    ]
    # the module must load the file under the name the extension installs
    assert ui_problems(ui, module.replace('"UI/TACEPredict.ui"', '"UI/Other.ui"')) == [
        "the module does not load UI/TACEPredict.ui (it loads ['UI/Other.ui'])"]
