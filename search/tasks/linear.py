"""The overfitting linear task: 200 features, 20 samples, its search space.

`python -m search.linear` (its flags are there) searches it; the report and the tools rebuild
it from stored settings.
"""

import argparse
import functools

from models.activations import ACTIVATIONS
from models.linear import LinearRegressor, make_dataset
from search.config import SearchConfig
from search.space import Regularizers
from search.spec import TaskSpec
from search.task import Task, TaskBuilder, resolve_device

LR = 0.003
N_TRAIN, N_VAL, N_TEST = 20, 100, 100


def task_spec(seed: int, epochs: int, batch_size: int, hidden: int | None) -> TaskSpec:
    """The linear task as a TaskSpec: the same API a user's task file uses. `seed` draws the
    data; `hidden`: the width of a hidden layer, None for none."""
    raw = make_dataset(seed, n_train=N_TRAIN, n_val=N_VAL, n_test=N_TEST)

    def build_model(reg: Regularizers) -> LinearRegressor:
        return LinearRegressor(hidden=hidden, dropout=reg.dropout, activation=reg.activation)

    # With 200 weights and 20 samples SGD leaves 180 directions of the initial weights
    # untouched; only a strong penalty (lr·λ·steps ~ 1, so λ in the tens) removes them.
    # SGD stays stable up to lr·λ < 2, far above 100. Input dropout acts as a ridge penalty
    # growing like p/(1-p), so its range reaches 0.95: in a first search (2026-11-22) with a range
    # up to 0.9, the best sat at its top.
    return TaskSpec(
        "linear",
        train=(raw.train_x, raw.train_y),
        val=(raw.val_x, raw.val_y),
        test=(raw.test_x, raw.test_y),
        build_model=build_model,
        loss="mse",
        optimizer="sgd",
        lr=LR,
        batch_size=batch_size,
        epochs=epochs,
        dropout=(0.0, 0.95),
        weight_decay=(1e-4, 100.0),
        l1=(1e-6, 1.0),
        activations=tuple(ACTIVATIONS) if hidden else None,
        # The reference configuration (the original script's) is the unregularized one, so
        # one baseline covers both.
        baselines={"no regularization (reference)": {}},
        settings={"hidden": hidden},
    )


def build_task(config: SearchConfig, hidden: int | None = None) -> Task:
    """The linear task a search with `config` trains; `hidden` as --hidden."""
    spec = task_spec(config.seed, config.epochs, config.batch_size, hidden)
    return spec.prepare(resolve_device(config.device), config.seed, config.warmup_epochs)


def task_builder(args: argparse.Namespace) -> TaskBuilder:
    """`build_task` with this command's own flag, --hidden."""
    return functools.partial(build_task, hidden=args.hidden)


def task_from_args(args: argparse.Namespace) -> Task:
    """The task `python -m search.linear` with these parsed flags searches (tools, tests)."""
    return task_builder(args)(SearchConfig.from_args(args))


def task_from_settings(settings: dict, device: str = "auto") -> Task:
    """Rebuild the task a study was searched on from its stored `settings`, e.g. to re-train."""
    seed = settings["seed"]
    spec = task_spec(seed, settings["epochs"], settings["batch_size"], settings["hidden"])
    return spec.prepare(resolve_device(device), seed, settings["warmup_epochs"])
