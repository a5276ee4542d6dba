"""The argparse pieces every command shares: one-line errors, flag types, the search flags,
and the hand-over to the search once the flags are read (`run_after_flags`)."""

import argparse
import importlib
import os
import signal
import sys

from search.config import PRUNERS, SAMPLERS
from search.pruning import HISTORY, PRUNED_VIEWS


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, unless there is none to show (None, a switch)
    or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.nargs == 0 or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (plus a pointer to --help), exit 2, and
    shows the defaults in --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

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


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Where CIFAR-10 comes from and where its decoded tensors are cached, for every command."""
    parser.add_argument(
        "--data",
        default=os.environ.get("CIFAR10_ROOT"),
        help="CIFAR-10: torchvision's cifar-10-batches-py folder, an image-folder tree "
        "(train/<class>/, test/<class>/) or a .tar/.tar.gz of either; default $CIFAR10_ROOT",
    )
    parser.add_argument(
        "--cache-dir", default="studies/cache", help="where decoded images are cached as tensors"
    )


def _warmup_defaults(divisors: dict[str, int]) -> str:
    if list(divisors) == ["other"]:
        return f"--epochs // {divisors['other']}"
    return ", ".join(
        f"--epochs // {divisor} for {'the other pruners' if name == 'other' else name}"
        for name, divisor in divisors.items()
    )


def make_parser(
    task: str,
    description: str,
    epochs: int,
    batch_size: int,
    pruner: str,
    warmup_divisors: dict[str, int],
    start_trials: int = 0,
    prog: str | None = None,
) -> ArgumentParser:
    """The flags every task's search shares, with the task's defaults.

    `warmup_divisors` sets the default --warmup-epochs, --epochs // divisor, per pruner; the
    key "other" covers the pruners not named. `start_trials`: the default --start-trials.
    `prog`: default python -m search.<task>.
    """
    parser = ArgumentParser(
        prog=prog or f"python -m search.{task}",
        description=description,
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
        "--start-trials",
        type=non_negative_int,
        default=start_trials,
        help="a new study starts, after its baselines, with this many trials: each activation "
        "at dropout 0.5 with the rest off, then a Latin hypercube over the search space; tpe "
        "and gp take over after as many finished trials; 0: their own 10 random start-up trials",
    )
    add(
        "--pruner",
        choices=PRUNERS,
        default=pruner,
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
    add(
        "--sampler-history",
        type=non_negative_int,
        default=HISTORY,
        help="tpe and gp learn from at most this many finished trials: the best 25 and the "
        "most recent (their cost grows with what they read; docs/workers.md); 0: all",
    )
    add("--epochs", type=positive_int, default=epochs, help="training epochs per trial")
    add(
        "--warmup-epochs",
        type=positive_int,
        default=None,
        help="epochs every trial trains before the pruner may stop it (hyperband: its first "
        f"rung); by default {_warmup_defaults(warmup_divisors)}, at least 1",
    )
    parser.set_defaults(warmup_divisors=warmup_divisors)
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
        "--fuse",
        type=positive_int,
        default=None,
        help="trials each worker process trains at once, batched in one model (1: one at a "
        "time); by default 8 on a GPU, on a CPU 4 for a model under 25,000 parameters (the "
        "linear task) and 1 for others (docs/fused.md)",
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
        "trial is failed and its parameters are enqueued again; above --heartbeat-interval",
    )
    return parser


def run_after_flags(parser: ArgumentParser, args: argparse.Namespace, task_module: str) -> int:
    """Import the search (torch takes seconds: --help and a wrong flag need none of it) and run
    it with `task_module`'s `task_builder` on the parsed `args`; the exit status.

    A Ctrl-C while importing is one line and exit 130, as later on; a traceback it was.
    """
    try:
        from search.cli import run_cli

        task_builder = importlib.import_module(task_module).task_builder
    except KeyboardInterrupt:
        # Here, not at the top: --help would import SQLAlchemy with it.
        from search.interrupts import SIGNAL_NAMES, exit_status

        name = SIGNAL_NAMES[signal.SIGINT]
        print(
            f"{parser.prog}: interrupted ({name}) while starting: nothing was written",
            file=sys.stderr,
        )
        return exit_status(signal.SIGINT)
    return run_cli(task_builder, parser, args)
