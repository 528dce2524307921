"""Headless cohort batch: predict every case of a manifest and save one Slicer scene per case.

Runs the same way in Slicer and under plain Python with slicer-core (``pip install slicer-core``):

    Slicer --no-main-window --python-script scripts/slicer_batch.py --manifest m.csv --bundle MODEL_DIR --out OUT
    python scripts/slicer_batch.py --manifest m.csv --bundle MODEL_DIR --out OUT

Each case: its CT phases and segmentation are loaded into a scene, every model runs (the published
aggressive-progression score always; each ``--bundle`` too), and ``OUT/<case>/<case>.mrml`` holds the CT, the
segmentation, the results and features tables, the survival and probability charts and the Grad-CAM heat
maps. ``OUT/cohort_results.csv`` has one row per case and model, ``OUT/failures.csv`` one row per case that
could not run (the others carry on). Case folders are named safely (an ID cannot write outside ``--out``); a
previous batch's results are replaced only with ``--overwrite``. Every error is one message naming the case,
file or column and the fix (exit code 2: an input to fix, 3: disk, permissions or network); ``--debug`` shows
the traceback. Research use only.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="cohort manifest CSV")
    parser.add_argument("--bundle", action="append", default=[], help="a model bundle folder (repeatable)")
    parser.add_argument("--out", required=True, help="output folder: one scene per case and the cohort table")
    parser.add_argument("--cases", default=None, help="comma-separated case ids (default: all)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-heatmaps", action="store_true", help="skip Grad-CAM heat maps")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous batch's results in --out")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(argv)
    from TACEPredictLib import errors
    return errors.run(_run, args, debug=args.debug)


def _run(args):
    from TACEPredictLib import RESEARCH_USE_NOTICE
    from TACEPredictLib.slicer.mrml import run_cohort
    print(RESEARCH_USE_NOTICE)
    results, failures = run_cohort(args.manifest, args.bundle, args.out,
                                   cases=[c.strip() for c in args.cases.split(",")] if args.cases else None,
                                   device=args.device, heatmaps=not args.no_heatmaps, overwrite=args.overwrite)
    print(f"{results['case_id'].nunique() if len(results) else 0} case(s) done, {len(failures)} failed: "
          f"{os.path.join(args.out, 'cohort_results.csv')}")
    return 1 if len(failures) else 0


if __name__ == "__main__":
    status = main()
    try:
        import slicer
        app = getattr(slicer, "app", None)
    except ImportError:
        app = None
    if app is not None:  # inside Slicer: --python-script does not end the application by itself
        app.exit(status)
    else:
        sys.exit(status)
