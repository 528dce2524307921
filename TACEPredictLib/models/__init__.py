"""The published models, one module per method (named for what it predicts), their shared parts (``base``,
``networks``, ``training``, ``bundle``), and the registry that declares every task and model once."""

from .registry import (MODELS, TASKS, built_in, load, make_model, model_spec, models_of, save,  # noqa: F401
                       train, train_bundle)
