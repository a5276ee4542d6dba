"""regsearch: search the regularizers of a PyTorch model with Optuna (README.md).

The public API, for task files and notebooks (docs/own-model.md); everything else in the
package is reached through the commands (`python -m search`, `regsearch`):

    from search import Regularizers, TaskSpec, make_activation, run_search, write_report

- TaskSpec: a task, i.e. the data, `build_model(reg)` and the ranges to search; bad fields
  raise UsageError when it is made.
- Regularizers: what `build_model` receives: `reg.dropout` (a rate in [0, 1)),
  `reg.activation` (a name), and the weight decay, L1 and patience the trainer applies.
- make_activation(name): a new `nn.Module` of an activation name; ACTIVATIONS: name -> class,
  the names it knows (an unknown name raises ValueError).
- run_search(task, trials=50, ...) -> optuna.Study: run or resume a search, the flags of
  `python -m search.run` by their Python names.
- write_report(study, ...) -> dict: write the report of `python -m search.report` and return
  its numbers.
- load_task("task.py:build_task") -> TaskSpec: the spec of a task file.
- UsageError: raised for bad input, before anything is written; str(error) is one line
  saying what is wrong and how to fix it.

The names load on first use, so that importing one module of the package (a worker, the
dashboard) does not import them all. The measurement and research tools (search/tools/) are
not part of the API.
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
    "UsageError": "search.errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")


def __dir__() -> list[str]:
    # A notebook's tab completion shows the public names, which are not module globals.
    return sorted([*globals(), *__all__])
