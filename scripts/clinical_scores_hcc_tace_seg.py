"""The built-in clinical scores on the real HCC-TACE-Seg clinical table, next to the clinical Cox model.

    .venv/bin/python scripts/clinical_scores_hcc_tace_seg.py [--out demo_run/validation/clinical_scores]
                                                             [--markdown docs/measurements/clinical_scores_hcc_tace_seg.md]

``hcc_scores_section(csv, out_dir)`` returns the markdown section (scripts/write_validation.py can call it) and
writes the Kaplan-Meier figures by grade with numbers at risk (``km_<score>.png``) and ``scores.csv`` into
``out_dir``. What it measures, on overall survival:

- every score the table's columns allow (it has no albumin or bilirubin, so no ALBI, HAP or mHAP-II), on the
  cases it grades, and on the 30 % held-out split of docs/validation.md (seed 0);
- the clinical Cox model trained on the 70 % split (as in docs/validation.md) and, for a comparison on all
  graded cases, its 5-fold cross-validated out-of-fold risk over the whole table;
- the stages the source table already records (BCLC, CLIP, Okuda), as published comparators it carries.

Source facts used beyond the importer's manifest: ``multinodular`` = 1 means two or more tumours (the count is
not given), so a score's grade is kept where every count from 2 to 100 gives the same grade; the BCLC
performance-status group 0 / 1-2 / 3-4 bounds ECOG the same way.
"""

import argparse
import os
import sys
import tempfile
import warnings

import numpy as np
import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from TACEPredictLib import RESEARCH_USE_NOTICE, models  # noqa: E402
from TACEPredictLib.stats import metrics as M  # noqa: E402
from TACEPredictLib.models.clinical_scores import SCORES  # noqa: E402
from TACEPredictLib.data.cohort import CohortData  # noqa: E402
from TACEPredictLib import InputWarning  # noqa: E402
from TACEPredictLib.data.outcomes import survival_outcome  # noqa: E402
from TACEPredictLib.data.importers import import_hcc_tace_seg  # noqa: E402
from TACEPredictLib.stats.model_report import figure_png  # noqa: E402
from TACEPredictLib.stats.reports import kaplan_meier_figure  # noqa: E402
from TACEPredictLib.stats.validation import split_manifest  # noqa: E402

HCC = os.path.join(os.path.dirname(REPO), "shared", "data", "hcc_tace_seg", "clinical.csv")
ECOG_RANGE = {"0": (0, 0), "1-2": (1, 2), "3-4": (3, 4)}


def fmt(value, digits=3):
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def bounded_grades(kind, table):
    """Grades of ``kind`` using the source's bounds: multinodular -> 2..100 tumours, PS group -> ECOG range.
    A grade is kept where the lowest and the highest bound agree (the scores only grow with each input)."""
    score = SCORES[kind]()
    low, high = table.copy(), table.copy()
    multinodular = pd.to_numeric(table["multinodular"], errors="coerce") if "multinodular" in table.columns \
        else pd.Series(0, index=table.index)
    multi = (multinodular == 1) & table["tumor_number"].isna()
    low.loc[multi, "tumor_number"], high.loc[multi, "tumor_number"] = 2, 100
    if "ps_group" in table.columns and "ecog" not in table.columns:
        low["ecog"] = table["ps_group"].map(lambda g: ECOG_RANGE.get(g, (np.nan,))[0])
        high["ecog"] = table["ps_group"].map(lambda g: ECOG_RANGE.get(g, (np.nan, np.nan))[-1])
    a, b = score.evaluate(low), score.evaluate(high)
    same = a["grade"].astype(object).eq(b["grade"].astype(object)) & a["grade"].notna()
    grades = a["grade"].where(same)
    return grades, a["risk_score"].where(same)


def recorded_stages(table):
    """The stages the source table carries: name -> (ordered labels, per-case label)."""
    out = {"BCLC stage (recorded)": (["0", "A", "B", "C", "D"], table["bclc"])}
    if "clip_score" in table.columns:
        clip = table["clip_score"].astype(str).str.extract(r"(\d)")[0]
        out["CLIP score (recorded)"] = ([str(i) for i in range(7)], clip)
    if "okuda" in table.columns:
        okuda = table["okuda"].astype(str).str.replace("Stage ", "", regex=False).str.strip()
        out["Okuda stage (recorded)"] = (["I", "II", "III"], okuda)
    return out


def _clinical_cox_out_of_fold(data, folds=5, seed=0):
    """Each case's clinical Cox risk from the model trained on the other folds (stratified by death)."""
    table = data.table
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(table), dtype=int)
    for value in (0, 1):
        idx = np.flatnonzero(table["os_event"].to_numpy() == value)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % folds
    risk = np.full(len(table), np.nan)
    for k in range(folds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)
            model, _ = models.train("survival", "clinical-cox", data.subset(table[fold != k]), seed=seed)
            risk[fold == k] = model.risk_score(data.subset(table[fold == k]))
    return risk


def hcc_scores_section(csv_path=HCC, out_dir=None, seed=0, n_bootstrap=1000, log=print):
    """The markdown section (and, with ``out_dir``, its figures and ``scores.csv``)."""
    table, _ = import_hcc_tace_seg(csv_path)
    work = tempfile.mkdtemp(prefix="hcc_scores_")
    manifest = os.path.join(work, "hcc_tace_seg_manifest.csv")
    table.to_csv(manifest, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        data = CohortData(manifest)
        train_path, test_path = split_manifest(manifest, 0.3, seed)
        train, test = CohortData(train_path), CohortData(test_path)
        cox, _ = models.train("survival", "clinical-cox", train, seed=seed)
        test_risk = cox.risk_score(test)
        oof_risk = _clinical_cox_out_of_fold(data, seed=seed)
    table = data.table
    time, event = survival_outcome(table, "os")
    test_ids = set(test.case_ids)
    in_test = table["case_id"].isin(test_ids).to_numpy()
    cox_test = pd.Series(test_risk, index=test.case_ids).reindex(table["case_id"]).to_numpy()

    candidates = {}
    for kind in SCORES:
        exact = SCORES[kind]().evaluate(table)
        if exact["grade"].notna().any():
            candidates[f"{SCORES[kind].title}"] = (list(SCORES[kind].grades), exact["grade"].astype(object),
                                                    exact["risk_score"].to_numpy())
        grades, risk = bounded_grades(kind, table)
        if grades.notna().sum() > exact["grade"].notna().sum():
            candidates[f"{SCORES[kind].title}, with the source's bounds"] = (
                list(SCORES[kind].grades), grades.astype(object), risk.to_numpy())
    for name, (labels, values) in recorded_stages(table).items():
        values = values.where(values.isin(labels))
        rank = values.map({v: i + 1 for i, v in enumerate(labels)}).to_numpy(dtype=float)
        candidates[name] = (labels, values, rank)
    not_allowed = [SCORES[k].title for k in SCORES if not any(n.startswith(SCORES[k].title) for n in candidates)]

    rows, figures, per_case = [], {}, {"case_id": table["case_id"]}
    for name, (labels, grades, risk) in candidates.items():
        graded = np.isfinite(risk)
        row = {"score": name, "cases": int(graded.sum()), "events": int(event[graded].sum())}
        row.update({f"n_{g}": int((grades[graded] == g).sum()) for g in labels})
        per_case[name] = grades.to_numpy()
        present = [g for g in labels if (grades[graded] == g).any()]
        if graded.sum() >= 10 and len(present) >= 2:
            c, lo, hi = M.concordance_index_ci(time[graded], risk[graded], event[graded], n_bootstrap, seed)
            cc, clo, chi = M.concordance_index_ci(time[graded], oof_risk[graded], event[graded], n_bootstrap, seed)
            paired = M.compare_concordance(time[graded], risk[graded], oof_risk[graded], event[graded],
                                           n_bootstrap, seed)
            test_rank = M.logrank_test(time[graded], event[graded], grades[graded].to_numpy())
            row.update(c_index=c, lower=lo, upper=hi, cox_c=cc, cox_lower=clo, cox_upper=chi,
                       p_vs_cox=paired["p"], logrank_p=test_rank["p"], logrank_df=test_rank["df"])
            held = graded & in_test
            if held.sum() >= 10 and len(set(grades[held])) >= 2 and event[held].sum() > 0:
                row.update(c_test=M.concordance_index(time[held], risk[held], event[held]), n_test=int(held.sum()),
                           cox_c_test=M.concordance_index(time[held], cox_test[held], event[held]))
            fig, _ = kaplan_meier_figure(time[graded], event[graded], grades[graded].to_numpy(),
                                         f"HCC-TACE-Seg: {name}", RESEARCH_USE_NOTICE, p=test_rank["p"],
                                         group_suffix="", order=labels)
            figures[name] = figure_png(fig)
        rows.append(row)
        log(f"  {name}: {row['cases']} graded, C-index {fmt(row.get('c_index', np.nan))}")
    result = pd.DataFrame(rows)
    cox_all = M.concordance_index_ci(time, oof_risk, event, n_bootstrap, seed)
    cox_held = M.concordance_index_ci(time[in_test], cox_test[in_test], event[in_test], n_bootstrap, seed)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        pd.DataFrame(per_case).to_csv(os.path.join(out_dir, "scores.csv"), index=False)
        result.to_csv(os.path.join(out_dir, "comparison.csv"), index=False)
        for name, png in figures.items():
            slug = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
            with open(os.path.join(out_dir, f"km_{slug}.png"), "wb") as handle:
                handle.write(png)

    lines = [
        f"Real patients: the 105-patient HCC-TACE-Seg clinical table, overall survival ({int(event.sum())} deaths). "
        f"The table has no albumin or bilirubin, so {', '.join(not_allowed)} cannot be computed; the tumour "
        "count is given only as uni- / multinodular and the size for about half of the patients. \"With the "
        "source's bounds\": a multinodular patient has 2 to 100 tumours and the BCLC performance-status group "
        "bounds ECOG; the grade is kept where every value in those ranges gives the same grade.",
        "",
        "C-index: Harrell's, of the grade (ties count one half), 95% CI from "
        f"{n_bootstrap} bootstrap resamples. Clinical Cox (the `clinical-cox` model: univariate then "
        "multivariable Cox, p < 0.05): its 5-fold cross-validated out-of-fold risk on the same cases (\"p vs "
        "Cox\": paired bootstrap test); and, on the 30 % held-out split of the clinical-model section "
        f"(seed {seed}), trained on the other 70 %. On all {len(table)} cases the cross-validated clinical Cox "
        f"reaches {cox_all[0]:.3f} ({cox_all[1]:.3f}-{cox_all[2]:.3f}); on the {int(in_test.sum())} held-out "
        f"cases the split-trained one {cox_held[0]:.3f} ({cox_held[1]:.3f}-{cox_held[2]:.3f}).",
        "",
        "| score | cases graded (deaths) | cases per grade | C-index (95% CI) | clinical Cox, same cases (95% CI) "
        "| p vs Cox | log-rank p (df) | held-out: score / clinical Cox (n) |",
        "|---|---|---|---|---|---|---|---|"]
    for r in result.to_dict(orient="records"):
        labels = candidates[r["score"]][0]
        counts = ", ".join(f"{g}: {int(r[f'n_{g}'])}" for g in labels if r.get(f"n_{g}", 0))
        if "c_index" not in r or not np.isfinite(r.get("c_index", np.nan)):
            lines.append(f"| {r['score']} | {r['cases']} ({r['events']}) | {counts or '-'} | too few graded cases "
                         "or a single grade | - | - | - | - |")
            continue
        held = (f"{fmt(r.get('c_test', np.nan))} / {fmt(r.get('cox_c_test', np.nan))} ({int(r['n_test'])})"
                if np.isfinite(r.get("c_test", np.nan)) else "-")
        lines.append(f"| {r['score']} | {r['cases']} ({r['events']}) | {counts} | {r['c_index']:.3f} "
                     f"({r['lower']:.3f}-{r['upper']:.3f}) | {r['cox_c']:.3f} ({r['cox_lower']:.3f}-"
                     f"{r['cox_upper']:.3f}) | {r['p_vs_cox']:.3f} | {r['logrank_p']:.3g} ({int(r['logrank_df'])}) "
                     f"| {held} |")
    if out_dir:
        shown = os.path.relpath(out_dir, REPO) if os.path.abspath(out_dir).startswith(REPO + os.sep) else out_dir
        lines += ["", f"Kaplan-Meier by grade with numbers at risk: `{shown}/km_*.png`; "
                      "every case's grades: `scores.csv` there."]
    return "\n".join(lines), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinical", default=HCC)
    parser.add_argument("--out", default=os.path.join(REPO, "demo_run", "validation", "clinical_scores"))
    parser.add_argument("--markdown", default=os.path.join(REPO, "docs", "measurements",
                                                           "clinical_scores_hcc_tace_seg.md"))
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    text, _ = hcc_scores_section(args.clinical, args.out, args.seed, args.bootstrap)
    header = ("# Clinical scores on HCC-TACE-Seg\n\nWritten by `scripts/clinical_scores_hcc_tace_seg.py`. "
              "**Research use only.**\n\n")
    with open(args.markdown, "w", encoding="utf-8") as handle:
        handle.write(header + text + "\n")
    print(text)


if __name__ == "__main__":
    main()
