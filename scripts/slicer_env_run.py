"""The extension's paths in a Python that mimics Slicer's (run by scripts/slicer_python_env.sh; issue 20).

Everything runs in this interpreter or in subprocesses of it, through slicer-core's real MRML scene:

1. a synthetic demo cohort (one worker, as the module's Generate button);
2. the module's Extract command as it launches it (``--workers 1``, both backbones, radiomics by the library's torch
   engine: pyradiomics is never installed in Slicer), with ``--weights random`` (no network here);
3. Train of one bundle of every model kind that the registry declares, with the module's cohort command line
   (plus ``--epochs`` for the networks, to keep the run short);
4. Apply (``TACEPredictLib.slicer.mrml.run_case``, what the module's Logic.process calls) on one demo case with every
   bundle that trained: each model must give a result, not an error;
5. the headless batch script (scripts/slicer_batch.py) on 3 cases with those bundles;
6. Evaluate of one model per task (and the published score), each report shown in the scene as the module does.

One line per step: PASS or FAIL with the reason; the exit code is the number of failed steps (0: all passed).
"""

import argparse
import os
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# One model per task for step 6 (the module's default first, then models that need no radiomics).
EVALUATE = {"survival": "nomogram", "response": "cnn", "mrecist": "resnet50", "aggressive-pd": "csd"}
RESULTS = []


def step(name, function, *args):
    start = time.monotonic()
    try:
        detail = function(*args) or ""
        ok = True
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the run goes on
        detail = f"{type(exc).__name__}: {exc}".strip()
        if not isinstance(exc, StepFailed):
            detail += " | " + traceback.format_exc().strip().splitlines()[-3].strip()
        ok = False
    seconds = time.monotonic() - start
    RESULTS.append((name, ok, seconds, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  ({seconds:.1f} s){'  - ' + detail if detail else ''}", flush=True)
    return ok


class StepFailed(RuntimeError):
    pass


def cli(*arguments, log=None):
    """``python -m TACEPredictLib.cli ARGS`` in a subprocess, as the module's cohort jobs run; raises with the
    output's last lines when it fails."""
    command = [sys.executable, "-m", "TACEPredictLib.cli", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if log:
        with open(log, "w") as f:
            f.write(" ".join(command) + "\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).strip().splitlines() if line.strip()]
        raise StepFailed(f"exit {done.returncode}: " + " / ".join(lines[-2:]))
    return done.stdout


def versions():
    import numpy
    import scipy
    import SimpleITK
    import slicer
    import torch
    import vtk
    from importlib import metadata
    return (f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, scipy {scipy.__version__}, SimpleITK "
            f"{SimpleITK.__version__}, vtk {vtk.vtkVersion.GetVTKVersion()}, torch {torch.__version__}, "
            f"slicer-core {metadata.version('slicer-core')} ({slicer.__file__})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the cohort, features, bundles and reports")
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the image networks")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train steps run this many at a time (each is its own process, as the module's)")
    args = parser.parse_args(argv)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    print(versions(), flush=True)

    paths = {"features": os.path.join(work, "features")}

    def cohort():
        from TACEPredictLib.data.demo_cohort import generate_cohort
        paths["manifest"] = generate_cohort(os.path.join(work, "cohort"), cases=args.cases, seed=0, workers=1)
        return paths["manifest"]

    if not step(f"demo cohort ({args.cases} cases, one worker)", cohort):
        return finish()

    def extract_as_module():
        # TACEPredictLogic.cohortCommand("extract", ...): one worker, radiomics by the torch engine (pyradiomics is
        # never installed in Slicer); --weights random because this machine has no network
        from TACEPredictLib.slicer import COHORT_BACKBONES
        cli("extract", "--manifest", paths["manifest"], "--out", paths["features"], "--workers", "1",
            "--deep", ",".join(COHORT_BACKBONES), "--device", "cpu", "--weights", "random",
            log=os.path.join(logs, "extract.log"))
        return "radiomics (torch engine) and deep features"

    if not step("extract as the module launches it (--weights random)", extract_as_module):
        return finish()

    from TACEPredictLib import models
    bundles = {}
    trainings = []
    for spec in models.models_of(trained=True):  # every trained model kind the registry declares
        task, kind, accepted = spec.task, spec.kind, spec.options
        out = os.path.join(work, "bundles", f"{task}-{kind}")
        extra = ["--epochs", str(args.epochs)] if "epochs" in accepted else []
        extra += ["--device", "cpu"] if "device" in accepted else []
        extra += ["--weights", "random"] if "weights" in accepted else []

        def train(task=task, kind=kind, out=out, extra=extra):
            cli("train", "--task", task, "--model", kind, "--manifest", paths["manifest"], "--out", out,
                "--features", paths["features"], "--seed", "0", *extra,
                log=os.path.join(logs, f"train-{task}-{kind}.log"))
            bundles[(task, kind)] = out

        trainings.append((f"train {task} / {kind}", train))

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # each step is a subprocess
        list(pool.map(lambda named: step(*named), trainings))
    order = [key for key in ((s.task, s.kind) for s in models.models_of(trained=True)) if key in bundles]
    bundles = {key: bundles[key] for key in order}  # the registry's order, whatever order they finished in

    import pandas as pd
    import slicer
    from TACEPredictLib.slicer import mrml
    from TACEPredictLib.data.manifest import read_manifest
    manifest = read_manifest(paths["manifest"])
    case_ids = manifest.case_ids

    def apply():
        scene = slicer.vtkMRMLScene()
        nodes = mrml.load_case_nodes(scene, manifest, case_ids[0])
        seg = nodes["seg"]
        is_segmentation = seg.IsA("vtkMRMLSegmentationNode")
        phases = {c: nodes[c] for c in ("ct_ap", "ct_pvp", "ct_dp") if c in nodes}
        out = mrml.run_case(scene, phases, segmentation=seg if is_segmentation else None,
                            segment_id=nodes["segment"], labelmap=None if is_segmentation else seg,
                            label=nodes["segment"], clinical=manifest.row(case_ids[0]).to_dict(),
                            bundles=list(bundles.values()), case_id=case_ids[0], device="cpu", heatmaps=True)
        results = out["results"]
        failed = results[results["error"] != ""]
        for row in results.itertuples():
            print(f"      {row.task} / {row.model}: " + (f"probability {row.probability:.3f}, score {row.score:.3f}"
                                                        if not row.error else f"NOT RUN - {row.error}"))
        if len(results) != len(bundles) + 1:  # + the published aggressive-progression score
            raise StepFailed(f"{len(results)} result rows for {len(bundles)} bundles + the published score")
        if len(failed):
            raise StepFailed(f"{len(failed)} of {len(results)} models did not run: "
                             + "; ".join(f"{m}: {e[:160]}" for m, e in zip(failed["model"], failed["error"])))
        heat = [name for name in out["nodes"] if name.startswith("heatmap")]
        return (f"{len(results)} models on {case_ids[0]} ({len(bundles)} bundles + the published score), "
                f"{len(heat)} heat maps, scene nodes: {scene.GetNumberOfNodes()}")

    step(f"Apply on slicer-core's scene with every bundle that trained ({len(bundles)})", apply)

    def batch():
        script = os.path.join(REPO, "scripts", "slicer_batch.py")
        out = os.path.join(work, "batch")
        command = [sys.executable, script, "--manifest", paths["manifest"], "--out", out, "--cases",
                   ",".join(case_ids[:3]), "--device", "cpu"]
        for bundle in bundles.values():
            command += ["--bundle", bundle]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        with open(os.path.join(logs, "batch.log"), "w") as f:
            f.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StepFailed(f"exit {done.returncode}: {(done.stdout + done.stderr).strip().splitlines()[-1]}")
        results = pd.read_csv(os.path.join(out, "cohort_results.csv"))
        scenes = [os.path.isfile(os.path.join(out, c, f"{c}.mrml")) for c in case_ids[:3]]
        errors = results["error"].fillna("") if "error" in results else pd.Series([], dtype=str)
        if sorted(results["case_id"].unique()) != sorted(case_ids[:3]) or not all(scenes) or (errors != "").any():
            raise StepFailed(f"cases {sorted(results['case_id'].unique())}, scenes {scenes}, "
                             f"{int((errors != '').sum())} model errors")
        return f"{len(results)} result rows, one scene per case"

    step("headless batch script on 3 cases", batch)

    def evaluate(task, kind):
        model = bundles.get((task, kind))
        if model is None and kind != "clinical-semantic":
            raise StepFailed(f"no {task} / {kind} bundle (its training failed above)")
        report = os.path.join(work, "reports", f"{task}-{kind}")
        arguments = ["evaluate", "--model", model or kind, "--manifest", paths["manifest"], "--out", report,
                     "--bootstrap", "50"]
        arguments += ["--features", paths["features"]] if model else ["--task", task]
        cli(*arguments, log=os.path.join(logs, f"evaluate-{task}-{kind}.log"))
        metrics = pd.read_csv(os.path.join(report, "metrics.csv"))
        scene = slicer.vtkMRMLScene()
        nodes = mrml.report_to_scene(scene, report, f"TACEPredict {kind}")
        values = dict(zip(metrics["metric"], metrics["value"]))
        headline = next(m for m in ("c_index", "auc", "cases") if m in values)
        return f"{headline} {values[headline]:.3f} (training cases); {len(nodes)} scene nodes from the report"

    for task, kind in list(EVALUATE.items()) + [("aggressive-pd", "clinical-semantic")]:
        step(f"evaluate {task} / {kind}", evaluate, task, kind)
    return finish()


def finish():
    failed = [r for r in RESULTS if not r[1]]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    for name, _, _, detail in failed:
        print(f"  failed: {name}: {detail}")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
