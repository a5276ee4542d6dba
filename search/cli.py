"""What the task CLIs share: common flags, the search loop, progress lines and errors."""

import argparse
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from models.cifar_data import DataError
from search.errors import UsageError
from search.interrupts import StopSignals, exit_status
from search.pruning import PRUNED_VIEWS
from search.space import SearchSpace
from search.storage import safe_url
from search.study import BASELINE_ATTR, PRUNERS, SAMPLERS
from search.task import Task
from search.workers import FINISHED, run_study


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (plus a pointer to --help), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def make_parser(
    task: str, description: str, epochs: int, batch_size: int, warmup_divisor: int
) -> ArgumentParser:
    """The flags every task shares; `warmup_divisor` sets the default --warmup-epochs."""
    parser = ArgumentParser(
        prog=f"python -m search.{task}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--trials",
        type=positive_int,
        default=50,
        help="finished trials (complete, pruned or failed) the study should hold; a rerun "
        "resumes and runs only the missing ones",
    )
    add(
        "--storage",
        default=f"sqlite:///studies/{task}.db",
        help="study database URL (sqlite:///file.db or postgresql://user:pw@host/db)",
    )
    add("--study-name", default=task, help="study to create or resume in the storage")
    add("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler")
    add(
        "--pruner",
        choices=PRUNERS,
        default="median",
        help="Optuna pruner, fed with the validation loss of every epoch; predictive prunes "
        "only a trial whose optimistic predicted final loss misses the best 3",
    )
    add(
        "--pruned-as",
        choices=PRUNED_VIEWS,
        default="ranked-last",
        help="how the sampler sees a pruned trial: ranked below every completed one (Optuna's "
        "TPE), completed at its predicted final loss, or not at all",
    )
    add("--epochs", type=positive_int, default=epochs, help="training epochs per trial")
    add(
        "--warmup-epochs",
        type=positive_int,
        default=None,
        help="epochs every trial trains before the pruner may stop it; None means --epochs "
        f"// {warmup_divisor}, at least 1",
    )
    parser.set_defaults(warmup_divisor=warmup_divisor)
    add("--batch-size", type=positive_int, default=batch_size, help="training batch size")
    add(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seeds the sampler, the data and each trial's training",
    )
    add(
        "--timeout",
        type=positive_float,
        default=None,
        help="stop starting new trials after this many seconds",
    )
    add(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to train; auto picks cuda when a GPU is visible",
    )
    add(
        "--jobs",
        type=positive_int,
        default=1,
        help="worker processes on this machine, sharing the study and the CPU threads; "
        "--trials stays the study's total",
    )
    add(
        "--worker-id",
        type=non_negative_int,
        default=None,
        help="seeds this worker's sampler with --seed and this id; default: the next id the "
        "study hands out (0 for the first worker of a new study)",
    )
    add(
        "--heartbeat-interval",
        type=positive_int,
        default=5,
        help="seconds between a running trial's heartbeats in the database",
    )
    add(
        "--grace-period",
        type=positive_int,
        default=20,
        help="seconds without a heartbeat after which a trial's worker counts as dead: the "
        "trial is failed and its parameters are enqueued again",
    )
    return parser


def warmup_epochs(args: argparse.Namespace) -> int:
    """--warmup-epochs, or the task's default share of --epochs."""
    if args.warmup_epochs is None:
        return max(1, args.epochs // args.warmup_divisor)
    if args.warmup_epochs > args.epochs:
        raise UsageError(
            f"--warmup-epochs {args.warmup_epochs} is more than --epochs {args.epochs}: "
            "pruning would never start; lower it, or use --pruner none"
        )
    return args.warmup_epochs


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
    return torch.device(name)


def progress_printer(space: SearchSpace) -> Callable[[optuna.Study, FrozenTrial], None]:
    return lambda study, trial: print_progress(trial, space)


def print_progress(trial: FrozenTrial, space: SearchSpace) -> None:
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    last = trial.last_step
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    detail = f" at epoch {last}" if trial.state == TrialState.PRUNED and last else ""
    baseline = trial.user_attrs.get(BASELINE_ATTR)
    marker = f" [baseline: {baseline}]" if baseline else ""
    print(
        f"trial {trial.number:3d} {trial.state.name:8s}{detail} val_loss={value} "
        f"{space.describe(trial.params)} ({seconds:.1f}s){marker}",
        flush=True,
    )


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
    test_key = "test_accuracy" if task.classification else "test_mse"
    test = best.user_attrs.get(test_key)
    test_text = f", {test_key}={test:.4f}" if test is not None else ""
    print(f"best trial {best.number}: val_loss={best.value:.4f}{test_text}")
    print(f"best regularizers: {task.space.describe(best.params)}")


def run_search(
    task: Task,
    args: argparse.Namespace,
    build_task: Callable[[argparse.Namespace], Task],
    prog: str,
) -> int:
    """Run the search's workers (search/workers.py); the exit status."""
    return run_study(
        task, args, build_task, progress_printer, lambda study: print_best(study, task), prog
    )


def run_cli(
    build_task: Callable[[argparse.Namespace], Task],
    parser: ArgumentParser,
    argv: Sequence[str] | None,
) -> int:
    """Parse, build the task, search; user errors become one line on stderr and exit 2."""
    args = parser.parse_args(argv)
    # --timeout counts from here, in this process and in every --jobs worker alike.
    args.started_at = time.time()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    stop = StopSignals()
    try:
        with stop.installed():  # loading data writes nothing: stop at once, SIGTERM too
            task = build_task(args)
        code = run_search(task, args, build_task, parser.prog)
    except (UsageError, DataError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted ({stop.name})", file=sys.stderr)
        return exit_status(stop.signum or signal.SIGINT)
    print(f"done in {time.perf_counter() - started:.1f}s")
    if code == 0:
        print(f"next: {report_command(task, args)}")
    return code


def report_command(task: Task, args: argparse.Namespace) -> str:
    """The search.report command for this study, password masked."""
    words = ["python -m search.report", "--storage", safe_url(args.storage)]
    words += ["--study-name", args.study_name]
    if task.name == "cifar":  # re-training CIFAR-10 needs its images
        if args.data:
            words += ["--data", args.data]
        words += ["--cache-dir", args.cache_dir]
    return " ".join(shlex.quote(word) if i else word for i, word in enumerate(words))
