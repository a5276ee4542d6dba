"""Search the regularizers of the overfitting linear task: `python -m search.linear`.

The task itself (model, data, space, baselines, flags) is search/tasks/linear.py.
"""

from collections.abc import Sequence

from search.cli import run_cli
from search.tasks.linear import build_parser, task_builder


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(task_builder, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
