"""The task a user defines: data, a model builder, fixed training settings, ranges, baselines.

A task file's function returns a `TaskSpec` (docs/own-model.md); `TaskSpec.prepare` checks it
and turns it into the `Task` the workers train (search/task.py). The built-in CIFAR-10 and
linear tasks are TaskSpecs too (search/tasks/). Every mistake a check finds is a UsageError:
one line, raised before a study is opened, so nothing is written.
"""

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from models.activations import ACTIVATIONS
from search.config import TASK_BATCH_SIZE, TASK_EPOCHS
from search.errors import UsageError
from search.space import (
    ACTIVATION,
    DROPOUT,
    L1,
    PATIENCE,
    WEIGHT_DECAY,
    Regularizers,
    SearchSpace,
)
from search.task import Task, study_settings
from search.training import Split, TaskData, TrainConfig, Transform, identity

# A regularizer's range: (low, high) searched, a number to fix it, None to leave it off.
Range = tuple[float, float] | float | None
# A split: (inputs, targets) tensors (or arrays) of equal length, or a Dataset of such pairs.
Data = tuple[object, object] | Dataset
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("adam", "sgd")
# Tasks whose studies predate the stored loss: their metric follows from the name.
BUILT_IN_TASKS = ("cifar", "linear")
_PROBE = 8  # samples the model checks run on


@dataclass(frozen=True)
class TaskSpec:
    """A network and a data set whose regularizers a search finds.

    Data: `train`, `val` (selection) and `test` (reported only), each (inputs, targets) of
    equal length N, or a `torch.utils.data.Dataset` of (input, target) pairs, read into
    tensors once. Cross-entropy targets are class indices, shape [N]; the model maps inputs
    [B, ...] to logits [B, classes]. MSE targets are floats of the model's output shape. Float64
    becomes float32. `transform` maps a batch of stored inputs to model inputs (e.g. uint8
    images to normalized floats), applied per batch.

    `build_model(regularizers)` returns a fresh `nn.Module` using `regularizers.dropout` (a
    rate in [0, 1)) and `regularizers.activation` (a name of models.activations.ACTIVATIONS)
    where they are searched; weight decay, L1 and early stopping are applied by the trainer.

    Ranges: `dropout` linear; `weight_decay` (the optimizer's L2) and `l1` (λ·Σ|w| over
    weights) on a log scale whose low end means off; `patience` in epochs, log scale, its high
    end means no early stopping ("auto": 1 to epochs). A number fixes a regularizer, None
    leaves it off. `activations`: names searched, one name to fix it, None for the model's own.

    `baselines`: named configurations measured in the study beside the search, as regularizer
    values ({"dropout": 0.25}; the others off); "no regularization" is added first unless one
    of them is already that. `settings`: extra entries stored with the study and checked when
    it is resumed.
    """

    name: str
    train: Data
    val: Data
    test: Data
    build_model: Callable[[Regularizers], nn.Module]
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    batch_size: int = TASK_BATCH_SIZE
    epochs: int = TASK_EPOCHS
    dropout: Range = (0.0, 0.5)
    weight_decay: Range = (1e-6, 1e-2)
    l1: Range = (1e-8, 1e-3)
    patience: tuple[int, int] | int | Literal["auto"] | None = "auto"
    activations: tuple[str, ...] | str | None = None
    baselines: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    transform: Transform = identity
    settings: Mapping[str, object] = field(default_factory=dict)

    def prepare(self, device: torch.device, seed: int, warmup_epochs: int) -> Task:
        """Check everything and return the Task to search on `device` (UsageError if wrong).

        `seed` and `warmup_epochs` (the pruner's) are the search's, stored in the settings.
        """
        config = self._config()
        space = self._space()
        splits = {name: _split(name, data, self.loss) for name, data in self._splits().items()}
        _check_shapes(splits)
        data = TaskData(*(split.to(device) for split in splits.values()), self.transform)
        _check_model(self.build_model, space, data, self.loss)
        baselines = self._baselines(space)
        extra = dict(self.settings)
        if self.name not in BUILT_IN_TASKS:
            extra["loss"] = self.loss
        sizes = [len(split) for split in splits.values()]
        settings = study_settings(self.name, config, space, seed, warmup_epochs, sizes, **extra)
        return Task(self.name, data, space, config, self.build_model, settings, baselines)

    def _splits(self) -> dict[str, Data]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def _config(self) -> TrainConfig:
        if not isinstance(self.name, str) or not self.name.strip():
            raise UsageError(f"task name {self.name!r}: give a non-empty string")
        if self.loss not in LOSSES:
            raise UsageError(f"loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr {self.lr!r}: give a learning rate > 0")
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{name} {value!r}: give a whole number >= 1")
        return TrainConfig(self.optimizer, float(self.lr), self.batch_size, self.epochs, self.loss)

    def _space(self) -> SearchSpace:
        fixed: dict = {}
        ranges: dict = {}
        for name, value, log in (
            (DROPOUT, self.dropout, False),
            (WEIGHT_DECAY, self.weight_decay, True),
            (L1, self.l1, True),
        ):
            if isinstance(value, tuple | list):
                ranges[name] = _float_range(name, value, log)
            elif value is not None:
                fixed[name] = _fixed_value(name, value)
        if self.patience == "auto":
            ranges[PATIENCE] = (1, self.epochs)
        elif isinstance(self.patience, tuple | list):
            ranges[PATIENCE] = _patience_range(self.patience, self.epochs)
        elif self.patience is not None:
            fixed[PATIENCE] = _fixed_patience(self.patience)
        activations = self.activations
        if isinstance(activations, str):
            fixed[ACTIVATION] = _activation(activations)
            activations = ()
        activations = tuple(_activation(a) for a in activations or ())
        if len(set(activations)) != len(activations):
            raise UsageError(f"activations {list(activations)} name one twice: list each once")
        if len(activations) == 1:  # one choice is not a search: fix it
            fixed[ACTIVATION], activations = activations[0], ()
        space = SearchSpace(**ranges, activations=activations, fixed=fixed)
        if not space.searched:
            raise UsageError(
                "nothing to search: every regularizer is fixed or off; give a range, e.g. "
                "dropout=(0.0, 0.5), or two or more activations"
            )
        return space

    def _baselines(self, space: SearchSpace) -> dict[str, dict]:
        off = space.params_for(dropout=0.0)
        named = {
            name: _baseline_params(name, values, space) for name, values in self.baselines.items()
        }
        if off in named.values():
            return named
        return {"no regularization": off, **named}


def _float_range(name: str, bounds, log: bool) -> tuple[float, float]:
    if len(bounds) != 2 or not all(isinstance(b, int | float) for b in bounds):
        raise UsageError(f"{name} range {bounds!r}: give (low, high) as two numbers")
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UsageError(f"{name} range {bounds!r}: give finite numbers")
    if low > high:
        raise UsageError(f"{name} range ({low:g}, {high:g}): its low end is above its high end")
    if log and low <= 0:
        raise UsageError(
            f"{name} range ({low:g}, {high:g}) is searched on a log scale: its low end (which "
            "means off) must be > 0, e.g. 1e-6"
        )
    if log and low == high:
        raise UsageError(f"{name} range ({low:g}, {high:g}) is one value: fix it as {name}={low:g}")
    if name == DROPOUT and not 0.0 <= low <= high < 1.0:
        raise UsageError(f"dropout range ({low:g}, {high:g}): rates must lie in [0, 1)")
    return low, high


def _fixed_value(name: str, value) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise UsageError(f"{name}={value!r}: give (low, high), a number, or None")
    if value < 0 or (name == DROPOUT and value >= 1):
        bound = "in [0, 1)" if name == DROPOUT else ">= 0"
        raise UsageError(f"{name}={value!r}: the value must be {bound}")
    return float(value)


def _patience_range(bounds, epochs: int) -> tuple[int, int]:
    if len(bounds) != 2 or not all(isinstance(b, int) for b in bounds):
        raise UsageError(f"patience range {bounds!r}: give (low, high) as two whole numbers")
    low, high = bounds
    if low > high:
        raise UsageError(f"patience range ({low}, {high}): its low end is above its high end")
    if low < 1:
        raise UsageError(
            f"patience range ({low}, {high}): give 1 <= low <= high (high means no early stopping)"
        )
    return low, high


def _fixed_patience(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(
            f'patience={value!r}: give (low, high), a whole number >= 1, "auto" or None'
        )
    return value


def _activation(name) -> str:
    if name not in ACTIVATIONS:
        raise UsageError(f"activation {name!r}: choose from {', '.join(ACTIVATIONS)}")
    return name


def _baseline_params(name: str, values: Mapping, space: SearchSpace) -> dict:
    """A baseline's params: the given regularizers, the others off (their range's off end)."""
    params = space.params_for(dropout=0.0)
    for key, value in values.items():
        if key not in space.searched:
            raise UsageError(
                f"baseline {name!r} sets {key}, which is not searched: name one of "
                f"{', '.join(space.searched)}"
            )
        if key == ACTIVATION:
            inside = value in space.activations
        else:
            low, high = getattr(space, key)
            if key in (WEIGHT_DECAY, L1) and value == 0:
                value = low  # the low end is applied as off
            elif key == PATIENCE and value is None:
                value = high
            inside = isinstance(value, int | float) and low <= value <= high
        if not inside:
            allowed = space.activations if key == ACTIVATION else getattr(space, key)
            raise UsageError(
                f"baseline {name!r}: {key}={value!r} lies outside its search range {allowed}"
            )
        params[key] = value
    return params


def _split(name: str, data: Data, loss: str) -> Split:
    """One split as tensors: float64 as float32, targets as the loss wants them."""
    if isinstance(data, Dataset):
        inputs, targets = _read_dataset(name, data)
    elif isinstance(data, tuple | list) and len(data) == 2:
        inputs, targets = (torch.as_tensor(part) for part in data)
    else:
        raise UsageError(
            f"{name} data: give (inputs, targets) or a torch.utils.data.Dataset, "
            f"not {type(data).__name__}"
        )
    if len(inputs) != len(targets):
        raise UsageError(
            f"{name} data: {len(inputs)} inputs but {len(targets)} targets; give one target "
            "per input"
        )
    if len(inputs) == 0:
        raise UsageError(f"{name} data is empty")
    if inputs.dtype == torch.float64:
        inputs = inputs.float()
    if loss == "cross_entropy":
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise UsageError(
                f"{name} targets are {targets.dtype}: cross-entropy needs class indices "
                "(whole numbers 0 .. classes-1)"
            )
        if targets.ndim != 1:
            raise UsageError(
                f"{name} targets have shape {list(targets.shape)}: cross-entropy needs class "
                "indices of shape [N]"
            )
        targets = targets.long()
    else:
        targets = targets.float()
    for part, tensor in (("inputs", inputs), ("targets", targets)):
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise UsageError(f"{name} {part} hold {bad} NaN or infinite values: clean them")
    return Split(inputs, targets)


def _read_dataset(name: str, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The Dataset's (input, target) pairs stacked, once; refused if they would not fit."""
    try:
        n = len(dataset)
    except TypeError:
        raise UsageError(
            f"{name} data: the Dataset has no len(); give a map-style Dataset"
        ) from None
    if n == 0:
        raise UsageError(f"{name} data is empty")
    first = _pair(name, dataset, 0)
    need = n * sum(t.element_size() * t.numel() for t in first)
    free = _free_memory()
    if free is not None and need > free:
        raise UsageError(
            f"{name} data: {n:,} samples of {list(first[0].shape)} {first[0].dtype} need "
            f"{_gib(need)} of memory, more than the {_gib(free)} free; use a subset or a smaller "
            "dtype (e.g. uint8 images with a transform)"
        )
    pairs = [first, *(_pair(name, dataset, i) for i in range(1, n))]
    try:
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    except RuntimeError as error:
        raise UsageError(
            f"{name} data: samples differ in shape ({_first_line(error)}); give equal shapes"
        ) from None


def _pair(name: str, dataset: Dataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    item = dataset[index]
    if not (isinstance(item, tuple | list) and len(item) == 2):
        raise UsageError(f"{name} data: item {index} is not an (input, target) pair")
    return torch.as_tensor(item[0]), torch.as_tensor(item[1])


def _free_memory() -> int | None:
    """Bytes of memory available now (Linux), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
    return pages * os.sysconf("SC_PAGE_SIZE") if pages else None


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def _check_shapes(splits: dict[str, Split]) -> None:
    train = splits["train"]
    for name, split in splits.items():
        for part in ("inputs", "targets"):
            shape, expected = getattr(split, part).shape[1:], getattr(train, part).shape[1:]
            if shape != expected:
                raise UsageError(
                    f"{name} {part} have shape [N, {', '.join(map(str, shape))}] but train "
                    f"{part} [N, {', '.join(map(str, expected))}]: give every split the same"
                )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _build(build_model: Callable, regularizers: Regularizers, device: torch.device) -> nn.Module:
    try:
        model = build_model(regularizers)
    except Exception as error:
        raise UsageError(
            f"build_model({regularizers}) raised {_first_line(error)}: it must accept every "
            "value of the search ranges"
        ) from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"build_model returned {type(model).__name__}, not a torch nn.Module")
    return model.to(device)


def _output(model: nn.Module, x: torch.Tensor, train: bool) -> torch.Tensor:
    model.train(train)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as error:
        raise UsageError(
            f"the model raised {_first_line(error)} on a batch of inputs of shape "
            f"{list(x.shape)}: make it accept the data's inputs"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise UsageError(f"the model returned {type(out).__name__}, not a tensor")
    return out


def _check_model(build_model: Callable, space: SearchSpace, data: TaskData, loss: str) -> None:
    """Build and run the model on a few samples: its output must fit the loss and the targets,
    and it must use the dropout rate and the activation it is given (same seed, same batch,
    other output), else the search would tune a knob that moves nothing."""
    device = data.train.inputs.device
    x = data.transform(data.train.inputs[:_PROBE])
    y = data.train.targets[:_PROBE]
    reference = space.regularizers(space.params_for(dropout=0.0))

    def output(regularizers: Regularizers, train: bool) -> torch.Tensor:
        torch.manual_seed(0)  # the same weights and dropout masks for every variant
        return _output(_build(build_model, regularizers, device), x, train)

    cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        out = output(reference, train=False)
        _check_output(out, y, data, loss)
        if space.dropout is not None and space.dropout[1] > 0:
            high = replace(reference, dropout=space.dropout[1])
            if torch.equal(output(reference, True), output(high, True)):
                raise UsageError(
                    f"the model ignores the dropout rate: dropout={space.dropout[1]:g} and 0 "
                    "give the same training output; use reg.dropout in build_model(reg), "
                    "or set dropout=None"
                )
        for name in space.activations:
            if name == reference.activation:
                continue
            other = replace(reference, activation=name)
            if torch.equal(out, output(other, False)):
                raise UsageError(
                    f"the model ignores the activation: {name} and {reference.activation} give "
                    "the same output; use reg.activation in build_model(reg), or "
                    "set activations=None"
                )


def _check_output(out: torch.Tensor, y: torch.Tensor, data: TaskData, loss: str) -> None:
    if loss == "mse":
        if out.shape != y.shape:
            raise UsageError(
                f"the model outputs shape {list(out.shape)} for targets of shape "
                f"{list(y.shape)}: MSE needs the same shape (reshape the targets or the output)"
            )
        return
    if out.ndim != 2 or out.shape[0] != len(y) or out.shape[1] < 2:
        raise UsageError(
            f"the model outputs shape {list(out.shape)} for {len(y)} inputs: cross-entropy "
            "needs logits of shape [N, classes], classes >= 2"
        )
    classes = out.shape[1]
    for name, split in zip(
        ("train", "val", "test"), (data.train, data.val, data.test), strict=True
    ):
        low, high = int(split.targets.min()), int(split.targets.max())
        if low < 0 or high >= classes:
            raise UsageError(
                f"{name} labels run from {low} to {high} but the model outputs {classes} "
                f"classes: labels must lie in 0 .. {classes - 1}"
            )
