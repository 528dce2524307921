"""Statistics: Cox regression, evaluation metrics, reports and the held-out validation runner."""
