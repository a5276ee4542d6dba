"""The study report: `python -m search.report` (search/report/__main__.py).

summary.py reads the numbers from the study, robustness.py, ablation.py and retraining.py
re-train configurations over fresh seeds, markdown.py and plots.py write report.md and the
figures, reporting.py runs them for the command. Nothing here imports a CLI module or the
workers.
"""

PROG = "python -m search.report"
DEFAULT_STORAGE = "sqlite:///studies/cifar.db"
