"""Search the regularizers of the CIFAR-10 CNN: `python -m search.cifar`.

The flags are here, the task (model, data, space, baselines) in search/tasks/cifar.py.
"""

from collections.abc import Sequence

from search.flags import (
    add_data_flags,
    make_parser,
    non_negative_int,
    positive_int,
    run_after_flags,
)


def build_parser():
    """The flags of `python -m search.cifar`."""
    parser = make_parser(
        "cifar",
        "Search dropout, L2, L1, activation and early stopping for the CIFAR-10 CNN "
        "(Adam, lr 1e-3), selecting on a validation set held out of the training images.",
        epochs=8,
        batch_size=32,
        # Hyperband from epoch 1 trains half the epochs; the baselines and the start design
        # train to the end, so that the answer no longer rests on a cut where the winners'
        # early losses do not rank (docs/default-search.md). The other pruners wait half the
        # epochs.
        pruner="hyperband",
        warmup_divisors={"hyperband": 8, "other": 2},
        # Each activation at dropout 0.5 with the rest off, before TPE takes over: with TPE's
        # random start-up trials, 3 of 4 short searches ended near the reference configuration.
        start_trials=6,
    )
    add = parser.add_argument
    add_data_flags(parser)
    add(
        "--download",
        action="store_true",
        help="download CIFAR-10 with torchvision when no data is found (needs internet): into "
        "--data DIR, or without --data into studies/data, where later runs find it",
    )
    add(
        "--val-size",
        type=positive_int,
        default=5000,
        help="validation images held out of the 50,000 training images, stratified by class",
    )
    add(
        "--train-size",
        type=non_negative_int,
        default=0,
        help="training images used (0: all that are not held out for validation)",
    )
    add(
        "--test-size",
        type=non_negative_int,
        default=0,
        help="test images used for the reported test numbers (0: all 10,000)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_after_flags(parser, parser.parse_args(argv), "search.tasks.cifar")


if __name__ == "__main__":
    raise SystemExit(main())
