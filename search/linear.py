"""Search the regularizers of the overfitting linear task: `python -m search.linear`.

The flags are here, the task (model, data, space, baselines) in search/tasks/linear.py.
"""

from collections.abc import Sequence

from search.flags import make_parser, positive_int, run_after_flags


def build_parser():
    """The flags of `python -m search.linear`."""
    parser = make_parser(
        "linear",
        "Search dropout, L2, L1 and early stopping for a bias-free Linear(200, 1) fitted on 20 "
        "samples (SGD, MSE), where regularization decides the test error.",
        epochs=100,
        batch_size=10,
        pruner="median",
        warmup_divisors={"other": 10},
    )
    parser.add_argument(
        "--hidden",
        type=positive_int,
        default=None,
        help="add a hidden layer of this width (then the activation is searched too)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_after_flags(parser, parser.parse_args(argv), "search.tasks.linear")


if __name__ == "__main__":
    raise SystemExit(main())
