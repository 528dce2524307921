"""The published models, one module per method (named for what it predicts), their shared parts, and the
registry that declares every task and model once (``registry``)."""

from .registry import load, make_model, save, train, train_bundle  # noqa: F401  the models' public API
