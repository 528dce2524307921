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
    from .manifest import validate_manifest
    problems = validate_manifest(args.manifest, check_images=not args.table_only,
                                 progress=None if args.quiet else Progress("validate"))
    errors, warnings = _print_problems(problems)
    print(f"{args.manifest}: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def cmd_phantom(args):
    from .phantom import generate_cohort
    start = time.monotonic()
    path = generate_cohort(args.out, cases=args.cases, seed=args.seed, workers=args.workers,
                           progress=Progress("phantom"))
    print(f"wrote {args.cases} synthetic cases in {time.monotonic() - start:.1f} s: {path}")
    print(SYNTHETIC_DATA_NOTICE)
    return 0


def cmd_import(args):
    from .importers import import_hcc_tace_seg
    table, report = import_hcc_tace_seg(args.clinical)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    table.to_csv(args.out, index=False)
    for line in report:
        print(line)
    print(f"wrote {len(table)} patients to {args.out}")
    return 0


def cmd_demo(args):
    """The main job on the built-in demo cohort: grows as the models land."""
    os.makedirs(args.out, exist_ok=True)
    print(RESEARCH_USE_NOTICE)
    cohort = os.path.join(args.out, "cohort")
    status = cmd_phantom(argparse.Namespace(out=cohort, cases=args.cases, seed=args.seed, workers=args.workers))
    manifest = os.path.join(cohort, "manifest.csv")
    status |= cmd_validate(argparse.Namespace(manifest=manifest, table_only=False, quiet=False))
    from .deep import imagenet_checkpoint_cached
    weights = "imagenet" if imagenet_checkpoint_cached("densenet121") else "random"
    print(f"feature extraction: radiomics + DenseNet121 ({weights} weights) of the arterial and portal phases")
    status |= cmd_extract(argparse.Namespace(
        manifest=manifest, out=os.path.join(args.out, "features"), phases="ct_ap,ct_pvp", register="rigid",
        no_radiomics=False, radiomics_params=None, deep="densenet121", weights=weights, sampling="centre",
        device="auto", precision="auto", icc_cases=30, workers=args.workers, dask=None, quiet=False))
    if args.hcc_tace_seg:
        imported = os.path.join(args.out, "hcc_tace_seg_manifest.csv")
        status |= cmd_import(argparse.Namespace(clinical=args.hcc_tace_seg, out=imported))
        status |= cmd_validate(argparse.Namespace(manifest=imported, table_only=False, quiet=True))
    print("demo " + ("finished" if status == 0 else "FAILED") + f"; outputs in {args.out}")
    return status


def cmd_extract(args):
    from .extract import ExtractionSettings, extract_cohort
    settings = ExtractionSettings(
        phases=tuple(args.phases.split(",")), register=args.register, radiomics=not args.no_radiomics,
        radiomics_params=args.radiomics_params,
        deep=tuple(b for b in args.deep.split(",") if b and b != "none"), weights=args.weights,
        sampling=args.sampling, device=args.device, precision=args.precision, icc_cases=args.icc_cases)
    print(RESEARCH_USE_NOTICE)
    start = time.monotonic()
    result = extract_cohort(args.manifest, args.out, settings, workers=args.workers, dask_address=args.dask,
                            progress=None if args.quiet else Progress("extract"))
    cases = result.features["case_id"].nunique()
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tacepredict",
        description="Outcome prediction after TACE for hepatocellular carcinoma. " + RESEARCH_USE_NOTICE)
    parser.add_argument("--version", action="version", version=f"tacepredict {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a cohort manifest and every file it names")
    p.add_argument("--manifest", required=True, help="cohort manifest CSV")
    p.add_argument("--table-only", action="store_true", help="check the table without loading images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("phantom", help="write the synthetic multi-phase CT demo cohort")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("import-hcc-tace-seg", help="map TCIA HCC-TACE-Seg's clinical table to a manifest")
    p.add_argument("--clinical", required=True, help="clinical.csv ('data table' sheet)")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("extract", help="radiomics and deep features of every case into one table")
    p.add_argument("--manifest", required=True, help="cohort manifest CSV")
    p.add_argument("--out", required=True, help="output folder (also holds the per-case cache)")
    p.add_argument("--phases", default="ct_ap,ct_pvp", help="comma-separated phase columns (default: ct_ap,ct_pvp)")
    p.add_argument("--register", choices=["none", "rigid", "affine"], default="rigid",
                   help="align the other phases to the reference phase (default: rigid)")
    p.add_argument("--no-radiomics", action="store_true", help="deep features only")
    p.add_argument("--radiomics-params", default=None, help="pyradiomics YAML (default: Resources/radiomics_ct.yaml)")
    p.add_argument("--deep", default="densenet121",
                   help="comma-separated backbones: densenet121, resnet50, resnet101, or none")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (downloaded once into the torch hub cache), random (warns), or a checkpoint file")
    p.add_argument("--sampling", choices=["centre", "inside"], default="centre",
                   help="centre: 224x224 patch on the largest slice; inside: patches inside the ROI")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--icc-cases", type=int, default=30,
                   help="cases whose other delineations (or mask perturbations) feed the ICC filter")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="run on an existing Dask scheduler instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("demo", help="the main job on the built-in demo cohort")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--hcc-tace-seg", default=None, help="also import and validate this HCC-TACE-Seg clinical.csv")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished cases are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
