"""The one module of TACEPredictLib that touches MRML: nodes to SimpleITK images and back, results into
table, plot and volume nodes.

It uses only classes that exist both in Slicer and in the ``slicer-core`` wheel and never the global
``slicer.mrmlScene`` or ``slicer.app``: every function takes the scene it works in, so the same code runs in
the Slicer GUI, in ``Slicer --no-main-window`` and under plain Python (where the tests run it).

Coordinates: MRML volumes are in RAS, SimpleITK images in LPS; the IJK-to-RAS matrix (spacing, origin,
direction) is carried over exactly, so a heat map computed on an image lands on the voxels it came from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import InputError

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _slicer():
    import slicer
    return slicer


def _vtk_matrix_to_numpy(matrix):
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _world_ijk_to_ras(node):
    """The node's IJK-to-RAS matrix in world coordinates (a linear parent transform is applied)."""
    import vtk
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    matrix = _vtk_matrix_to_numpy(ijk_to_ras)
    transform = node.GetParentTransformNode()
    if transform is not None:
        if not transform.IsTransformToWorldLinear():
            raise InputError(f"volume '{node.GetName()}' is under a non-linear transform", column=node.GetName(),
                             fix="harden the transform (Data module) before running TACEPredict")
        to_world = vtk.vtkMatrix4x4()
        transform.GetMatrixTransformToWorld(to_world)
        matrix = _vtk_matrix_to_numpy(to_world) @ matrix
    return matrix


def volume_to_image(node):
    """A scalar or labelmap volume node as a SimpleITK image (LPS; spacing, origin and direction kept)."""
    import SimpleITK as sitk
    from vtk.util import numpy_support
    image_data = node.GetImageData() if node is not None else None
    if image_data is None or image_data.GetNumberOfPoints() == 0:
        name = node.GetName() if node is not None else "volume"
        raise InputError(f"volume '{name}' has no voxels", column=name, fix="load the CT volume again")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise InputError(f"volume '{node.GetName()}' has {image_data.GetNumberOfScalarComponents()} components",
                         column=node.GetName(), fix="choose a single-component (grey-scale) CT volume")
    dims = image_data.GetDimensions()
    array = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(dims[::-1])
    image = sitk.GetImageFromArray(array.copy())
    matrix = _world_ijk_to_ras(node)
    columns = matrix[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    direction_ras = columns / spacing
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(v) for v in LPS_FROM_RAS @ matrix[:3, 3]))
    image.SetDirection(tuple(float(v) for v in (LPS_FROM_RAS @ direction_ras).ravel()))
    return image


def _set_geometry(node, image):
    import vtk
    spacing = np.array(image.GetSpacing())
    direction_ras = LPS_FROM_RAS @ np.array(image.GetDirection()).reshape(3, 3)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, direction_ras[r, c] * spacing[c])
        matrix.SetElement(r, 3, (LPS_FROM_RAS @ np.array(image.GetOrigin()))[r])
    node.SetIJKToRASMatrix(matrix)


def image_to_volume(image, scene, name, node=None, labelmap=False):
    """Put a SimpleITK image into a (new or given) volume node of ``scene``; returns the node."""
    import SimpleITK as sitk
    import vtk
    from vtk.util import numpy_support
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image))
    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, name)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(*array.shape[::-1])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image_data.GetPointData().SetScalars(scalars)
    node.SetAndObserveImageData(image_data)
    _set_geometry(node, image)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def segment_mask(segmentation_node, segment_id, reference_node):
    """One segment as a binary SimpleITK mask on the reference volume's grid (Slicer's own export)."""
    slicer = _slicer()
    segmentation = segmentation_node.GetSegmentation()
    if segment_id is None or segmentation.GetSegment(segment_id) is None:
        by_name = segmentation.GetSegmentIdBySegmentName(segment_id or "")
        if not by_name:
            names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
            raise InputError(f"segmentation '{segmentation_node.GetName()}' has no segment '{segment_id}' "
                             f"(it has: {', '.join(names) or 'none'})", column="segment",
                             fix="choose the tumour segment")
        segment_id = by_name
    scene = segmentation_node.GetScene()
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "TACEPredict_export")
    try:
        ids = [segment_id]
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_node)
        if not ok:
            raise InputError(f"segment '{segment_id}' could not be exported", column="segment",
                             fix="check that the segment has a binary labelmap representation")
        mask = volume_to_image(labelmap)
    finally:  # the export also adds a display node and a colour table: leave the scene as it was
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node.GetID() not in before:
                scene.RemoveNode(node)
    import SimpleITK as sitk
    return sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)


def labelmap_mask(labelmap_node, label=None):
    """A labelmap volume as a binary mask: ``label`` when given, else every non-zero voxel."""
    import SimpleITK as sitk
    image = volume_to_image(labelmap_node)
    mask = sitk.NotEqual(image, 0) if label is None else sitk.Equal(image, int(label))
    return sitk.Cast(mask, sitk.sitkUInt8)


def dataframe_to_table(frame, scene, name, node=None):
    """A pandas table as a table node: numbers as double columns, everything else as text."""
    import vtk
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    table.Initialize()
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            array = vtk.vtkDoubleArray()
            for value in values.to_numpy(dtype=float):
                array.InsertNextValue(value)
        else:
            array = vtk.vtkStringArray()
            for value in values:
                array.InsertNextValue("" if value is None or (isinstance(value, float) and np.isnan(value))
                                      else str(value))
        array.SetName(str(column))
        table.AddColumn(array)
    node.Modified()
    return node


def table_to_dataframe(node):
    """A table node as a pandas table (double columns as floats, text columns as strings)."""
    table = node.GetTable()
    data = {}
    for c in range(table.GetNumberOfColumns()):
        column = table.GetColumn(c)
        if hasattr(column, "GetValue") and column.IsA("vtkStringArray"):
            data[column.GetName()] = [column.GetValue(r) for r in range(column.GetNumberOfValues())]
        else:
            data[column.GetName()] = [column.GetValue(r) for r in range(column.GetNumberOfTuples())]
    return pd.DataFrame(data)


def plot_chart(scene, name, table_node, x_column, y_columns, title="", x_label="", y_label="", chart=None,
               step=False, colors=None):
    """A plot chart of ``y_columns`` against ``x_column`` of ``table_node``: one series per column."""
    slicer = _slicer()
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.RemoveAllPlotSeriesNodeIDs()
    for index, column in enumerate(y_columns):
        series = _node(scene, "vtkMRMLPlotSeriesNode", f"{name}: {column}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName(x_column)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        if colors is not None:
            series.SetColor(*colors[index % len(colors)])
        if step:
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleDash)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title or name)
    chart.SetXAxisTitle(x_label or x_column)
    chart.SetYAxisTitle(y_label)
    return chart


def show_table_and_chart(scene, table_node, chart_node):
    """Make the table and the chart the active ones and switch to a layout that shows both."""
    slicer = _slicer()
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    if selection is None:
        selection = slicer.vtkMRMLSelectionNode()
        selection.SetSingletonTag("Singleton")
        selection = scene.AddNode(selection)
    selection.SetActiveTableID(table_node.GetID())
    selection.SetActivePlotChartID(chart_node.GetID())
    layouts = scene.GetNodesByClass("vtkMRMLLayoutNode")
    layout = layouts.GetItemAsObject(0) if layouts.GetNumberOfItems() else None
    if layout is None:
        layout = slicer.vtkMRMLLayoutNode()
        layout.SetSingletonTag("vtkMRMLLayoutNode")
        layout = scene.AddNode(layout)
    layout.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
    return layout


def _node(scene, cls, name):
    """The scene's node of this class and name (re-used on a second Apply), or a new one."""
    nodes = scene.GetNodesByClassByName(cls, name)
    existing = nodes.GetItemAsObject(0) if nodes.GetNumberOfItems() else None
    return existing or scene.AddNewNodeByClass(cls, name)


def _survival_chart_table(prediction):
    """Years, the patient's curve per survival model, and the first model's training risk-group KM curves."""
    from ..models.overall_survival import CURVE_YEARS
    table = pd.DataFrame({"years": CURVE_YEARS})
    for label, curve in prediction["curves"].items():
        table[f"patient: {label}"] = curve["survival"].to_numpy()
    for label, km in prediction["km"].items():
        km = km.set_index("years").reindex(CURVE_YEARS, method="ffill")
        for column in km.columns:
            table[f"{label} training {column.replace('km_', '').replace('_', ' ')}"] = km[column].to_numpy()
        break  # one model's groups keep the chart readable
    return table


def run_case(scene, phases, segmentation=None, segment_id=None, labelmap=None, label=None, clinical=None,
             bundles=(), builtin=(("aggressive-pd", "clinical-semantic"),), case_id="patient", heatmaps=True,
             device="auto", work_folder=None, show=True):
    """Apply: predict one patient from MRML nodes and put the results into ``scene``.

    ``phases``: {"ct_ap": volume node, "ct_pvp": volume node, ...}; the tumour comes from ``segmentation`` and
    ``segment_id`` (id or name) or from ``labelmap`` (and ``label``); ``clinical``: {manifest column: value}.
    Creates (or updates, on a second run for the same case) the results table, the features table, a survival
    chart (the patient's curve over the model's training Kaplan-Meier risk groups), a probability chart, and
    Grad-CAM heat-map volumes on the first phase's geometry. Returns a dict of nodes, the tables and timings.
    """
    import shutil
    import tempfile
    import time as clock

    from .patient import predict_patient, write_case
    start = clock.perf_counter()
    phases = {column: node for column, node in phases.items() if node is not None}
    if not phases:
        raise InputError("no CT volume given", case_id, "ct_ap", "choose at least the arterial-phase CT")
    reference = next(iter(phases.values()))
    images = {column: volume_to_image(node) for column, node in phases.items()}
    if segmentation is not None:
        mask = segment_mask(segmentation, segment_id, reference)
    elif labelmap is not None:
        mask = labelmap_mask(labelmap, label)
    else:
        raise InputError("no tumour segmentation given", case_id, "seg", "choose a segmentation and its segment")
    own_folder = work_folder is None
    folder = work_folder or tempfile.mkdtemp(prefix="tacepredict_case_")
    timings = {"read nodes": clock.perf_counter() - start}
    try:
        manifest_path = write_case(folder, case_id, images, mask, clinical)
        prediction = predict_patient(manifest_path, bundles, builtin, device=device)
        timings.update(prediction["timings"])
        prefix = f"TACEPredict {case_id}"
        nodes = {"results": dataframe_to_table(prediction["results"], scene, "", _node(
            scene, "vtkMRMLTableNode", f"{prefix} results")),
                 "features": dataframe_to_table(prediction["features"], scene, "", _node(
                     scene, "vtkMRMLTableNode", f"{prefix} features"))}
        if prediction["curves"]:
            curves = _survival_chart_table(prediction)
            nodes["survival_table"] = dataframe_to_table(curves, scene, "", _node(
                scene, "vtkMRMLTableNode", f"{prefix} survival curves"))
            nodes["survival_chart"] = plot_chart(
                scene, f"{prefix} survival", nodes["survival_table"], "years", list(curves.columns[1:]),
                title=f"{case_id}: predicted survival (research use only)", x_label="years",
                y_label="survival probability", chart=_node(scene, "vtkMRMLPlotChartNode", f"{prefix} survival"))
        results = prediction["results"]
        binary = results[(results["task"] != "survival") & results["probability"].notna()]
        if len(binary):
            table = pd.DataFrame({"model": [f"{t}: {m}" for t, m in zip(binary["task"], binary["model"])],
                                  "index": np.arange(len(binary), dtype=float),
                                  "probability": binary["probability"].to_numpy(dtype=float),
                                  "cutoff": binary["cutoff"].to_numpy(dtype=float)})
            nodes["probability_table"] = dataframe_to_table(table, scene, "", _node(
                scene, "vtkMRMLTableNode", f"{prefix} probabilities"))
            chart = plot_chart(scene, f"{prefix} probabilities", nodes["probability_table"], "index",
                               ["probability", "cutoff"], title=f"{case_id}: predicted probabilities "
                               "(research use only)", y_label="probability",
                               chart=_node(scene, "vtkMRMLPlotChartNode", f"{prefix} probabilities"))
            _bar(chart, scene, "probability")
            nodes["probability_chart"] = chart
        if heatmaps:
            from ..imaging.gradcam import explains, model_heatmaps
            failed = set(results.loc[results["error"] != "", "model"])  # their error is in the results table
            for model, info in prediction["models"]:
                if info is None or model.label in failed or not explains(model):
                    continue
                heat_start = clock.perf_counter()
                maps = model_heatmaps(model, prediction["data"], info["training"].get("feature_extraction"),
                                      device=device)
                for phase, image in maps.items():
                    name = f"{prefix} Grad-CAM {model.label} {phase}"
                    nodes[f"heatmap {model.label} {phase}"] = image_to_volume(
                        image, scene, name, node=_node(scene, "vtkMRMLScalarVolumeNode", name))
                    heatmap_display(nodes[f"heatmap {model.label} {phase}"], scene)
                timings[f"Grad-CAM {model.label}"] = clock.perf_counter() - heat_start
        if show:
            chart = nodes.get("survival_chart") or nodes.get("probability_chart")
            if chart is not None:
                show_table_and_chart(scene, nodes["results"], chart)
    finally:
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
    timings["total"] = clock.perf_counter() - start
    return {"nodes": nodes, "results": prediction["results"], "features": prediction["features"],
            "timings": timings}


def _bar(chart, scene, column):
    """Draw the named series of ``chart`` as bars (the cut-off stays a line)."""
    slicer = _slicer()
    for index in range(chart.GetNumberOfPlotSeriesNodes()):
        series = chart.GetNthPlotSeriesNode(index)
        if series.GetYColumnName() == column:
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)


def heatmap_display(node, scene):
    """A heat-map colour table and a 0-1 window on the volume's display node."""
    display = node.GetDisplayNode()
    for color_id in ("vtkMRMLColorTableNodeInferno", "vtkMRMLColorTableNodeRainbow"):
        if scene.GetNodeByID(color_id) is not None:
            display.SetAndObserveColorNodeID(color_id)
            break
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    return node


def load_case_nodes(scene, manifest, case_id):
    """Load one manifest case into ``scene``: {phase column: volume node, "seg": segmentation node or
    labelmap node}, plus "segment" (the segment id or label value the manifest names)."""
    import SimpleITK as sitk

    from ..data.images import is_dicom_segmentation, read_image, read_segmentation
    row = manifest.row(case_id)
    nodes = {}
    for column in manifest.phases:
        path = manifest.resolve(row.get(column))
        if path:
            image = read_image(path, case_id, column)
            nodes[column] = image_to_volume(image, scene, f"{case_id}_{column}")
    path = manifest.resolve(row.get("seg"))
    if path is None:
        raise InputError("no segmentation", case_id, "seg", "give the tumour segmentation's path")
    wanted = row.get("seg_label")
    wanted = None if wanted is None or (isinstance(wanted, float) and np.isnan(wanted)) or wanted == "" else wanted
    if path.lower().endswith(".seg.nrrd"):
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case_id}_seg")
        storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(path)
        if not storage.ReadData(node):
            raise InputError(f"Slicer cannot read {path}", case_id, "seg", "re-save it from Segment Editor")
        node.SetAndObserveStorageNodeID(storage.GetID())
        segmentation = node.GetSegmentation()
        if wanted is None:
            wanted = segmentation.GetNthSegmentID(0)
        else:  # the manifest names a segment, or gives its label value
            segments = read_segmentation(path, case_id).segments
            match = [s for s in segments if s.name.lower() == str(wanted).lower() or str(s.label_value) == str(wanted)]
            wanted = match[0].segment_id if match else wanted
        nodes["seg"], nodes["segment"] = node, wanted
    elif is_dicom_segmentation(path):  # DICOM SEG / RTSTRUCT: the chosen segment, checked against the CTs
        ct_paths = {c: manifest.resolve(row.get(c)) for c in manifest.phases}
        mask = read_segmentation(path, case_id, "seg", ct_paths=ct_paths).mask(wanted, case_id)
        nodes["seg"] = image_to_volume(mask, scene, f"{case_id}_seg_labelmap", labelmap=True)
        nodes["segment"] = 1
    else:
        labels = sitk.Cast(read_image(path, case_id, "seg"), sitk.sitkUInt8)
        nodes["seg"] = image_to_volume(labels, scene, f"{case_id}_seg_labelmap", labelmap=True)
        nodes["segment"] = None if wanted is None else int(float(wanted))
    return nodes


def save_scene(scene, folder, name):
    """Write every storable node of ``scene`` next to ``<folder>/<name>.mrml`` (volumes and segmentations
    as NRRD, tables as TSV) and the scene file itself, so that Slicer opens it as it was."""
    import os
    os.makedirs(folder, exist_ok=True)
    scene.SetRootDirectory(folder)
    for cls, suffix in (("vtkMRMLScalarVolumeNode", ".nrrd"), ("vtkMRMLLabelMapVolumeNode", ".nrrd"),
                        ("vtkMRMLSegmentationNode", ".seg.nrrd"), ("vtkMRMLTableNode", ".tsv")):
        collection = scene.GetNodesByClass(cls)
        for index in range(collection.GetNumberOfItems()):
            node = collection.GetItemAsObject(index)
            if cls == "vtkMRMLScalarVolumeNode" and node.IsA("vtkMRMLLabelMapVolumeNode"):
                continue
            storage = node.GetStorageNode()
            if storage is None:
                node.AddDefaultStorageNode()
                storage = node.GetStorageNode()
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in node.GetName())
            storage.SetFileName(os.path.join(folder, safe + suffix))
            if not storage.WriteData(node):
                raise OSError(f"could not write {node.GetName()} to {storage.GetFileName()}")
    path = os.path.join(folder, f"{name}.mrml")
    scene.SetURL(path)
    if not scene.Commit(path):
        raise OSError(f"could not write the scene {path}")
    return path


def run_cohort(manifest_path, bundles, out_dir, cases=None, device="auto", heatmaps=True, log=print,
               overwrite=False):
    """The headless batch: every case of a manifest loaded into its own scene, predicted with ``run_case``,
    saved as ``<out_dir>/<case>/<case>.mrml`` (openable in Slicer), and one cohort table
    ``cohort_results.csv``. A case that fails is recorded in ``failures.csv`` and the others carry on.
    Returns ``(results, failures)``.

    Case folders are named by ``outputs.file_names`` (an ID such as ``../x`` or ``/abs`` cannot leave
    ``out_dir``; IDs that sanitise alike get distinct folders); each case's folder is written elsewhere and
    renamed into place when complete; the two tables are written as one unit (``outputs.Outputs``); a lock
    stops a second batch on ``out_dir``; a previous batch's results are replaced only with ``overwrite``."""
    import os
    import shutil

    import slicer

    from ..data.manifest import read_manifest
    from ..errors import debug_enabled, one_line
    from ..outputs import OutputLock, Outputs, file_names, inside, refuse_overwrite, replace_folder, staging_folder
    manifest = read_manifest(manifest_path)
    refuse_overwrite(os.path.join(out_dir, "cohort_results.csv"), overwrite, "batch result")
    names = file_names(manifest.case_ids)
    wanted = [str(c) for c in (cases or manifest.case_ids)]
    os.makedirs(out_dir, exist_ok=True)
    results, failures = [], []
    with OutputLock(out_dir, f"slicer_batch {os.path.abspath(manifest_path)}"):
        for case_id in wanted:
            scene = slicer.vtkMRMLScene()
            staging = None
            try:
                folder = inside(out_dir, names[case_id]) if case_id in names else None
                nodes = load_case_nodes(scene, manifest, case_id)
                seg = nodes["seg"]
                is_segmentation = seg.IsA("vtkMRMLSegmentationNode")
                phases = {column: nodes[column] for column in manifest.phases if column in nodes}
                out = run_case(scene, phases, segmentation=seg if is_segmentation else None,
                               segment_id=nodes["segment"], labelmap=None if is_segmentation else seg,
                               label=nodes["segment"], clinical=manifest.row(case_id).to_dict(), bundles=bundles,
                               case_id=case_id, heatmaps=heatmaps, device=device)
                staging = staging_folder(folder)
                save_scene(scene, staging, names[case_id])
                replace_folder(staging, folder)
                scene_path = os.path.join(folder, f"{names[case_id]}.mrml")
                results.append(out["results"].assign(scene=os.path.relpath(scene_path, out_dir)))
                errors = out["results"]["error"].astype(bool).sum()
                log(f"{case_id}: {len(out['results'])} model(s), {errors} failed, {out['timings']['total']:.1f} s")
            except Exception as exc:  # noqa: BLE001 - recorded per case; the cohort carries on
                error = one_line(exc) if not isinstance(exc, InputError) else exc.problem
                failures.append({"case_id": case_id, "column": getattr(exc, "column", "") or "",
                                 "error": error, "fix": getattr(exc, "fix", "") or "",
                                 "traceback": __import__("traceback").format_exc(limit=3) if debug_enabled() else ""})
                log(f"{case_id}: FAILED - {error}")
            finally:
                scene.Clear(1)
                if staging is not None and os.path.isdir(staging):
                    shutil.rmtree(staging, ignore_errors=True)
        table = pd.concat(results, ignore_index=True) if results else pd.DataFrame(columns=["case_id"])
        failed = pd.DataFrame(failures, columns=["case_id", "column", "error", "fix", "traceback"])
        with Outputs(out_dir, "slicer_batch", known=("cohort_results.csv", "failures.csv")) as outputs:
            table.to_csv(outputs.path("cohort_results.csv"), index=False)
            failed.to_csv(outputs.path("failures.csv"), index=False)
    return table, failed


def report_to_scene(scene, report_dir, name):
    """An ``evaluate`` report folder as scene content: the metrics table, a Kaplan-Meier chart by risk group
    (survival) or a ROC chart (binary tasks), and the calibration chart. Returns {name: node}."""
    import os

    from ..stats import metrics as M
    nodes = {}
    path = os.path.join(report_dir, "metrics.csv")
    if not os.path.isfile(path):
        raise InputError(f"no metrics.csv in {report_dir}", column="report", fix="run evaluate first")
    nodes["metrics"] = dataframe_to_table(pd.read_csv(path), scene, "", _node(scene, "vtkMRMLTableNode",
                                                                               f"{name} metrics"))
    predictions = pd.read_csv(os.path.join(report_dir, "predictions.csv"))
    if "os_days" in predictions:
        from ..models.overall_survival import CURVE_YEARS, DAYS_PER_YEAR
        curves = pd.DataFrame({"years": CURVE_YEARS})
        for group in ("low", "high"):
            members = predictions["risk_group"] == group
            if members.any():
                km = M.kaplan_meier(predictions.loc[members, "os_days"], predictions.loc[members, "os_event"])
                curves[f"{group} risk (n={int(members.sum())})"] = np.atleast_1d(
                    M.survival_at(km, CURVE_YEARS * DAYS_PER_YEAR))
        nodes["curve_table"] = dataframe_to_table(curves, scene, "", _node(scene, "vtkMRMLTableNode",
                                                                           f"{name} Kaplan-Meier"))
        nodes["curve_chart"] = plot_chart(scene, f"{name} Kaplan-Meier", nodes["curve_table"], "years",
                                          list(curves.columns[1:]), title=f"{name}: Kaplan-Meier by risk group",
                                          x_label="years", y_label="overall survival",
                                          chart=_node(scene, "vtkMRMLPlotChartNode", f"{name} Kaplan-Meier"))
    else:
        # the observed label: aggressive_pd or objective_response (the mRECIST report scores CR + PR against it);
        # other columns (Model_CSD's cs_score and d_probability, mRECIST's p_CR ... predicted_class) are inputs
        label = [c for c in ("aggressive_pd", "objective_response") if c in predictions.columns][0]
        fpr, tpr, _ = M.roc_curve(predictions[label].to_numpy(), predictions["probability"].to_numpy())
        auc = M.roc_auc(predictions[label].to_numpy(), predictions["probability"].to_numpy())
        curves = pd.DataFrame({"false positive rate": fpr, f"AUC {auc:.3f}": tpr, "chance": fpr})
        nodes["curve_table"] = dataframe_to_table(curves, scene, "", _node(scene, "vtkMRMLTableNode", f"{name} ROC"))
        nodes["curve_chart"] = plot_chart(scene, f"{name} ROC", nodes["curve_table"], "false positive rate",
                                          list(curves.columns[1:]), title=f"{name}: ROC ({label})",
                                          y_label="true positive rate",
                                          chart=_node(scene, "vtkMRMLPlotChartNode", f"{name} ROC"))
    path = os.path.join(report_dir, "calibration.csv")
    if os.path.isfile(path):
        calibration = pd.read_csv(path)
        table = pd.DataFrame({"predicted": calibration["predicted"], "observed": calibration["observed"],
                              "ideal": calibration["predicted"]})
        nodes["calibration_table"] = dataframe_to_table(table, scene, "", _node(scene, "vtkMRMLTableNode",
                                                                                f"{name} calibration"))
        nodes["calibration_chart"] = plot_chart(scene, f"{name} calibration", nodes["calibration_table"],
                                                "predicted", ["observed", "ideal"], title=f"{name}: calibration",
                                                y_label="observed",
                                                chart=_node(scene, "vtkMRMLPlotChartNode", f"{name} calibration"))
    show_table_and_chart(scene, nodes["metrics"], nodes["curve_chart"])
    return nodes
