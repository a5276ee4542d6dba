"""regsearch: search the regularizers of a PyTorch model with Optuna (README.md).

The public API, for task files and notebooks (docs/own-model.md):

    from search import Regularizers, TaskSpec, make_activation, run_search, write_report

The names load on first use, so that importing one module of the package (a worker, the
dashboard) does not import them all.
"""

import importlib

_EXPORTS = {
    "TaskSpec": "search.spec",
    "Regularizers": "search.space",
    "make_activation": "models.activations",
    "ACTIVATIONS": "models.activations",
    "run_search": "search.api",
    "write_report": "search.api",
    "load_task": "search.api",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
