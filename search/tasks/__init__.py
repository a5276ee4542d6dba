"""The tasks a search can run: each defines its data, model, search space, baselines and flags."""
