"""The ``tacepredict`` command line (research use only)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE, InputError, __version__


class Progress:
    """A one-line progress bar with ETA on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.tty = self.stream.isatty()
        self.last_print = 0.0

    def __call__(self, done, total):
        now = time.monotonic()
        if not self.tty and done < total and now - self.last_print < 5.0:
            return
        self.last_print = now
        elapsed = now - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        width = 30
        bar = "#" * int(width * done / total) + "-" * (width - int(width * done / total))
        line = f"{self.label} [{bar}] {done}/{total} {elapsed:5.0f}s elapsed, ETA {eta:4.0f}s"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        if self.tty and done == total:
            self.stream.write("\n")
        self.stream.flush()


def _print_problems(problems):
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    return errors, warnings


def cmd_validate(args):
    from .data.manifest import validate_manifest
    problems = validate_manifest(args.manifest, check_images=not args.table_only,
                                 progress=None if args.quiet else Progress("validate"))
    errors, warnings = _print_problems(problems)
    print(f"{args.manifest}: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def cmd_phantom(args):
    from .data.demo_cohort import generate_cohort
    from .outputs import OutputLock, refuse_overwrite
    refuse_overwrite(os.path.join(args.out, "manifest.csv"), getattr(args, "overwrite", False), "demo cohort")
    start = time.monotonic()
    with OutputLock(args.out, "phantom"):
        path = generate_cohort(args.out, cases=args.cases, seed=args.seed, workers=args.workers,
                               progress=Progress("phantom"))
    print(f"wrote {args.cases} synthetic cases in {time.monotonic() - start:.1f} s: {path}")
    print(SYNTHETIC_DATA_NOTICE)
    return 0


def cmd_import(args):
    from .data.importers import import_hcc_tace_seg
    from .outputs import OutputLock, refuse_overwrite, refuse_own_input, write_file
    refuse_own_input(args.out, [args.clinical])
    refuse_overwrite(args.out, getattr(args, "overwrite", False), "manifest")
    images = getattr(args, "images", None)
    table, report = import_hcc_tace_seg(args.clinical, images=images,
                                        manifest_dir=os.path.dirname(os.path.abspath(args.out)),
                                        progress=Progress("index-dicom") if images else None)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with OutputLock(args.out, "import-hcc-tace-seg"):
        write_file(args.out, lambda path: table.to_csv(path, index=False))
    for line in report:
        print(line)
    print(f"wrote {len(table)} patients to {args.out}")
    return 0


def cmd_index_dicom(args):
    from .data.dicom import index_dicom
    start = time.monotonic()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    table = index_dicom(args.folder, relative_to=out_dir, progress=None if args.quiet else Progress("index-dicom"))
    os.makedirs(out_dir, exist_ok=True)
    table.to_csv(args.out, index=False)
    elapsed = time.monotonic() - start
    images = table[table["slices"].notna() & (table["modality"] == "CT")]
    phases = images["phase"].replace("", "unknown").value_counts()
    print(f"{len(table)} series ({table['patient_id'].nunique()} patients, {table['study_uid'].nunique()} studies) "
          f"indexed in {elapsed:.1f} s ({elapsed / max(len(table), 1):.2f} s per series) -> {args.out}")
    print("CT phases: " + ", ".join(f"{p} {n}" for p, n in phases.items()))
    for _, row in table[table["problems"].fillna("") != ""].iterrows():
        if row["problems"] not in ("secondary capture", "no image slices"):
            print(f"PROBLEM: {row['patient_id']} series {row['series_number']} {row['description']!r}: "
                  f"{row['problems']}")
    return 0


def cmd_demo(args):
    """The main job on the built-in demo cohort: grows as the models land."""
    from .outputs import refuse_overwrite
    refuse_overwrite(args.out, getattr(args, "overwrite", False), "demo run")
    os.makedirs(args.out, exist_ok=True)
    print(RESEARCH_USE_NOTICE)
    cohort = os.path.join(args.out, "cohort")
    status = cmd_phantom(argparse.Namespace(out=cohort, cases=args.cases, seed=args.seed, workers=args.workers,
                                            overwrite=True))
    manifest = os.path.join(cohort, "manifest.csv")
    status |= cmd_validate(argparse.Namespace(manifest=manifest, table_only=False, quiet=False))
    from .imaging.deep_features import imagenet_checkpoint_cached
    weights = "imagenet" if all(imagenet_checkpoint_cached(b) for b in DEMO_BACKBONES) else "random"
    features = os.path.join(args.out, "features")
    # Offline the backbones are untrained: averaged over a 224 x 224 centre patch (seed 000's sampler), of which
    # the tumour fills a small part, their features describe mostly the liver, so the demo samples inside it and
    # keeps absolute HU (the HU window), which a per-patch z-score removes (scripts/compare_deep_settings.py).
    sampling, normalisation = ("centre", "zscore") if weights == "imagenet" else ("inside", "window")
    # The full `ct` preset (seed 002's 1,223 features per phase) on the project's torch engine, which agrees with
    # pyradiomics to 1e-6 (docs/radiomics_engine.md) at 3x its speed, and needs no pyradiomics (Python 3.12).
    print(f"feature extraction: radiomics (ct preset, torch engine), DenseNet121 and ResNet50 ({weights} "
          f"weights, {sampling} patches, {normalisation} normalisation) of the arterial and portal phases, and the "
          "CNNs' lesion patches")
    status |= cmd_extract(argparse.Namespace(
        manifest=manifest, out=features, phases="ct_ap,ct_pvp", register="rigid",
        no_radiomics=False, radiomics_params="ct", radiomics_engine="torch",
        deep=",".join(DEMO_BACKBONES), weights=weights,
        sampling=sampling, normalisation=normalisation, device="auto", precision="auto", icc_cases=30,
        workers=args.workers, dask=None, overwrite=True,
        quiet=False))
    if args.models:
        status |= _demo_models(manifest, features, args.out, args.seed, weights, args.workers)
    if args.hcc_tace_seg:
        imported = os.path.join(args.out, "hcc_tace_seg_manifest.csv")
        status |= cmd_import(argparse.Namespace(clinical=args.hcc_tace_seg, out=imported, overwrite=True))
        status |= cmd_validate(argparse.Namespace(manifest=imported, table_only=False, quiet=True))
        if args.models:
            status |= _demo_survival(imported, None, os.path.join(args.out, "hcc_tace_seg_survival"), args.seed,
                                     clinical_only=True)
    print("demo " + ("finished" if status == 0 else "FAILED") + f"; outputs in {args.out}")
    return status


DEMO_BACKBONES = ("densenet121", "resnet50")
# The model stages' torch threads, fixed: Model_D's and the CNNs' training depends on the thread count (its
# predictions move by up to 0.01 between 1 and 2 threads), and one thread per stage lets two stages share two
# cores (Model_D trains only 1.2x faster on 2 threads than on 1). scripts/write_validation.py uses the same.
MODEL_STAGE_THREADS = 1


def _demo_models(manifest, features, out, seed, weights, workers):
    """The four model stages on the same split (run_model_stages: Model_D's five networks beside the rest)."""
    return run_model_stages([
        ("aggressive_pd", _demo_aggressive, (manifest, features, os.path.join(out, "aggressive_pd"), seed)),
        ("survival", _demo_survival, (manifest, features, os.path.join(out, "survival"), seed)),
        ("response", _demo_response, (manifest, features, os.path.join(out, "response"), seed)),
        ("mrecist", _demo_mrecist, (manifest, features, os.path.join(out, "mrecist"), seed, weights))], workers)


def run_model_stages(stages, workers):
    """Independent stages [(name, function, args)], each behind the error boundary with MODEL_STAGE_THREADS
    threads. With two or more cores they run in two processes, started in the order given (the longest first);
    each stage's output is printed when it is complete, in the order given except that the first is printed
    last (it ends last). A stage that fails is reported and the others finish. Returns 0, or 1 if one failed."""
    workers = min(2, workers or os.cpu_count() or 1)
    if workers <= 1:
        return max(_model_stage(func, stage_args, capture=False)[0] for _, func, stage_args in stages)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .imaging.extraction import end_with_parent
    context = multiprocessing.get_context("spawn")  # not fork: the extraction has started thread pools here
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=end_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_model_stage, func, stage_args) for _, func, stage_args in stages]
        status = 0
        for future in futures[1:] + futures[:1]:
            code, text = future.result()
            print(text, end="", flush=True)
            status = max(status, code)
    return status


def model_stage_threads():
    """A context in which torch, ITK and the BLAS libraries use MODEL_STAGE_THREADS threads (torch's and ITK's
    setting stays after it: the model stages run in processes of their own)."""
    from threadpoolctl import threadpool_limits

    from .imaging.extraction import set_threads
    set_threads(MODEL_STAGE_THREADS)
    return threadpool_limits(MODEL_STAGE_THREADS)


def _model_stage(func, args, capture=True):
    """Run one demo model stage behind the error boundary with MODEL_STAGE_THREADS threads: (0 or 1, and its
    printed text when ``capture``). A failure is its one-line message, as the command line prints it."""
    import contextlib
    import io

    from . import errors
    text = io.StringIO() if capture else sys.stdout
    with contextlib.redirect_stdout(text), model_stage_threads():
        code = errors.run(func, *args, stream=text if capture else None)
    return (1 if code else 0), (text.getvalue() if capture else "")


def _demo_survival(manifest, features, out, seed, clinical_only=False):
    """Train every survival model on 70% of the cohort and evaluate it on the held-out 30%."""
    from .stats.validation import SURVIVAL_RUNS, run_survival_validation
    runs = [r for r in SURVIVAL_RUNS if r[0] in ("clinical-cox", "nomogram-clinical")] if clinical_only \
        else SURVIVAL_RUNS
    print(f"survival models on {manifest} (70% train / 30% held-out test, seed {seed}):")
    table, summary = run_survival_validation(manifest, features, out, seed=seed, runs=runs)
    print(f"trained {len(table)} survival model(s) in {summary['train_seconds_all_models']:.1f} s; "
          f"comparison in {os.path.join(out, 'comparison.csv')}, bundles in {os.path.join(out, 'models')}")
    for key, value in summary.get("ground_truth", {}).items():
        print(f"  ground truth: {key} = {value:.3f}")
    return 0


def _demo_response(manifest, features, out, seed):
    """Seed 002's radiomics classifiers of objective response on the survival models' training split."""
    from .stats.validation import run_response_validation
    print(f"initial response (CR+PR vs SD+PD), radiomics classifiers on {manifest} (same split):")
    table, summary = run_response_validation(manifest, features, out, seed=seed)
    print(f"trained {len(table)} response model(s) in {summary['train_seconds_all_models']:.1f} s; best held-out "
          f"AUC {table['auc'].max():.3f} ({summary['best']}); comparison in {os.path.join(out, 'comparison.csv')}")
    return 0


def _demo_mrecist(manifest, features, out, seed, weights):
    """Seed 003's ResNet-50 (frozen, cached features; a trained softmax head) on the same split."""
    from .stats.validation import run_mrecist_validation
    print(f"mRECIST (CR / PR / SD / PD), ResNet-50 on patches inside the ROI ({weights} weights), same split:")
    run_mrecist_validation(manifest, features, out, seed=seed, weights=weights)
    return 0


def _demo_aggressive(manifest, features, out, seed):
    """Seed 004: the published Model_CS, and Model_D and Model_CSD trained on the same split."""
    from .stats.validation import run_aggressive_validation
    print("aggressive progression: Model_CS (published, untrained), Model_D and Model_CSD (trained), same split:")
    run_aggressive_validation(manifest, features, out, seed=seed)
    return 0


def cmd_extract(args):
    from .imaging.extraction import ExtractionSettings, extract_cohort, previous_settings_differ
    settings = ExtractionSettings(
        phases=tuple(args.phases.split(",")), register=args.register, radiomics=not args.no_radiomics,
        radiomics_params=args.radiomics_params, radiomics_engine=args.radiomics_engine,
        deep=tuple(b for b in args.deep.split(",") if b and b != "none"), weights=args.weights,
        sampling=args.sampling, normalisation=args.normalisation, device=args.device, precision=args.precision,
        icc_cases=args.icc_cases)
    differs = previous_settings_differ(args.out, args.manifest, settings)
    if differs and not getattr(args, "overwrite", False):
        raise InputError(f"{args.out} holds features extracted from {differs}", column="--out",
                         fix="add --overwrite to replace them (the per-case cache is kept), or choose another --out")
    print(RESEARCH_USE_NOTICE)
    start = time.monotonic()
    result = extract_cohort(args.manifest, args.out, settings, workers=args.workers, dask_address=args.dask,
                            progress=None if args.quiet else Progress("extract"))
    cases = len(result.computed) + len(result.cached)  # features may be empty (--no-radiomics --deep none)
    print(f"{cases} case(s) extracted ({len(result.computed)} computed, {len(result.cached)} from cache), "
          f"{len(result.failures)} failed, in {time.monotonic() - start:.1f} s -> {args.out}")
    for _, failure in result.failures.iterrows():
        print(f"FAILED: case {failure['case_id']}, column '{failure['column']}': {failure['error']}"
              + (f" -> {failure['fix']}" if failure["fix"] else ""))
    if result.icc is not None:
        kept = result.icc[result.icc["kept"]]
        print(f"reproducibility (ICC(2,1) >= 0.75): {len(kept)} of {len(result.icc)} features kept "
              f"(icc.csv)")
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    return 1 if len(result.failures) else 0


def _cohort(args):
    from .data.cohort import CohortData
    return CohortData(args.manifest, getattr(args, "features", None))


def _print_warnings(messages):
    for message in messages:
        print(f"WARNING: {message}", file=sys.stderr)


def cmd_split(args):
    from .stats.validation import split_manifest
    train, test = split_manifest(args.manifest, args.test_fraction, args.seed, overwrite=args.overwrite)
    print(f"wrote {train} and {test}")
    return 0


def _inputs(args):
    """The files a command reads (its output must not be one of them)."""
    paths = [getattr(args, "manifest", None)]
    for folder in (getattr(args, "features", None), getattr(args, "model", None)):
        if folder and os.path.isdir(folder):
            paths.append(folder)
            paths += [os.path.join(folder, name) for name in os.listdir(folder)]
    return [p for p in paths if p]


def _folder_output(args, what):
    """Checks before a command writes the folder ``--out`` as one unit, and the staging folder to write into."""
    from .outputs import refuse_overwrite, refuse_own_input, staging_folder
    refuse_own_input(args.out, _inputs(args), replaces_folder=True)
    refuse_overwrite(args.out, args.overwrite, what)
    return staging_folder(args.out)


def _replace_output(staging, out):
    from .outputs import replace_folder
    replace_folder(staging, out)


def cmd_train(args):
    import shutil

    from . import models
    from .outputs import OutputLock
    data = _cohort(args)
    options = {"variant": args.variant, "p_threshold": args.p_threshold, "family": args.family,
               "covariates": [c.strip() for c in args.covariates.split(",") if c.strip()] if args.covariates
               else None, "clinical_coding": args.clinical_coding, "epochs": args.epochs, "weights": args.weights,
               "device": args.device, "cutoff": args.cutoff}
    print(RESEARCH_USE_NOTICE)
    start = time.monotonic()
    with OutputLock(args.out, "train"):
        staging = _folder_output(args, "model bundle")
        try:
            _, info = models.train_bundle(args.task, args.model, data, staging, seed=args.seed, **options)
            _replace_output(staging, args.out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _print_warnings(info["settings"]["input_warnings"])
    print(f"trained {args.task} / {args.model} in {time.monotonic() - start:.1f} s -> {args.out}")
    print(info["provenance"])
    if data.synthetic:
        print(SYNTHETIC_DATA_NOTICE)
    return 0


def _model_for(args):
    """A bundle folder, or a built-in published model named with --task: ``(model, provenance, info)``, info
    None for a published score. A bundle's extraction settings are checked against --features."""
    from . import models
    from .models.registry import set_cutoff
    cutoff = getattr(args, "cutoff", None)
    model = None if os.path.isdir(args.model) else models.built_in(args.task, args.model)
    if model is not None:
        return set_cutoff(model, cutoff, when=f"at {args.command}"), model.provenance, None
    if not os.path.exists(args.model):
        raise InputError(f"model bundle folder not found: {args.model}", column="--model",
                         fix="give the folder `tacepredict train --out` wrote, or a published score with --task")
    model, info = models.load(args.model, public_key=getattr(args, "public_key", None))
    _check_features(model, info, args)
    return set_cutoff(model, cutoff, when=f"at {args.command}"), info["provenance"], info


def _check_features(model, info, args):
    """The bundle's recorded extraction settings against the features given (in what the model reads)."""
    from .imaging.extraction import check_features_match
    from .models.registry import model_spec
    needs = model_spec(model.task, model.kind).needs
    if getattr(model, "variant", None) == "clinical":  # the clinical nomogram reads no image
        needs = ()
    check_features_match(info.get("training", {}).get("feature_extraction"), getattr(args, "features", None),
                         needs, manifest=args.manifest)


def _check_finite(predictions):
    """A model must not turn a case into a silent 'low risk': non-finite scores are an error naming the case."""
    import numpy as np
    for column in ("risk_score", "score", "probability"):
        if column in predictions.columns:
            values = predictions[column].to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                case = predictions["case_id"].iloc[int(np.argmax(bad))]
                raise InputError(f"the model gives a non-finite {column} ({values[bad][0]}) for "
                                 f"{int(bad.sum())} case(s)", case, column,
                                 "check this case's inputs (features, clinical values); if they are fine, the "
                                 "bundle is damaged: re-train it")


def _print_integrity(info):
    if info is not None:
        print(f"bundle: {info.get('integrity', 'unsigned')}")


def _evaluate_mrecist_classes(model, data, staging, args):
    """The four-class report of an mRECIST model (the code of `tacepredict compare`): per level (patch,
    patient) ``confusion_<level>.csv`` / ``.png``, ``roc_classes_<level>.png`` and a row of ``classes.csv``
    (accuracy, each class's AUC with DeLong and bootstrap CIs, macro AUC). Returns the summary lines."""
    import pandas as pd

    from .stats.compare import _labelled, mrecist_levels
    from .stats.reports import report_notice
    labelled, truth = _labelled("mrecist", data)
    rows, _ = mrecist_levels(model.kind, model, labelled, truth, staging, report_notice(model, labelled),
                             n_bootstrap=args.bootstrap, seed=args.seed)
    pd.DataFrame(rows).to_csv(os.path.join(staging, "classes.csv"), index=False)
    return "\n".join(f"{r['level']} level: accuracy {r['accuracy']:.3f}, " + ", ".join(
        f"AUC {c} {r[f'auc_{c}']:.3f} ({r[f'auc_{c}_lower']:.3f}-{r[f'auc_{c}_upper']:.3f})"
        for c in ("CR", "PR", "SD", "PD")) for r in rows)


def cmd_evaluate(args):
    import shutil

    from .outputs import OutputLock
    from .stats.reports import evaluate_binary, evaluate_survival
    model, provenance, info = _model_for(args)
    print(RESEARCH_USE_NOTICE)
    print(provenance)
    _print_integrity(info)
    from .models.registry import BINARY_TASKS
    with OutputLock(args.out, "evaluate"):
        staging = _folder_output(args, "report")
        try:
            if model.task in BINARY_TASKS:
                data, label = _cohort(args), "aggressive_pd"
                if model.task in ("response", "mrecist"):  # mrecist: P(CR) + P(PR) against the objective response
                    from .data.outcomes import OBJECTIVE_RESPONSE, objective_response
                    data = data.subset(data.table.assign(**{OBJECTIVE_RESPONSE: objective_response(data.table)}))
                    label = OBJECTIVE_RESPONSE
                result, _ = evaluate_binary(model, data, label, staging, n_bootstrap=args.bootstrap, seed=args.seed)
                text = (f"AUC {result['auc']:.3f} (DeLong 95% CI {result['auc_delong_lower']:.3f}-"
                        f"{result['auc_delong_upper']:.3f}); " + (
                            f"at the cut-off {result['cutoff']:g}: sensitivity {result['sensitivity']:.3f}, "
                            f"specificity {result['specificity']:.3f}" if model.cutoff is not None else
                            f"no cut-off ({model.cutoff_rule}); the Youden point of these cases, "
                            f"{result['youden_cutoff_these_cases']:.3f}, gives sensitivity "
                            f"{result['youden_sensitivity_these_cases']:.3f} and specificity "
                            f"{result['youden_specificity_these_cases']:.3f} (optimistic: chosen on them)")
                        + f"; report in {args.out}")
                if model.task == "mrecist":  # paper 003's four classes: confusion matrices, per-class ROC with CIs
                    text = "P(objective response): " + text + "\n" + _evaluate_mrecist_classes(model, data, staging,
                                                                                              args)
            else:
                result, _ = evaluate_survival(model, _cohort(args), staging, n_bootstrap=args.bootstrap,
                                              seed=args.seed)
                text = (f"C-index {result['c_index']:.3f} (95% CI {result['c_index_lower']:.3f}-"
                        f"{result['c_index_upper']:.3f}), " + ", ".join(f"AUC {y}y {result[f'auc_{y}y']:.3f}"
                                                                        for y in (1, 2, 3))
                        + f"; report in {args.out}")
            _replace_output(staging, args.out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    print(text)
    scores = os.path.join(args.out, "clinical_scores.csv")
    if os.path.isfile(scores):  # the built-in clinical scores the manifest's columns allow, on the same cases
        import pandas as pd
        for row in pd.read_csv(scores).itertuples():
            print(f"  comparator {row.title}: {row.cases} cases graded, C-index {row.c_index:.3f} "
                  f"(model on the same cases {row.model_c_index_same_cases:.3f}), log-rank p {row.logrank_p:.3g}"
                  if row.c_index == row.c_index else f"  comparator {row.title}: {row.note}")
    return 0


def cmd_compare(args):
    from .data.cohort import CohortData
    from .stats.compare import compare_models, resolve_models
    models = resolve_models(args.models)
    data = _cohort(args)
    train = CohortData(args.train_manifest, args.features) if args.train_manifest else None
    references = args.reference.split(",") if args.reference else None
    subgroups = args.subgroups.split(",") if args.subgroups else ()
    print(RESEARCH_USE_NOTICE)
    for name, model in models.items():
        print(f"{name}: {model.provenance}")
    table, summary = compare_models(models, data, args.out, references=references, subgroups=subgroups,
                                    train_data=train, n_bootstrap=args.bootstrap, seed=args.seed)
    print(f"compared {len(models)} {summary['task']} model(s) on {summary['cases']} case(s); reference: "
          f"{', '.join(summary['references'])}; tables and figures in {args.out}")
    cohorts = summary.get("training_vs_compared")
    if cohorts:  # paper 000's Figure 2A: the two cohorts' overall survival
        medians = ", ".join(f"{name} {cohorts[name]['median_days']:.0f}" for name in ("training", "compared"))
        print(f"overall survival, training vs compared cohort: median days {medians}; log-rank p "
              f"{cohorts['logrank_p']:.3g} (km_training_vs_compared.png)")
    if data.synthetic:
        print(SYNTHETIC_DATA_NOTICE)
    return 0


def cmd_predict(args):
    from .outputs import OutputLock, refuse_overwrite, refuse_own_input, write_file
    refuse_own_input(args.out, _inputs(args))
    refuse_overwrite(args.out, args.overwrite, "predictions file")
    model, provenance, info = _model_for(args)
    predictions = model.predict(_cohort(args))
    _check_finite(predictions)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with OutputLock(args.out, "predict"):
        write_file(args.out, lambda path: predictions.to_csv(path, index=False))
    print(RESEARCH_USE_NOTICE)
    print(provenance)
    _print_integrity(info)
    print(f"wrote {len(predictions)} prediction(s) to {args.out}")
    return 0


def cmd_keygen(args):
    from .models.signing import generate_keys
    private, public = generate_keys(args.out, passphrase=os.environ.get("TACEPREDICT_KEY_PASSPHRASE") or None)
    print(f"wrote the private key {private} (keep it secret) and the public key {public} (give it to users)")
    return 0


def cmd_sign(args):
    from .models.signing import sign_bundle
    path = sign_bundle(args.model, args.private_key,
                       passphrase=os.environ.get("TACEPREDICT_KEY_PASSPHRASE") or None)
    print(f"signed {args.model}: {path}; users check it with --public-key and your public key")
    return 0


def _models_help(trained):
    """The declared model kinds by task, with their titles (read from the registry, so the help never drifts);
    the trainable ones include the published scores ``train`` can refit."""
    from .models.registry import models_of
    by_task = {}
    for spec in models_of() if trained else models_of(trained=False):
        if trained and spec.published and not spec.refit:
            continue
        by_task.setdefault(spec.task, []).append(f"{spec.kind} = {spec.title}")
    return "; ".join(f"{task}: {', '.join(kinds)}" for task, kinds in by_task.items())


def _published_help():
    from .models.registry import models_of
    return ", ".join(f"{m.task}:{m.kind}" for m in models_of(trained=False))


def _demo_model_io_arguments(parser, cases):
    """What `phantom` and `demo` both take: the synthetic cohort's folder, size, seed and worker processes."""
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--cases", type=int, default=cases)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def cmd_report(args):
    from .stats.model_report import write_report
    print(RESEARCH_USE_NOTICE)
    command = " ".join(["tacepredict report", "--model", args.model]
                       + (["--compare", *args.compare] if args.compare else []) + ["--manifest", args.manifest]
                       + (["--features", args.features] if args.features else []) + ["--out", args.out])
    result = write_report(args.model, args.manifest, args.out, compare=args.compare, features=args.features,
                          task=args.task, n_bootstrap=args.bootstrap, seed=args.seed, pdf=not args.no_pdf,
                          command=command)
    print(f"wrote {result['html']} ({len(result['pages'])} pages); PDF {result['pdf_status']}")
    return 0


def _model_io_arguments(p, manifest_help, out_help):
    """The cohort a model command reads (manifest and, for image models, its extraction folder) and what it
    writes."""
    p.add_argument("--manifest", required=True, help=manifest_help)
    p.add_argument("--features", default=None, help="folder written by `tacepredict extract` (image models)")
    p.add_argument("--out", required=True, help=out_help)


def build_parser():
    from .models.registry import TASKS
    parser = argparse.ArgumentParser(
        prog="tacepredict",
        description="Outcome prediction after TACE for hepatocellular carcinoma. " + RESEARCH_USE_NOTICE)
    parser.add_argument("--version", action="version", version=f"tacepredict {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also TACEPREDICT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a cohort manifest and every file it names")
    p.add_argument("--manifest", required=True, help="cohort manifest CSV")
    p.add_argument("--table-only", action="store_true", help="check the table without loading images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("phantom", help="write the synthetic multi-phase CT demo cohort")
    _demo_model_io_arguments(p, cases=40)
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("import-hcc-tace-seg", help="map TCIA HCC-TACE-Seg's clinical table to a manifest")
    p.add_argument("--clinical", required=True, help="clinical.csv ('data table' sheet)")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.add_argument("--images", default=None,
                   help="the collection's DICOM download: adds each patient's arterial / portal / delayed series, "
                        "DICOM SEG and tumour segment (docs/dicom.md)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("index-dicom", help="list every DICOM series under a folder, with its guessed phase")
    p.add_argument("folder", help="DICOM folder (a download, a patient, a study)")
    p.add_argument("--out", required=True, help="CSV to write (one row per series; 'reference' is what a "
                                                "manifest's CT column takes, relative to the CSV's folder)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index_dicom)

    p = sub.add_parser("extract", help="radiomics and deep features of every case into one table")
    p.add_argument("--manifest", required=True, help="cohort manifest CSV")
    p.add_argument("--out", required=True, help="output folder (also holds the per-case cache)")
    p.add_argument("--phases", default="ct_ap,ct_pvp", help="comma-separated phase columns (default: ct_ap,ct_pvp)")
    p.add_argument("--register", choices=["none", "rigid", "affine"], default="rigid",
                   help="align the other phases to the reference phase (default: rigid)")
    p.add_argument("--no-radiomics", action="store_true", help="deep features only")
    p.add_argument("--radiomics-params", default=None,
                   help="a preset, ct (default: seed 002's original + wavelet + LoG, 1,223 features per phase) or "
                        "ct-fast (original + LoG 2 and 4 mm at 2 mm voxels, 293), or your pyradiomics YAML")
    p.add_argument("--radiomics-engine", default="torch", choices=["torch", "pyradiomics"],
                   help="torch (default): TACEPredict's own engine, pyradiomics' features on the CPU or a GPU "
                        "(--device), on any Python; pyradiomics: the reference, where it is installed")
    p.add_argument("--deep", default="densenet121",
                   help="comma-separated backbones: densenet121, resnet50, resnet101, or none")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (downloaded once into the torch hub cache), random (warns), or a checkpoint file")
    p.add_argument("--sampling", choices=["centre", "inside"], default="centre",
                   help="centre: 224x224 patch on the largest slice; inside: patches inside the ROI")
    p.add_argument("--normalisation", choices=["zscore", "window"], default="zscore",
                   help="patch intensities: zscore per patch (seed 000), or the abdominal HU window (W400 L50)")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--icc-cases", type=int, default=30,
                   help="cases whose other delineations (or mask perturbations) feed the ICC filter")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="run on an existing Dask scheduler instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("demo", help="the main job on the built-in demo cohort")
    _demo_model_io_arguments(p, cases=200)
    p.add_argument("--hcc-tace-seg", default=None,
                   help="also import this HCC-TACE-Seg clinical.csv, validate it and train the clinical-only models")
    p.add_argument("--no-models", dest="models", action="store_false", help="stop after feature extraction")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("split", help="stratified train / test manifests next to the manifest")
    p.add_argument("--manifest", required=True)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_split)
    overwrites = {"split": "replace <name>_train.csv and <name>_test.csv when they hold another split"}

    p = sub.add_parser("train", help="train a model into a bundle folder")
    p.add_argument("--task", required=True, choices=list(TASKS))
    p.add_argument("--model", required=True, help=_models_help(trained=True))
    _model_io_arguments(p, "training manifest CSV", "model bundle folder to write")
    p.add_argument("--variant", default=None,
                   help="nomogram: integrated (default) or clinical; dlop: combined (default), ct-only, ct-cox; "
                        "csd: refit (default: Model_CS derived on this cohort) or published-cs")
    p.add_argument("--family", "--backbone", dest="family", default=None,
                   help="feature family (default: signature/nomogram densenet121, dlop resnet101 as published, "
                        "lasso-cox radiomics); dlop --backbone resnet50 is the named CPU-time departure")
    p.add_argument("--p-threshold", type=float, default=None,
                   help="univariate Cox screen, or Model_CS's univariate logistic screen (default 0.05)")
    p.add_argument("--covariates", default=None,
                   help="comma-separated candidate clinical columns, extra manifest columns included "
                        "(default: the nomogram with paper coding, paper 000's candidate factors; otherwise the known "
                        "pre-treatment columns the manifest has)")
    p.add_argument("--clinical-coding", default=None, choices=["paper", "continuous"],
                   help="nomogram: paper (default) codes age, AFP, ALT, AST, tumour size, tumour number and ECOG as "
                        "paper 000's dichotomies (age > 55, AFP > 400 ng/mL, ALT > 50 U/L, AST > 40 U/L, size > "
                        "5 cm, >= 3 tumours, ECOG >= 1) over its candidate factors; continuous enters numbers as "
                        "numbers (log10 AFP) over every known pre-treatment column")
    p.add_argument("--epochs", type=int, default=None,
                   help="image networks: training epochs (the most, for those that stop early)")
    p.add_argument("--weights", default=None,
                   help="mrecist: the ResNet-50 backbone's weights, imagenet (default, the paper's) or random "
                        "(the untrained fixed-seed network of the offline demo)")
    p.add_argument("--device", default=None, help="image networks: auto (default), cpu, cuda or mps")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)
    cutoff_help = ("probability models: the risk-group cut-off, a probability in (0, 1), youden (a fitted model's "
                   "default: the Youden point of its out-of-fold training probabilities) or published (Model_CSD "
                   "only: the paper's 0.28)")
    p.add_argument("--cutoff", default=None, help=cutoff_help)

    p = sub.add_parser("evaluate", help="metrics and figures of a model on a labelled manifest")
    p.add_argument("--model", required=True, help="model bundle folder, or a published score with --task: "
                   + _models_help(trained=False))
    p.add_argument("--task", default=None, choices=list(TASKS), help="with a published score: its task")
    _model_io_arguments(p, "labelled manifest CSV to evaluate on", "report folder")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for confidence intervals")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="every model of one task on the same labelled cohort, with paired statistics")
    p.add_argument("--models", required=True, nargs="+", metavar="MODEL",
                   help="model bundle folders, or published scores as task:kind (" + _published_help() + ")")
    _model_io_arguments(p, "the cohort to compare them on (e.g. an external centre)", "report folder")
    p.add_argument("--reference", default=None,
                   help="comma-separated model names the others are tested against (default: the first model); "
                        "a bundle's name is its folder name, a published score's its kind")
    p.add_argument("--subgroups", default=None, help="comma-separated manifest columns, e.g. bclc,child_pugh: "
                   "each model's AUC / C-index per level, and the test of equal performance across levels")
    p.add_argument("--train-manifest", default=None,
                   help="survival: the training cohort, whose censoring distribution weighs the time-dependent "
                        "AUC and Brier scores (default: the compared cohort's)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs and paired tests")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("predict", help="predictions of a model for every case of a manifest")
    p.add_argument("--model", required=True, help="model bundle folder, or a published score with --task "
                   "(no bundle needed): " + _models_help(trained=False))
    p.add_argument("--task", default=None, choices=list(TASKS), help="with a published score: its task")
    _model_io_arguments(p, "manifest CSV of the cases to predict", "predictions CSV to write")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="one self-contained HTML page (and its PDF) of a model's evaluation, with the "
                                      "built-in published scores as comparators and the TRIPOD+AI checklist")
    p.add_argument("--model", required=True, help="model bundle folder, or a built-in (hap, albi, clinical-semantic, ...)")
    p.add_argument("--compare", nargs="+", default=[], help="other bundle folders or built-ins to compare with")
    p.add_argument("--task", default=None, help="with a built-in model: its task")
    _model_io_arguments(p, "labelled manifest to evaluate on", "report folder (report.html, report.pdf, report.json)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for confidence intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-pdf", action="store_true", help="write the HTML only (no Chromium needed)")
    p.set_defaults(func=cmd_report)

    for name in ("evaluate", "predict"):
        sub.choices[name].add_argument("--public-key", default=None, metavar="PEM",
                                       help="require the bundle's signature to verify with this Ed25519 public key")
        sub.choices[name].add_argument("--cutoff", default=None, help="probability models: use this cut-off "
                                       "instead of the model's own, a probability in (0, 1) or published (Model_CSD's "
                                       "0.28); the published Model_CS has none unless given")
    p = sub.add_parser("keygen", help="make an Ed25519 key pair for signing model bundles")
    p.add_argument("--out", required=True, help="path prefix: writes PREFIX.pem (private) and PREFIX.pub.pem "
                                                "(public); TACEPREDICT_KEY_PASSPHRASE encrypts the private key")
    p.set_defaults(func=cmd_keygen)
    p = sub.add_parser("sign-bundle", help="sign a model bundle (its checksums.sha256) with your private key")
    p.add_argument("--model", required=True, help="model bundle folder")
    p.add_argument("--private-key", required=True, help="PEM private key from `tacepredict keygen`")
    p.set_defaults(func=cmd_sign)

    overwrites.update({name: "replace a previous result in --out" for name in
                       ("phantom", "import-hcc-tace-seg", "extract", "demo", "train", "evaluate", "predict")})
    overwrites["extract"] = ("replace features in --out that come from another manifest or other settings (the "
                             "per-case cache is kept)")
    for name, text in overwrites.items():
        sub.choices[name].add_argument("--overwrite", action="store_true", help=text)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")
    return parser


def main(argv=None):
    """Run one command behind the error boundary (``errors.run``): every failure is one message on stderr
    naming the case, the file or column and the fix, with a non-zero exit code (2 input, 3 environment, 4
    unexpected, 130 interrupted); the traceback only with --debug."""
    from . import errors
    args = build_parser().parse_args(argv)
    return errors.run(args.func, args, debug=getattr(args, "debug", False))


if __name__ == "__main__":
    sys.exit(main())
