"""Named reduced CIFAR-10 protocols: the one place that fixes their split sizes and epochs.

The full protocol (45,000 training images) takes hours per search on a CPU; measurements of
pruning and samplers run on these reduced ones, and the docs name them by these keys.
"""

PROTOCOLS: dict[str, dict[str, int]] = {
    # The smallest search that still trains and tests for real: seconds (the test suite's).
    "cifar-tiny": {"train_size": 1000, "val_size": 500, "test_size": 1000, "epochs": 1},
    # Small enough for a 50-trial search in ~17 min unpruned on 2 CPU cores.
    "cifar-2k": {"train_size": 2000, "val_size": 1000, "test_size": 2000, "epochs": 8},
    # The pruning protocol: the slow-start effect shows, 50 trials in ~52 min with --jobs 2.
    "cifar-10k": {"train_size": 10000, "val_size": 2000, "test_size": 2000, "epochs": 8},
}


def protocol_flags(name: str) -> list[str]:
    """A protocol as the flags of `python -m search.cifar`."""
    return [
        part
        for key, value in PROTOCOLS[name].items()
        for part in (f"--{key.replace('_', '-')}", str(value))
    ]
