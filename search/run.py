"""Search the regularizers of your own model: `python -m search.run --task task.py:build_task`.

The task file (docs/own-model.md) defines a function returning a `search.TaskSpec`; its
epochs and batch size are the defaults of --epochs and --batch-size here, and every flag of
the built-in searches works the same (search/flags.py).
"""

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from search.config import TASK_BATCH_SIZE, TASK_EPOCHS
from search.errors import UsageError
from search.flags import ArgumentParser, make_parser, run_after_flags

if TYPE_CHECKING:
    from search.spec import TaskSpec

PROG = "python -m search.run"


def build_parser(spec: "TaskSpec | None" = None) -> ArgumentParser:
    """The flags, with the task's name, epochs and batch size as defaults where it is known."""
    parser = make_parser(
        spec.name if spec else "<task name>",
        "Search dropout, L2, L1, activation and early stopping for the model and data of a "
        "task file (docs/own-model.md), with baselines, pruning, the report and workers.",
        epochs=spec.epochs if spec else TASK_EPOCHS,
        batch_size=spec.batch_size if spec else TASK_BATCH_SIZE,
        # As for CIFAR-10: Hyperband from epoch 1 keeps the slow-starting regularized winners
        # that the median pruner stops early (docs/pruning.md).
        pruner="hyperband",
        warmup_divisors={"hyperband": 8, "other": 2},
        prog=PROG,
    )
    parser.add_argument(
        "--task",
        required=True,
        help="the task: path/to/task.py:function or package.module:function, a function "
        "taking no arguments that returns a search.TaskSpec",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The task's defaults go into the flags, so it is loaded before the flags are parsed.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--task")
    known, _ = first.parse_known_args(argv)
    spec = None
    if known.task:  # torch comes with the task file: `--help` alone answers without it
        from search.task_file import load_spec

        try:
            spec, _ = load_spec(known.task)
        except UsageError as error:
            print(f"{PROG}: error: {error}", file=sys.stderr)
            return 2
    parser = build_parser(spec)
    return run_after_flags(parser, parser.parse_args(argv), "search.task_file")


if __name__ == "__main__":
    raise SystemExit(main())
