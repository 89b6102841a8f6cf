"""The decision matrix: scenarios, prediction, verdicts, the runner and its per-network worker."""
