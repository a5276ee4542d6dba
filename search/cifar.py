"""Search the regularizers of the CIFAR-10 CNN: `python -m search.cifar`.

The task itself (model, data, space, baselines, flags) is search/tasks/cifar.py.
"""

from collections.abc import Sequence

from search.cli import run_cli
from search.tasks.cifar import build_parser, task_builder


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(task_builder, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
