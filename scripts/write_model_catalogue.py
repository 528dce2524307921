#!/usr/bin/env python
"""Rewrite TACEPredictLib/Resources/model_catalogue.json from the registry (run after declaring a model): the
Slicer module reads it to list the models before the first-use install has put pandas and the rest in Slicer."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from TACEPredictLib.models.registry import CATALOGUE_FILE, catalogue  # noqa: E402

with open(CATALOGUE_FILE, "w", encoding="utf-8") as handle:
    json.dump(catalogue(), handle, indent=1)
    handle.write("\n")
print(f"wrote {len(catalogue())} models to {CATALOGUE_FILE}")
