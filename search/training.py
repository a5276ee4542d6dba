"""One training run: batches sliced from tensors, L1/L2 penalties, early stopping.

Optuna stays out of this module; the objective hooks in through `on_epoch`, which may raise
(optuna.TrialPruned) to end the run.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from search.memory import keep_freed_memory

Transform = Callable[[torch.Tensor], torch.Tensor]


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class Split:
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device) -> "Split":
        return Split(self.inputs.to(device), self.targets.to(device))


@dataclass(frozen=True)
class TaskData:
    """Train, validation and test splits, on the device they will be trained on.

    `transform` turns stored inputs into model inputs per batch, so that CIFAR-10 images stay
    uint8 in memory (4x smaller, one copy) and are normalized only when a batch is used.
    """

    train: Split
    val: Split
    test: Split
    transform: Transform = identity


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str  # "adam" or "sgd"
    lr: float
    batch_size: int
    epochs: int
    loss: str  # "cross_entropy" or "mse"
    weight_decay: float = 0.0
    l1: float = 0.0
    patience: int | None = None  # epochs without improvement before stopping; None: never
    eval_batch_size: int = 1024


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float | None


@dataclass
class TrainResult:
    best: EpochStats | None = None
    history: list[EpochStats] = field(default_factory=list)
    stopped_early: bool = False
    diverged: bool = False
    seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.history)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float | None


def data_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "cross_entropy":
        return F.cross_entropy(outputs, targets)
    if loss == "mse":
        return F.mse_loss(outputs, targets)
    raise ValueError(f"unknown loss {loss!r}")


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Σ|w| over weights and kernels only: penalizing biases shifts outputs, not capacity."""
    return sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


def l1_ceiling(model: nn.Module, chance_loss: float, share: float = 0.25) -> float:
    """The L1 strength λ at which λ·Σ|w| of `model` at initialization is `share` of the loss
    of guessing (`chance_loss`, e.g. ln 10 for CIFAR-10).

    A fixed range ignores the model's size: Σ|w| of the CIFAR-10 CNN at initialization is
    about 2e4, so λ = 1e-3 adds 20 to a loss of 2.3 and the network never leaves chance. In
    the CIFAR-10 curve bank (sigmoid aside) every run with λ·Σ|w| up to a third of ln 10
    learned; of the 29 above it, 12 stayed at chance and none reached a validation loss below
    1.03, where the best runs reach 0.95 (docs/default-search.md).
    """
    with torch.no_grad():
        return share * chance_loss / float(l1_penalty(model))


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    split: Split,
    loss: str,
    transform: Transform = identity,
    batch_size: int = 1024,
) -> Evaluation:
    model.eval()
    # Sums stay on the device and are read once: an .item() per batch stalls a GPU each time.
    total_loss = torch.zeros((), device=split.targets.device)
    correct = torch.zeros((), dtype=torch.long, device=split.targets.device)
    for start in range(0, len(split), batch_size):
        x = transform(split.inputs[start : start + batch_size])
        y = split.targets[start : start + batch_size]
        out = model(x)
        total_loss += data_loss(out, y, loss).float() * len(y)
        if loss == "cross_entropy":
            correct += (out.argmax(dim=1) == y).sum()
    n = len(split)
    return Evaluation(
        total_loss.item() / n, correct.item() / n if loss == "cross_entropy" else None
    )


def snapshot(model: nn.Module, into: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Copy the model's weights into `into` (allocated on the first call) and return it.

    Reusing one set of buffers costs a plain copy per improving epoch, where deepcopy of the
    state dict allocated fresh tensors (and walked Python objects) every time.
    """
    state = model.state_dict()
    if into is None:
        return {name: tensor.detach().clone() for name, tensor in state.items()}
    for name, tensor in state.items():
        into[name].copy_(tensor)
    return into


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        # The fused kernel updates all parameters in one pass, the same update rule: more
        # CIFAR-10 images/s on a CPU (docs/speed.md), fewer kernel launches on a GPU.
        fused = next(model.parameters()).device.type in ("cpu", "cuda") or None
        return torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused
        )
    if config.optimizer == "sgd":
        # Not fused: for the linear task's 200 weights it is no faster (docs/speed.md).
        return torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def train(
    model: nn.Module,
    data: TaskData,
    config: TrainConfig,
    seed: int,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train, keep the weights of the best validation epoch, and load them back at the end.

    The train loss of an epoch is measured in eval mode on a fixed slice of the training set as
    large as the validation set, so that it compares with the validation loss (the running loss
    of the batches has dropout on and lags behind the weights).
    """
    started = time.perf_counter()
    keep_freed_memory()  # here, so that every process that trains has it, however started
    device = data.train.inputs.device
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = make_optimizer(model, config)
    train_probe = Split(data.train.inputs[: len(data.val)], data.train.targets[: len(data.val)])
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    epochs_without_improvement = 0
    n = len(data.train)

    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = data_loss(
                model(data.transform(data.train.inputs[idx])), data.train.targets[idx], config.loss
            )
            if config.l1:
                loss = loss + config.l1 * l1_penalty(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        val = evaluate(model, data.val, config.loss, data.transform, config.eval_batch_size)
        train_eval = evaluate(
            model, train_probe, config.loss, data.transform, config.eval_batch_size
        )
        stats = EpochStats(epoch, train_eval.loss, val.loss, val.accuracy)
        if not (math.isfinite(stats.val_loss) and math.isfinite(stats.train_loss)):
            result.diverged = True
            break
        result.history.append(stats)
        if result.best is None or stats.val_loss < result.best.val_loss:
            result.best = stats
            best_state = snapshot(model, best_state)
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        if on_epoch is not None:
            on_epoch(stats)
        if config.patience is not None and epochs_without_improvement >= config.patience:
            result.stopped_early = epoch < config.epochs
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return result
