"""The CIFAR-10 task: the CNN, the data split, the search space and the baselines.

`python -m search.cifar` (its flags are there) searches it; the report and the tools rebuild
it from stored settings.
"""

import argparse
import functools
import math
from dataclasses import dataclass, replace

import torch

from models.activations import ACTIVATIONS
from models.cifar_data import CifarArrays, load_cifar10, stratified_split
from models.cnn import CifarCNN
from search.config import SearchConfig
from search.errors import UsageError
from search.space import Regularizers, SearchSpace
from search.spec import TaskSpec
from search.task import Task, TaskBuilder, resolve_device
from search.training import Split, l1_ceiling

LR = 1e-3
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000


@dataclass(frozen=True)
class CifarOptions:
    """search.cifar's own flags: where the images come from and how they are split."""

    data: str | None  # --data: a cifar-10-batches-py folder, an image tree or an archive
    cache_dir: str  # where decoded images are cached as tensors
    download: bool  # download with torchvision when no data is found
    val_size: int  # validation images held out of the training images
    train_size: int  # training images used; 0: all that are not held out
    test_size: int  # test images used; 0: all

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "CifarOptions":
        return cls(
            args.data, args.cache_dir, args.download, args.val_size, args.train_size, args.test_size
        )


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW → float in [-1, 1] (mean 0.5, std 0.5 per channel), channels-last."""
    return images.float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)


def split_cifar(
    arrays: CifarArrays, options: CifarOptions, seed: int
) -> tuple[Split, Split, Split]:
    """Train, validation and test images as `options` size them; `seed` draws them."""
    n_train = len(arrays.train_labels)
    if options.val_size >= n_train:
        raise UsageError(
            f"--val-size {options.val_size} leaves no training images out of {n_train}"
        )
    if options.train_size > n_train - options.val_size:
        raise UsageError(
            f"--train-size {options.train_size} + --val-size {options.val_size} exceed the "
            f"{n_train} training images: lower one of them"
        )
    if options.test_size > len(arrays.test_labels):
        raise UsageError(
            f"--test-size {options.test_size} exceeds the {len(arrays.test_labels)} test images"
        )
    train_idx, val_idx = stratified_split(arrays.train_labels, options.val_size, seed)
    # Shuffled once, so that a --train-size subset and the train-loss probe are random samples.
    train_idx = train_idx[
        torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
    ]
    if options.train_size:
        train_idx = train_idx[: options.train_size]
    test_idx = torch.arange(len(arrays.test_labels))
    if options.test_size and options.test_size < len(test_idx):
        test_idx = stratified_split(arrays.test_labels, options.test_size, seed)[1]
    return (
        Split(arrays.train_images[train_idx], arrays.train_labels[train_idx]),
        Split(arrays.train_images[val_idx], arrays.train_labels[val_idx]),
        Split(arrays.test_images[test_idx], arrays.test_labels[test_idx]),
    )


CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over the 10 classes


def search_space(epochs: int) -> SearchSpace:
    return SearchSpace(
        dropout=(0.0, 0.7),
        weight_decay=(1e-7, 1e-2),
        # Up to where λ·Σ|w| at initialization is a quarter of ln 10 (2.9e-5): above, a third
        # of the runs never left chance in 8 epochs and none came near the best.
        l1=(1e-8, _l1_ceiling()),
        patience=(1, epochs),
        activations=tuple(ACTIVATIONS),
    )


@functools.cache
def _l1_ceiling() -> float:
    # Σ|w| of 1.4M weights at initialization varies by 0.1% between seeds; two significant
    # digits make the range, which the study stores and checks on resume, the same everywhere.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return float(f"{l1_ceiling(CifarCNN(), CHANCE_LOSS):.2g}")


# The configurations every new study measures first, beside the search: "no regularization"
# (added by TaskSpec) and the reference configuration (the original training script's dropout
# 0.25 with ReLU).
BASELINES = {"reference (dropout 0.25)": {"dropout": 0.25}}


def baselines(space: SearchSpace) -> dict[str, dict]:
    """The baselines' params in `space` (for the tools that build trials without a task)."""
    return {
        "no regularization": space.params_for(dropout=0.0),
        "reference (dropout 0.25)": space.params_for(dropout=0.25),
    }


def task_spec(
    options: CifarOptions, seed: int, epochs: int, batch_size: int, device: torch.device
) -> TaskSpec:
    """The CIFAR-10 task as a TaskSpec: the same API a user's task file uses. `seed` draws the
    split. The images go to `device` as they are split, so that the host holds one copy of the
    uint8 tensors."""
    arrays = load_cifar10(
        options.data,
        cache_dir=options.cache_dir,
        download=options.download,
        # The first run decodes 60,000 images for seconds: say so rather than sit silent.
        announce=lambda text: print(text, flush=True),
    )
    train, val, test = (split.to(device) for split in split_cifar(arrays, options, seed))
    space = search_space(epochs)

    def build_model(reg: Regularizers) -> CifarCNN:
        return CifarCNN(dropout=reg.dropout, activation=reg.activation).to(
            memory_format=torch.channels_last
        )

    return TaskSpec(
        "cifar",
        train=(train.inputs, train.targets),
        val=(val.inputs, val.targets),
        test=(test.inputs, test.targets),
        build_model=build_model,
        loss="cross_entropy",
        optimizer="adam",
        lr=LR,
        batch_size=batch_size,
        epochs=epochs,
        dropout=space.dropout,
        weight_decay=space.weight_decay,
        l1=space.l1,
        patience=space.patience,
        activations=space.activations,
        baselines=BASELINES,
        transform=normalize,
    )


def build_task(config: SearchConfig, options: CifarOptions) -> Task:
    """The CIFAR-10 task a search with `config` trains, its images as `options` say."""
    return _task(
        options, config.device, config.seed, config.epochs, config.batch_size, config.warmup_epochs
    )


def task_builder(args: argparse.Namespace) -> TaskBuilder:
    """`build_task` with this command's own flags (--data, --cache-dir, the sizes)."""
    return functools.partial(build_task, options=CifarOptions.from_args(args))


def task_from_args(args: argparse.Namespace) -> Task:
    """The task `python -m search.cifar` with these parsed flags searches (tools, tests)."""
    return task_builder(args)(SearchConfig.from_args(args))


def _task(
    options: CifarOptions, device: str, seed: int, epochs: int, batch_size: int, warmup: int
) -> Task:
    where = resolve_device(device)
    task = task_spec(options, seed, epochs, batch_size, where).prepare(where, seed, warmup)
    return replace(task, chance_loss=CHANCE_LOSS)


def task_from_settings(
    settings: dict,
    device: str = "auto",
    data: str | None = None,
    cache_dir: str = "studies/cache",
) -> Task:
    """Rebuild the task a study was searched on from its stored `settings`, e.g. to re-train.

    The stored split sizes are the sizes actually used, so passing them back as --train-size
    and --test-size selects the same images (the split is seeded).
    """
    train_size, val_size, test_size = settings["split_sizes"]
    options = CifarOptions(data, cache_dir, False, val_size, train_size, test_size)
    return _task(
        options,
        device,
        settings["seed"],
        settings["epochs"],
        settings["batch_size"],
        settings["warmup_epochs"],
    )
