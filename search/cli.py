"""What the task CLIs share: the search run, its summary, and user errors as one line.

`python -m search.cifar` and `python -m search.linear` are this module with their task
(search/tasks/); the flags live in search/flags.py, the display in search/progress.py.
"""

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from models.cifar_data import DataError
from search.config import SearchConfig
from search.errors import UsageError
from search.flags import ArgumentParser
from search.fused_worker import fuse_slots
from search.interrupts import StopSignals, exit_status
from search.progress import SearchProgress, shortening_hints
from search.storage import without_password
from search.study import FINISHED
from search.task import Task, TaskBuilder
from search.workers import run_study


def print_best(study: optuna.Study, task: Task) -> None:
    counts = {state: 0 for state in FINISHED}
    for trial in study.get_trials(deepcopy=False, states=FINISHED):
        counts[trial.state] += 1
    print(
        f"study {study.study_name!r}: {counts[TrialState.COMPLETE]} complete, "
        f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed"
    )
    try:
        best = study.best_trial
    except ValueError:
        print("no completed trial yet")
        return
    key = task.metric.key
    test = best.user_attrs.get(key)
    test_text = f", {key}={test:.4f}" if test is not None else ""
    print(f"best trial {best.number}: val_loss={best.value:.4f}{test_text}")
    print(f"best regularizers: {task.space.describe(best.params)}")


def run_search(task: Task, config: SearchConfig, build_task: TaskBuilder, prog: str) -> int:
    """Run the search's workers (search/workers.py) with its display; the exit status."""
    device = task.data.train.inputs.device.type
    slots = fuse_slots(task, config)
    progress = SearchProgress(
        config.trials,
        config.epochs,
        jobs=config.jobs * slots,  # trials in flight, for the estimate
        hints=shortening_hints(task.name, device, config.jobs, len(task.data.train)),
    )
    return run_study(
        task, config, build_task, progress, lambda study: print_best(study, task), prog, slots
    )


def run_cli(
    task_builder: Callable[[argparse.Namespace], TaskBuilder],
    parser: ArgumentParser,
    args: argparse.Namespace,
) -> int:
    """Build the task from the parsed `args` and search; user errors become one line on stderr
    and exit 2.

    `task_builder`: the task's builder with the task's own flags taken from the parsed ones
    (e.g. search.tasks.linear.task_builder); the search flags become the config, here once.
    """
    try:
        # --timeout counts from here (config.started_at), in every --jobs worker alike.
        config = SearchConfig.from_args(args)
    except UsageError as error:  # flags that contradict each other, as argparse says a bad one
        parser.error(str(error))
    build_task = task_builder(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    stop = StopSignals()
    try:
        with stop.installed():  # loading data writes nothing: stop at once, SIGTERM too
            task = build_task(config)
        code = run_search(task, config, build_task, parser.prog)
    except (UsageError, DataError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted ({stop.name})", file=sys.stderr)
        return exit_status(stop.signum or signal.SIGINT)
    print(f"done in {time.perf_counter() - started:.1f}s")
    if code == 0:
        print(f"next: {report_command(task, config, args)}")
    return code


def report_command(task: Task, config: SearchConfig, args: argparse.Namespace) -> str:
    """The search.report command for this study, without the storage's password (a shell
    comment says where it goes instead); `args`: the parsed flags, for a task's own that the
    report needs too (CIFAR-10's --data and --cache-dir)."""
    storage, had_password = without_password(config.storage)
    words = ["python -m search.report", "--storage", storage]
    words += ["--study-name", config.study_name]
    if task.name == "cifar":  # re-training CIFAR-10 needs its images
        if args.data:
            words += ["--data", args.data]
        words += ["--cache-dir", args.cache_dir]
    command = " ".join(shlex.quote(word) if i else word for i, word in enumerate(words))
    if had_password:
        command += "  # password: set PGPASSWORD or add it to ~/.pgpass (docs/workers.md)"
    return command
