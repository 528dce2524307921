"""Learning curve of the image networks trained from scratch: held-out AUC against the number of training cases.

    .venv/bin/python scripts/learning_curve.py --out LC [--cases 700] [--test-cases 140]
        [--sizes 70,140,280,560] [--models model-d,cnn] [--seeds 0] [--device auto|cpu|cuda] [--workers N]
    .venv/bin/python scripts/learning_curve.py --out LC --cohort PREPARED   # a cohort made earlier
    .venv/bin/python scripts/learning_curve.py --out LC --quick             # a few minutes on a laptop

Model_D (paper 004, aggressive progression) and the response CNN (paper 002) learn their filters from the
training cases alone, so one held-out AUC from 140 demo cases (docs/validation.md: Model_D 0.656) says little
about what they reach with more data. This script generates a larger synthetic demo cohort outside the main job
(`tacepredict phantom`, then `tacepredict extract --no-radiomics --deep none --icc-cases 0`, which stores the
lesion patch sets the networks read and computes nothing else), keeps one stratified held-out set fixed, trains
each network on nested training subsets (every smaller set is contained in the larger ones) and evaluates each
on the same held-out cases: AUC with its DeLong 95% CI, and the Spearman correlation of the network's output
with the phantom's true image predictor (the part of the outcome the images carry, the ceiling a network on the
images can approach; its AUC is reported too).

Everything goes under ``--out``: ``cohort/`` and ``features/`` (unless ``--cohort`` names a folder holding
both, e.g. an earlier run's ``--out`` or a demo run), ``learning_curve.csv`` (one row per network, training
size and seed), ``learning_curve.json`` (settings, split, ground truth) and ``learning_curve.png``. A re-run
with the same ``--out`` reuses the cohort and the extraction (cached per case) and skips the rows the CSV
already holds. Nothing is downloaded: it runs offline, on a CPU or with ``--device cuda``.
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from TACEPredictLib import cli, models  # noqa: E402
from TACEPredictLib.data.cohort import CohortData  # noqa: E402
from TACEPredictLib.data.demo_cohort import APD_COEF, RESPONSE_COEF  # noqa: E402
from TACEPredictLib.data.outcomes import aggressive_label, objective_response  # noqa: E402
from TACEPredictLib.stats import metrics as M  # noqa: E402
from TACEPredictLib.stats.splits import stratified_holdout  # noqa: E402

# network kind -> (task, label function, the phantom's image part of its outcome's linear predictor)
NETWORKS = {
    "model-d": ("aggressive-pd", aggressive_label, {k: APD_COEF[k] for k in ("zh", "zn")}),
    "cnn": ("response", objective_response, {k: RESPONSE_COEF[k] for k in ("ze", "zs", "zh", "zn")}),
}
QUICK = {"cases": 120, "test_cases": 40, "sizes": "40,80", "epochs": 4}


def prepare_cohort(out, cases, seed, workers, cohort=None):
    """The cohort manifest and the extraction folder: ``cohort`` (prepared) or generated into ``out``."""
    root = cohort or out
    manifest = os.path.join(root, "cohort", "manifest.csv")
    features = os.path.join(root, "features")
    if cohort is not None:
        for path in (manifest, os.path.join(features, "patches.csv")):
            if not os.path.isfile(path):
                sys.exit(f"{path} is missing: --cohort must name a folder with cohort/manifest.csv and the "
                         "features/ an extraction wrote (an earlier --out of this script, or a demo run)")
        return manifest, features
    workers = ["--workers", str(workers)] if workers else []
    if os.path.isfile(manifest) and len(pd.read_csv(manifest)) > cases:
        # an earlier, larger cohort of the same seed: its first cases (the phantom draws each case from the seed
        # and its index, so they are the cases a smaller run generates), in a manifest beside it
        subset = os.path.join(root, "cohort", f"manifest_{cases}.csv")
        pd.read_csv(manifest).iloc[:cases].to_csv(subset, index=False)
        manifest = subset
    elif not os.path.isfile(manifest) or len(pd.read_csv(manifest)) != cases:
        start = time.monotonic()
        if cli.main(["phantom", "--out", os.path.join(out, "cohort"), "--cases", str(cases), "--seed", str(seed),
                     *workers]):
            sys.exit("phantom failed")
        print(f"phantom: {cases} cases in {time.monotonic() - start:.0f} s", flush=True)
    wanted = set(pd.read_csv(manifest)["case_id"].astype(str))
    index = os.path.join(features, "patches.csv")
    if not os.path.isfile(index) or not wanted <= set(pd.read_csv(index)["case_id"].astype(str)):
        start = time.monotonic()
        status = cli.main(["extract", "--manifest", manifest, "--out", features, "--no-radiomics", "--deep", "none",
                           "--icc-cases", "0", "--quiet", *workers])
        if status:
            print("extract: some cases failed (see features/failures.csv); they are left out", flush=True)
        print(f"extract (lesion patches only): {time.monotonic() - start:.0f} s", flush=True)
    return manifest, features


def split(manifest, features, test_cases, seed):
    """A held-out set stratified by both outcomes, fixed for every training size, and the training pool in a
    fixed random order (the first n cases are the training set of size n, so the sets are nested)."""
    data = CohortData(manifest, features)
    patched = set(pd.read_csv(os.path.join(features, "patches.csv"))["case_id"].astype(str))
    data = data.subset(data.table[data.table["case_id"].astype(str).isin(patched)])
    table = data.table
    strata = (aggressive_label(table).fillna(-1) * 2 + objective_response(table).fillna(-1)).to_numpy()
    held_out = stratified_holdout(strata, test_cases / len(table), seed)
    pool = np.flatnonzero(~held_out)
    pool = pool[np.random.default_rng(seed).permutation(len(pool))]
    return data, data.subset(table.iloc[np.flatnonzero(held_out)]), pool


def image_truth(data, weights):
    """The phantom's image part of a linear predictor for the cases of ``data`` (None without ground truth)."""
    path = os.path.join(os.path.dirname(data.manifest_path), "ground_truth.csv")
    if not os.path.isfile(path):
        return None, None
    truth = pd.read_csv(path, dtype={"case_id": str}).set_index("case_id").loc[data.case_ids]
    return sum(w * truth[k] for k, w in weights.items()).to_numpy(), truth


def plot(table, truth, path, notice):
    """Held-out AUC (DeLong 95% CI) and the Spearman correlation with the true image predictor against the
    training size, one line per network (the mean over seeds; single seeds as dots)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, ax_rho) = plt.subplots(1, 2, figsize=(10.5, 4.4))
    sizes = sorted(table["train_cases"].unique())
    for k, (kind, colour) in enumerate(zip(NETWORKS, ("C0", "C1"))):
        part = table[table["model"] == kind]
        if part.empty:
            continue
        shift = 1 + 0.025 * (k - 0.5)  # side by side on the log axis
        by_size = part.groupby("train_cases")
        mean = by_size["auc"].mean()
        lower, upper = by_size["auc_lower"].mean(), by_size["auc_upper"].mean()
        ax.errorbar(mean.index * shift, mean, yerr=[mean - lower, upper - mean], fmt="o-", capsize=3,
                    color=colour, label=f"{kind} ({NETWORKS[kind][0]})")
        rho = by_size["spearman_true_image"].mean()
        ax_rho.plot(rho.index, rho, "o-", color=colour, label=kind)
        if part["seed"].nunique() > 1:
            ax.plot(part["train_cases"] * shift, part["auc"], ".", color=colour, alpha=0.5)
            ax_rho.plot(part["train_cases"], part["spearman_true_image"], ".", color=colour, alpha=0.5)
        if kind in truth:
            ax.axhline(truth[kind]["auc_true_image_part"], color=colour, linestyle=":",
                       label=f"{kind}: the true image predictor")
    ax.axhline(0.5, color="0.6", linestyle="--")
    ax.set_ylabel("held-out AUC (DeLong 95% CI)")
    ax.set_ylim(0.3, 1.0)
    ax.legend(fontsize=7, loc="lower right")
    ax_rho.axhline(0.0, color="0.6", linestyle="--")
    ax_rho.set_ylabel("Spearman with the true image predictor")
    ax_rho.set_ylim(-0.2, 1.0)
    ax_rho.legend(fontsize=7, loc="lower right")
    for a in (ax, ax_rho):
        a.set_xscale("log", base=2)
        a.set_xticks(sizes, [str(s) for s in sizes])
        a.minorticks_off()
        a.set_xlabel("training cases")
    fig.suptitle("Image networks trained from scratch: learning curve on the held-out cases (synthetic demo cohort)",
                 fontsize=9)
    fig.text(0.01, 0.005, notice, fontsize=6, color="0.35", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (cohort, extraction, CSV, JSON, figure)")
    parser.add_argument("--cohort", default=None,
                        help="a prepared folder with cohort/manifest.csv and features/ (skips generation)")
    parser.add_argument("--cases", type=int, default=700, help="cases to generate (training pool + held-out)")
    parser.add_argument("--test-cases", type=int, default=140, help="held-out cases, fixed for every size")
    parser.add_argument("--sizes", default="70,140,280,560", help="nested training-set sizes")
    parser.add_argument("--models", default="model-d,cnn", help="networks: " + ", ".join(NETWORKS))
    parser.add_argument("--seeds", default="0", help="training seeds per size (e.g. 0,1,2 for the spread)")
    parser.add_argument("--epochs", type=int, default=None, help="override the networks' epochs (default: theirs)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--seed", type=int, default=1,
                        help="phantom and split seed (1: a cohort other than the main job's, seed 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes for phantom and extract")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for training (default: torch's; 1 is faster on a busy machine)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK['cases']} cases, {QUICK['test_cases']} held out, sizes "
                             f"{QUICK['sizes']}, {QUICK['epochs']} epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.cases, args.test_cases, args.sizes, args.epochs = (QUICK["cases"], QUICK["test_cases"], QUICK["sizes"],
                                                                args.epochs or QUICK["epochs"])
    os.makedirs(args.out, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in args.models.split(",") if k]
    for kind in kinds:
        if kind not in NETWORKS:
            sys.exit(f"unknown network '{kind}': use {', '.join(NETWORKS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    start_all = time.monotonic()
    manifest, features = prepare_cohort(args.out, args.cases, args.seed, args.workers, args.cohort)
    data, held_out, pool = split(manifest, features, args.test_cases, args.seed)
    if max(sizes) > len(pool):
        sys.exit(f"the training pool has {len(pool)} cases, fewer than the largest size {max(sizes)}: raise --cases")
    csv = os.path.join(args.out, "learning_curve.csv")
    rows = pd.read_csv(csv).to_dict("records") if os.path.isfile(csv) else []
    truth_summary = {}
    for kind in kinds:
        task, label_of, weights = NETWORKS[kind]
        y_test = label_of(held_out.table).to_numpy(dtype=float)
        image, full = image_truth(held_out, weights)
        if image is not None:
            lp = "lp_aggressive_pd" if task == "aggressive-pd" else "lp_response"
            known = np.isfinite(y_test)
            truth_summary[kind] = {"auc_true_image_part": M.roc_auc(y_test[known], image[known]),
                                   "auc_true_lp": M.roc_auc(y_test[known], full[lp].to_numpy()[known])}
        for n in sizes:
            train = data.subset(data.table.iloc[pool[:n]])
            y_train = label_of(train.table).dropna().to_numpy(dtype=int)
            for seed in seeds:
                if any(r["model"] == kind and r["train_cases"] == n and r["seed"] == seed for r in rows):
                    continue
                options = {"device": args.device, **({"epochs": args.epochs} if args.epochs else {})}
                model = models.make_model(task, kind, **options)
                start = time.monotonic()
                model.fit(train, seed=seed)
                seconds = time.monotonic() - start
                labelled, y = model.labelled(held_out)
                probability = model.probability(labelled)
                auc, lower, upper = M.roc_auc_ci(y, probability)
                rho = np.nan
                if image is not None:
                    from scipy.stats import spearmanr
                    keep = np.isin(held_out.case_ids, labelled.case_ids)
                    rho = float(spearmanr(probability, image[keep])[0])
                row = {"model": kind, "task": task, "train_cases": n, "seed": seed,
                       "train_positives": int(y_train.sum()), "test_cases": int(len(y)),
                       "test_positives": int(y.sum()), "auc": auc, "auc_lower": lower, "auc_upper": upper,
                       "spearman_true_image": rho, "epochs": model.epochs, "device": args.device,
                       "threads": args.threads or "default", "train_seconds": seconds}
                rows.append(row)
                pd.DataFrame(rows).to_csv(csv, index=False)  # after every row: a stopped run keeps what it measured
                print(f"{kind:8s} {n:4d} training cases (seed {seed}): held-out AUC {auc:.3f} ({lower:.3f}-"
                      f"{upper:.3f}), Spearman with the true image predictor {rho:.3f}, {seconds:.0f} s",
                      flush=True)
    table = pd.DataFrame(rows).sort_values(["model", "train_cases", "seed"]).reset_index(drop=True)
    table.to_csv(csv, index=False)
    from TACEPredictLib import RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE
    notice = RESEARCH_USE_NOTICE + " " + SYNTHETIC_DATA_NOTICE
    plot(table, truth_summary, os.path.join(args.out, "learning_curve.png"), notice)
    summary = {"cohort": os.path.abspath(manifest), "features": os.path.abspath(features), "cases": len(data.table),
               "held_out": len(held_out.table), "training_pool": int(len(pool)), "sizes": sizes, "seeds": seeds,
               "epochs": args.epochs, "device": args.device, "phantom_and_split_seed": args.seed,
               "ground_truth_held_out": truth_summary, "python": platform.python_version(), "cpus": os.cpu_count(),
               "seconds": time.monotonic() - start_all, "notice": notice}
    with open(os.path.join(args.out, "learning_curve.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1, default=float)
    print(f"wrote {csv}, learning_curve.png and learning_curve.json in {time.monotonic() - start_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
