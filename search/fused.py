"""Fused training: K independent training runs of one task in one set of batched tensors.

Each slot is one run with its own regularizers, seed, data order, dropout masks, optimizer
state and best-epoch weights, trained exactly as `search.training.train` would train it alone:

- its weights are built by the task under `torch.manual_seed(seed)`, and its dropout masks
  drawn from a generator that continues from there, where `train` draws them from the global
  generator; its batch order comes from a generator seeded with `seed`, as in `train`;
- a Linear layer of all slots is one batched matmul, a Conv2d one grouped convolution, a
  layer without parameters (activation, pooling) runs once for all slots where they agree and
  per slot where they do not (each slot keeps its own activation, and the CNN pools before a
  monotone activation);
- the loss is the sum of the slots' mean losses (plus each slot's L1 on its weights only), so
  a slot's gradient is what it would be alone, and a NaN in one slot reaches no other;
- coupled L2 and the optimizer step are applied per slot as torch.optim.SGD / Adam apply
  `weight_decay` (grad + λ·w, then the step), with a step count per slot for Adam's bias
  correction, so that a slot refilled with a new run starts as a fresh optimizer would.

On a CPU a slot reproduces `train` bit for bit for the linear task (tests/search/test_fused.py);
Adam here is the textbook single-tensor update where `train` uses torch's fused kernel, which
rounds differently in the last bits.

Optuna stays out of this module: search/fused_worker.py runs trials in the slots.
"""

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.activations import ACTIVATIONS
from models.cnn import CifarCNN
from models.linear import LinearRegressor
from search.space import Regularizers
from search.task import Task
from search.training import EpochStats, Evaluation, TrainResult, data_loss, evaluate

_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which `train` uses
_PARAMETERIZED = (nn.Linear, nn.Conv2d)
# Layers without parameters or state that treat each sample alone: they run on all slots'
# samples as one batch. Any other (a BatchNorm without affine weights mixes the slots' batch
# statistics, its running statistics are state) is refused.
_PER_SAMPLE = (nn.Flatten, nn.MaxPool2d, nn.AvgPool2d, nn.Identity, *ACTIVATIONS.values())


def why_unfusable(model: nn.Module) -> str | None:
    """None when fused training can run `model`: a model whose forward applies its leaf modules
    one after the other (nn.Sequential, the project's LinearRegressor and CifarCNN), of kinds
    it knows. Else why not, as a phrase about the model ("is a ResNet, with its own forward");
    such a model (a residual block, a class with its own forward) trains unfused."""
    if not isinstance(model, (nn.Sequential, LinearRegressor, CifarCNN)):
        return f"is a {type(model).__name__}, with its own forward"
    try:
        _layers(model)
    except ValueError as error:
        return str(error)
    return None


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules in the order its forward applies them, with their names.

    The project's models (LinearRegressor, CifarCNN) apply their children in registration
    order; a module this interpreter does not know is refused rather than guessed at.
    """
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    for name, module in leaves:
        if type(module) not in (*_PARAMETERIZED, nn.Dropout, *_PER_SAMPLE):
            raise ValueError(f"has layer {name!r}, a {type(module).__name__}")
    return leaves


@dataclass
class Slot:
    """One run in a fused batch: its settings, generators and progress."""

    regularizers: Regularizers
    seed: int
    model: nn.Module  # built at the slot's seed: its structure, and the home of its best weights
    layers: list[tuple[str, nn.Module]]  # the model's, as `_layers` lists them
    order: torch.Generator  # batch order, as `train`'s generator
    masks: torch.Generator  # dropout masks, continuing the global generator after the build
    started: float = field(default_factory=time.perf_counter)
    result: TrainResult = field(default_factory=TrainResult)
    without_improvement: int = 0
    epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    @property
    def patience(self) -> int | None:
        return self.regularizers.patience


class FusedTrainer:
    """K slots of one task trained in lockstep, an epoch at a time; slots are refilled between
    epochs with `start(k, regularizers, seed)` and emptied with `stop(k)`.

    Parameters are stacked per slot: a layer's weight of shape S becomes [K, *S].
    """

    def __init__(self, task: Task, slots: int) -> None:
        self.task, self.k = task, slots
        self.data = task.data
        self.device = self.data.train.inputs.device
        self.config = task.config
        template = task.build_model(Regularizers()).to(self.device)
        self.names = [name for name, _ in template.named_parameters()]
        self.params = [
            torch.zeros((slots, *p.shape), device=self.device, requires_grad=True)
            for p in template.parameters()
        ]
        self.index = {name: i for i, name in enumerate(self.names)}
        # Weights and kernels (not biases) carry the L1 penalty, as in training.l1_penalty.
        self.weights = [i for i, p in enumerate(template.parameters()) if p.ndim > 1]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(slots, dtype=torch.float64)
        self.slots: list[Slot | None] = [None] * slots
        n_probe = len(self.data.val)
        self.train_probe = type(self.data.train)(
            self.data.train.inputs[:n_probe], self.data.train.targets[:n_probe]
        )

    def numel(self) -> int:
        """Parameters of all slots together."""
        return sum(p.numel() for p in self.params)

    # -- slots ------------------------------------------------------------------------------

    def start(self, k: int, regularizers: Regularizers, seed: int) -> Slot:
        """Put a fresh run in slot `k`: weights as the task builds them at `seed`, optimizer
        state zero, its generators seeded as `train` seeds them."""
        torch.manual_seed(seed)
        model = self.task.build_model(regularizers).to(self.device)
        masks = torch.Generator(device=self.device)
        masks.set_state(
            torch.get_rng_state()
            if self.device.type == "cpu"
            else torch.cuda.get_rng_state(self.device)
        )
        with torch.no_grad():
            for stacked, p, avg, avg_sq in zip(
                self.params, model.parameters(), self.exp_avg, self.exp_avg_sq, strict=True
            ):
                stacked[k].copy_(p)
                avg[k].zero_()
                avg_sq[k].zero_()
        self.steps[k] = 0
        slot = Slot(
            regularizers,
            seed,
            model,
            _layers(model),  # refuses a model the interpreter cannot run, before it trains
            torch.Generator(device=self.device).manual_seed(seed),
            masks,
        )
        self.slots[k] = slot
        return slot

    def stop(self, k: int) -> None:
        self.slots[k] = None

    @property
    def active(self) -> list[int]:
        return [k for k, slot in enumerate(self.slots) if slot is not None]

    # -- the batched model ------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """x: [K, B, ...] (slot k's inputs at x[k]) → outputs [K, B, ...]."""
        slot_layers = [slot.layers if slot is not None else None for slot in self.slots]
        reference = next(layers for layers in slot_layers if layers is not None)
        position = 0
        while position < len(reference):
            name, module = reference[position]
            if isinstance(module, nn.Linear):
                weight = self.params[self.index[f"{name}.weight"]]  # [K, out, in]
                flat = x.reshape(self.k, -1, x.shape[-1])
                y = torch.bmm(flat, weight.transpose(1, 2))
                if module.bias is not None:
                    y = y + self.params[self.index[f"{name}.bias"]].unsqueeze(1)
                x = y.reshape(*x.shape[:-1], y.shape[-1])
            elif isinstance(module, nn.Conv2d):
                x = self._conv(x, name, module)
            elif isinstance(module, nn.Dropout):
                if train:
                    x = self._dropout(x)
            else:
                end = position
                while end < len(reference) and not isinstance(
                    reference[end][1], (*_PARAMETERIZED, nn.Dropout)
                ):
                    end += 1
                x = self._per_slot(x, slot_layers, position, end)
                position = end
                continue
            position += 1
        return x

    def _conv(self, x: torch.Tensor, name: str, module: nn.Conv2d) -> torch.Tensor:
        """All slots' kernels as one grouped convolution over their channels side by side."""
        k, b, c, h, w = x.shape
        weight = self.params[self.index[f"{name}.weight"]]
        bias = self.params[self.index[f"{name}.bias"]] if module.bias is not None else None
        grouped = x.transpose(0, 1).reshape(b, k * c, h, w)
        y = F.conv2d(
            grouped,
            weight.reshape(-1, *weight.shape[2:]),
            None if bias is None else bias.reshape(-1),
            module.stride,
            module.padding,
            module.dilation,
            groups=k,
        )
        return y.reshape(b, k, -1, *y.shape[2:]).transpose(0, 1)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Each slot's inputs times its own mask at its own rate, drawn as F.dropout draws
        on a CPU (bernoulli(1 - p) / (1 - p)); a rate of 0 draws nothing, as F.dropout."""
        masks = []
        for k, slot in enumerate(self.slots):
            p = 0.0 if slot is None else slot.regularizers.dropout
            if p == 0.0:
                masks.append(torch.ones_like(x[k]))
            else:
                mask = torch.empty_like(x[k]).bernoulli_(1 - p, generator=slot.masks)
                masks.append(mask.div_(1 - p))
        return x * torch.stack(masks)

    def _per_slot(self, x: torch.Tensor, slot_layers: list, start: int, end: int) -> torch.Tensor:
        """A run of layers without parameters (activation, pooling, flatten), positions
        start..end-1: once for all slots where they agree, else each slot's own (a CNN slot
        with a monotone activation pools first, one with GELU after it)."""

        def run(layers: list[tuple[str, nn.Module]], y: torch.Tensor) -> torch.Tensor:
            for _, module in layers[start:end]:
                y = module(y)
            return y

        first = next(layers for layers in slot_layers if layers is not None)
        signature = repr([m for _, m in first[start:end]])
        own = [layers if layers is not None else first for layers in slot_layers]
        if all(repr([m for _, m in layers[start:end]]) == signature for layers in own):
            return run(first, x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return torch.stack([run(layers, x[k]) for k, layers in enumerate(own)])

    # -- one epoch --------------------------------------------------------------------------

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each slot's mean data loss: [K]. Per slot, with the loss `train` uses, so that its
        value and gradient round alike (K small calls, next to a batched model)."""
        return torch.stack(
            [data_loss(out, y, self.config.loss) for out, y in zip(outputs, targets, strict=True)]
        )

    def _regularizer(self, name: str) -> torch.Tensor:
        values = [
            0.0 if slot is None else float(getattr(slot.regularizers, name)) for slot in self.slots
        ]
        return torch.tensor(values, device=self.device)

    def train_epoch(self) -> dict[int, EpochStats | None]:
        """Train every active slot one epoch and measure it; its stats by slot (None: its
        loss became NaN or infinite, as `train` reports a diverged run)."""
        active = self.active
        n = len(self.data.train)
        orders = torch.stack(
            [
                torch.randperm(n, device=self.device, generator=slot.order)
                if slot is not None
                else torch.arange(n, device=self.device)
                for slot in self.slots
            ]
        )
        l1 = self._regularizer("l1")
        decay = self._regularizer("weight_decay")
        inputs, targets = self.data.train.inputs, self.data.train.targets
        for start in range(0, n, self.config.batch_size):
            idx = orders[:, start : start + self.config.batch_size]
            x = self.data.transform(inputs[idx.flatten()]).unflatten(0, idx.shape)
            losses = self._loss(self._forward(x, train=True), targets[idx])
            if bool(l1.any()):
                norms = sum(self.params[i].abs().flatten(1).sum(1) for i in self.weights)
                losses = losses + l1 * norms
            # Only the slots holding a run count; an empty slot's values never reach the loss.
            loss = losses[active].sum()
            for p in self.params:
                p.grad = None
            loss.backward()
            self._step(decay)
        return self.measure()

    @torch.no_grad()
    def _step(self, decay: torch.Tensor) -> None:
        """One SGD or Adam step of every slot, with its coupled L2 (grad + λ·w)."""
        lr = self.config.lr
        self.steps += 1
        for p, avg, avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            shape = (self.k,) + (1,) * (p.ndim - 1)
            grad = p.grad
            if bool(decay.any()):
                grad = grad.clone()
                for k, value in enumerate(decay.tolist()):
                    if value:  # as the optimizers add it: grad.add(param, alpha=λ)
                        grad[k].add_(p[k], alpha=value)
            if self.config.optimizer == "sgd":
                p.add_(grad, alpha=-lr)
            elif self.config.optimizer == "adam":
                beta1, beta2 = _BETAS
                avg.lerp_(grad, 1 - beta1)
                avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                steps = self.steps.to(p.device)
                correction1 = (1 - beta1**steps).to(p.dtype).view(shape)
                correction2 = (1 - beta2**steps).sqrt().to(p.dtype).view(shape)
                denom = (avg_sq.sqrt() / correction2).add_(_EPS)
                p.sub_(lr / correction1 * avg / denom)
            else:
                raise ValueError(f"unknown optimizer {self.config.optimizer!r}")

    @torch.no_grad()
    def _evaluate(self, split) -> list[Evaluation]:
        """Every slot's loss (and accuracy) on a split, as training.evaluate measures one."""
        batch = self.config.eval_batch_size
        total = torch.zeros(self.k, device=self.device)
        correct = torch.zeros(self.k, device=self.device)
        for start in range(0, len(split), batch):
            x = self.data.transform(split.inputs[start : start + batch])
            y = split.targets[start : start + batch]
            out = self._forward(x.unsqueeze(0).expand(self.k, *x.shape).contiguous(), train=False)
            total += self._loss(out, y.unsqueeze(0).expand(self.k, *y.shape)).float() * len(y)
            if self.config.loss == "cross_entropy":
                correct += (out.argmax(dim=-1) == y).sum(dim=1)
        n = len(split)
        classification = self.config.loss == "cross_entropy"
        return [
            Evaluation(float(loss) / n, float(c) / n if classification else None)
            for loss, c in zip(total.tolist(), correct.tolist(), strict=True)
        ]

    def measure(self) -> dict[int, EpochStats | None]:
        """Validation and train-probe loss of every active slot after an epoch; keeps each
        slot's best weights and counts its epochs without improvement."""
        val = self._evaluate(self.data.val)
        probe = self._evaluate(self.train_probe)
        stats: dict[int, EpochStats | None] = {}
        for k in self.active:
            slot = self.slots[k]
            slot.epoch += 1
            epoch = EpochStats(slot.epoch, probe[k].loss, val[k].loss, val[k].accuracy)
            if not (math.isfinite(epoch.val_loss) and math.isfinite(epoch.train_loss)):
                slot.result.diverged = True
                stats[k] = None
                continue
            slot.result.history.append(epoch)
            if slot.result.best is None or epoch.val_loss < slot.result.best.val_loss:
                slot.result.best = epoch
                slot.best_state = self._weights(k)
                slot.without_improvement = 0
            else:
                slot.without_improvement += 1
            stats[k] = epoch
        return stats

    def _weights(self, k: int) -> dict[str, torch.Tensor]:
        pairs = zip(self.names, self.params, strict=True)
        return {name: p[k].detach().clone() for name, p in pairs}

    def out_of_patience(self, k: int) -> bool:
        """Whether slot k has gone its patience without improving (`train` stops it there)."""
        slot = self.slots[k]
        return slot.patience is not None and slot.without_improvement >= slot.patience

    def finish(self, k: int) -> Evaluation | None:
        """Slot k's best-epoch weights on the test set (None if it never had a finite epoch);
        its seconds are set on its result."""
        slot = self.slots[k]
        slot.result.seconds = time.perf_counter() - slot.started
        if slot.best_state is None:
            return None
        slot.model.load_state_dict(slot.best_state)
        return evaluate(
            slot.model,
            self.data.test,
            self.config.loss,
            self.data.transform,
            self.config.eval_batch_size,
        )
