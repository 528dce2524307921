"""Model bundles written by TACEPredict before its restructuring (commit 4164fd6), kept so that a test can
show that bundles users already have still load and predict the same numbers.

``write_inputs(folder)`` writes a small deterministic cohort (manifest, features.parquet, lesion patches,
extraction.json) with numpy alone, so the test rebuilds exactly the inputs the bundles were trained on.
``python make.py`` (run once, with the old code importable) trains one small bundle of every model kind on it
and writes ``expected_predictions.csv``; ``python make.py --check`` trains the same models with today's code
(same seeds and options) and compares their predictions with those numbers: training, not only loading, is
unchanged; networks are narrow (width 2) and briefly trained to keep the files
small: the point is the numbers a bundle reproduces, not the model's quality.
"""

import json
import os
import sys
import tempfile

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = 30
CLASSES = ("CR", "PR", "SD", "PD")


def write_inputs(folder):
    """The cohort: returns (manifest path, features folder)."""
    rng = np.random.default_rng(20261130)
    ids = [f"b{i:02d}" for i in range(CASES)]
    u = rng.normal(size=CASES)
    response = np.array(CLASSES)[np.arange(CASES) % 4]
    death = rng.exponential(600 / np.exp(0.9 * u))
    censor = rng.uniform(300, 1500, CASES)
    table = pd.DataFrame({
        "case_id": ids, "age": np.round(rng.normal(62, 9, CASES), 1), "sex": rng.choice(["M", "F"], CASES),
        "child_pugh": rng.choice(["A", "B"], CASES), "afp_ng_ml": np.round(10 ** rng.normal(1.6, 0.9, CASES), 1),
        "tumor_size_mm": np.round(rng.uniform(20, 90, CASES), 1), "tumor_number": rng.integers(1, 4, CASES),
        "portal_vein_invasion": rng.integers(0, 2, CASES), "cirrhosis": rng.integers(0, 2, CASES),
        "fusion_lesion": rng.integers(0, 2, CASES), "nodule_in_nodule": rng.integers(0, 2, CASES),
        "capsule": rng.choice(["absent", "non-intact", "intact"], CASES),
        "os_days": np.round(np.minimum(death, censor), 1), "os_event": (death <= censor).astype(int),
        "response": response, "aggressive_pd": (np.arange(CASES) % 3 == 0).astype(int),
        "aggressive_pd_days": np.round(rng.uniform(30, 700, CASES), 1)})
    os.makedirs(folder, exist_ok=True)
    manifest = os.path.join(folder, "manifest.csv")
    table.to_csv(manifest, index=False)
    features = os.path.join(folder, "features")
    os.makedirs(os.path.join(features, "cache"), exist_ok=True)
    rows = []
    for family, count in (("densenet121", 12), ("resnet50", 12), ("radiomics", 16)):
        for phase in ("ct_ap", "ct_pvp"):
            values = rng.normal(size=(CASES, count))
            values[:, 0] += 1.5 * u
            for j in range(count):
                rows.append(pd.DataFrame({"case_id": ids, "phase": phase, "reader": "seg", "family": family,
                                          "feature": f"f{j:03d}", "value": values[:, j], "weights": "synthetic"}))
    pd.concat(rows, ignore_index=True).to_parquet(os.path.join(features, "features.parquet"), index=False)
    index = []
    for case in ids:
        path = os.path.join("cache", f"{case}.patches.npz")
        np.savez_compressed(os.path.join(features, path),
                            centre=rng.normal(60, 30, (1, 1, 224, 224)).astype(np.int16),
                            boxes=rng.normal(60, 30, (2, 1, 128, 128)).astype(np.int16),
                            inside=rng.normal(90, 30, (2, 1, 224, 224)).astype(np.int16),
                            inside_resnet50_ct_ap=rng.normal(0, 1, (2, 2048)).astype(np.float32))
        index.append({"case_id": case, "file": path})
    pd.DataFrame(index).to_csv(os.path.join(features, "patches.csv"), index=False)
    with open(os.path.join(features, "extraction.json"), "w") as handle:
        json.dump({"settings": {"sampling": "inside", "normalisation": "window", "weights": "random",
                                "deep": ["resnet50"]}}, handle)
    return manifest, features


# (task, kind, options) of every model kind of the old code; the folder is "<task>__<kind>"
KINDS = [("survival", "clinical-cox", {}), ("survival", "nomogram", {"variant": "integrated"}),
         ("survival", "signature", {}), ("survival", "lasso-cox", {"family": "radiomics"}),
         ("survival", "dlop", {"variant": "combined"})]
KINDS += [("response", k, {}) for k in ("linear", "logistic", "svm", "gbm", "rf")]
KINDS += [("response", "cnn", {"epochs": 2, "width": 2})]
# the integrations of the three small classifiers (an rf or gbm inside an integration is the 5-7 MB rf / gbm
# bundle again, whose loading the rf and gbm bundles already show)
KINDS += [("response", f"{k}+{p}", {"epochs": 2, "width": 2}) for p in ("cnn", "size")
          for k in ("linear", "logistic", "svm")]
KINDS += [("mrecist", "resnet50", {"epochs": 20, "weights": "random"}), ("aggressive-pd", "cnn", {"epochs": 2, "width": 2}),
          ("aggressive-pd", "csd", {"epochs": 2, "width": 2})]


def _train(task, kind, options, data):
    """A model trained as the old code's ``train_bundle`` did (its options, the width included)."""
    try:
        from TACEPredictLib import models
        return models.train_bundle(task, kind, data, tempfile.mkdtemp(), seed=0, **options)[0]
    except Exception:  # today's registry refuses options a user may not set (width): build the model directly
        from TACEPredictLib.models import registry
        spec = registry.model_spec(task, kind)
        return spec.cls(**spec.fixed, **options).fit(data, seed=0)


def main(check=False):
    try:
        from TACEPredictLib.data.cohort import CohortData
    except ImportError:  # the code before the restructuring
        from TACEPredictLib.covariates import CohortData
    work = tempfile.mkdtemp()
    manifest, features = write_inputs(work)
    data = CohortData(manifest, features)
    frames = []
    for task, kind, options in KINDS:
        folder = os.path.join(HERE, f"{task}__{kind.replace('+', '_')}")
        if check:
            model = _train(task, kind, options, data)
        else:
            from TACEPredictLib import models
            model, _ = models.train_bundle(task, kind, data, folder, seed=0, **options)
            for name in os.listdir(folder):  # keep only what loading needs: model.json, params, weights
                if name.endswith((".csv", ".png")):
                    os.remove(os.path.join(folder, name))
        prediction = model.predict(data)
        value = prediction["risk_score"] if task == "survival" else prediction["probability"]
        frames.append(pd.DataFrame({"bundle": os.path.basename(folder), "case_id": prediction["case_id"],
                                    "value": value.to_numpy(dtype=float)}))
        print(task, kind, "trained" if check else "written", file=sys.stderr)
    table = pd.concat(frames)
    if not check:
        table.to_csv(os.path.join(HERE, "expected_predictions.csv"), index=False, float_format="%.12g")
        return
    expected = pd.read_csv(os.path.join(HERE, "expected_predictions.csv"), dtype={"case_id": str})
    merged = expected.merge(table, on=["bundle", "case_id"], suffixes=("_before", "_now"))
    merged["difference"] = (merged["value_now"] - merged["value_before"]).abs()
    worst = merged.groupby("bundle")["difference"].max()
    print(worst.to_string())
    print(f"{len(worst)} model kinds retrained; largest difference {worst.max():.3g}")


if __name__ == "__main__":
    main(check="--check" in sys.argv)
