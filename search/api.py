"""The Python API, for notebooks: define a task in a cell, search it, report on it.

    from search import TaskSpec, run_search, write_report
    study = run_search(spec, trials=30, epochs=20)     # an optuna.Study
    report = write_report(study)                       # the report's numbers, as a dict

The same search and report as `python -m search.run` and `python -m search.report`, with the
same options under their Python names (docs/own-model.md).
"""

import contextlib
import functools
import io
import sys

import optuna

from search import cli
from search.attrs import SOURCE_ATTR
from search.config import SearchConfig
from search.errors import UsageError
from search.flags import ArgumentParser
from search.report import __main__ as report_cli
from search.report import reporting
from search.run import PROG, build_parser
from search.spec import TaskSpec
from search.study import stored_settings
from search.task_file import load_spec, task_builder, task_for_settings, task_from_spec


def load_task(reference: str) -> TaskSpec:
    """The TaskSpec of a task file: "path/to/task.py:build_task" or "module:build_task"."""
    return load_spec(reference)[0]


def run_search(
    task: TaskSpec | str,
    *,
    trials: int = 50,
    storage: str | None = None,
    study_name: str | None = None,
    jobs: int = 1,
    **options,
) -> optuna.Study:
    """Run a search (or resume it up to `trials` finished trials) and return its study.

    `task`: a TaskSpec, or a task file reference ("task.py:build_task"), which jobs > 1 needs:
    each worker process rebuilds the task from it. `storage`: default
    sqlite:///studies/<task name>.db; `study_name`: default the task's name. `options`: the
    other flags of `python -m search.run` by their Python names, e.g. epochs=20,
    pruner="median", seed=1, device="cpu", timeout=600.

    Raises UsageError (one line) for bad input, before anything is written; RuntimeError when
    the search stopped before the end (an interrupt, a lost database).
    """
    _refuse_in_a_worker("run_search")
    spec, source = load_spec(task) if isinstance(task, str) else (task, None)
    if source is None and jobs > 1:
        raise UsageError(
            "jobs > 1 needs the task as a file reference ('task.py:build_task'): each worker "
            "process rebuilds the task from it"
        )
    reference = task if isinstance(task, str) else "<python>"
    flags = {"trials": trials, "storage": storage, "study_name": study_name, "jobs": jobs}
    # The options go through the command's parser: the same names, defaults and checks.
    args = _parse(build_parser(spec), ["--task", reference, *_argv(flags | options)])
    config = SearchConfig.from_args(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    build = task_builder(args) if source else functools.partial(task_from_spec, spec, None)
    code = cli.run_search(build(config), config, build, PROG)
    if code == 2:
        raise UsageError("a worker process stopped on bad input: its line is printed above")
    if code != 0:
        raise RuntimeError(f"the search stopped before the end (exit status {code}); run again")
    return optuna.load_study(study_name=config.study_name, storage=config.storage)


def write_report(
    study: optuna.Study,
    *,
    repeats: int = 3,
    ablation: bool = True,
    out: str = "studies/{study}-report",
    task: TaskSpec | None = None,
    **options,
) -> dict:
    """Write the study's report (report.md, report.json, figures, the dashboard note) and
    return its numbers: "best" (the finalist of lowest mean validation loss over `repeats`
    seeds), "finalists", "baselines", "robustness" (the re-trained runs, mean and std),
    "ablation", "importances", ...

    The re-training rebuilds the task from the study's task file; a study searched from a
    TaskSpec made in Python needs it again as `task`. `options`: the other flags of
    `python -m search.report` by their Python names (jobs=2, finalists=1, device="cpu",
    ablation_path=True).
    """
    _refuse_in_a_worker("write_report")
    flags = {"repeats": repeats, "out": out, "no_ablation": not ablation} | options
    args = _parse(report_cli.build_parser(), _argv(flags))
    settings = stored_settings(study)
    folder = reporting.output_folder(args.out, study.study_name, several=False)
    source = study.user_attrs.get(SOURCE_ATTR)
    target = reporting.Target(study, settings, folder, source)
    reporting.prepare_folder(folder)
    built = None
    if task is not None and args.repeats:
        built = task_for_settings(task, source, settings, args.device)
    return reporting.report_study(target, args, built)


def _refuse_in_a_worker(function: str) -> None:
    """Exit 2 with one line if a worker process (jobs > 1) is running the user's script again.

    Worker processes are spawned, and spawning imports the parent's script again, as
    `__mp_main__`: a call that is not under `if __name__ == "__main__":` runs once more in every
    worker, where multiprocessing used to stop it with a traceback and the parent said
    "run again", which failed the same way.
    """
    # While the script is imported so, it is sys.modules["__mp_main__"] and not yet "__main__";
    # multiprocessing.parent_process() is set only after.
    importing = sys.modules.get("__mp_main__")
    if importing is None or importing is sys.modules.get("__main__"):
        return
    print(
        f"{function}: jobs > 1 runs worker processes, which import your script again: put its "
        'calls under `if __name__ == "__main__":` (docs/own-model.md)',
        file=sys.stderr,
    )
    raise SystemExit(2)


def _argv(flags: dict) -> list[str]:
    """Options as command-line words: epochs=5 → --epochs 5; True → the bare switch."""
    words = []
    for name, value in flags.items():
        if value is None or value is False:
            continue
        words.append(f"--{name.replace('_', '-')}")
        if value is not True:
            words.append(str(value))
    return words


def _parse(parser: ArgumentParser, argv: list[str]):
    """Parse as the command would, a bad option raising UsageError rather than exiting: the
    command's message without its "python -m ...: error:" and "(see --help)"."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parser.parse_args(argv)
    except SystemExit:
        lines = stderr.getvalue().strip().splitlines()
        message = lines[-1] if lines else "bad option"
        message = message.removeprefix(f"{parser.prog}: error: ").removesuffix(" (see --help)")
        if message.startswith("unrecognized arguments: "):  # the keywords, as they were given
            words = message.removeprefix("unrecognized arguments: ").split()
            names = [w[2:].replace("-", "_") for w in words if w.startswith("--")]
            message = f"no option named {', '.join(names)}"
        raise UsageError(message) from None
