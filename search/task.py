"""What a task gives the search: its data, model, fixed training settings and search space."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from search.config import SearchConfig
from search.errors import UsageError
from search.metrics import Metric, metric_for
from search.space import Regularizers, SearchSpace
from search.training import TaskData, TrainConfig


@dataclass(frozen=True)
class Task:
    name: str
    data: TaskData
    space: SearchSpace
    config: TrainConfig  # fixed settings; the regularizers of a trial are filled in
    build_model: Callable[[Regularizers], nn.Module]
    # Everything that makes two trials comparable; stored on the study and checked on resume.
    settings: dict = field(default_factory=dict)
    # Named configurations measured beside the search: {"no regularization": params, ...}.
    baselines: dict[str, dict] = field(default_factory=dict)
    # The validation loss of guessing (ln C for C classes): a trial still there after its
    # first epoch is stopped (objective.at_chance). None: never.
    chance_loss: float | None = None
    # Where a task file's task came from, to rebuild it (search/task_file.py); None: built in.
    source: dict | None = None

    @property
    def classification(self) -> bool:
        return self.config.loss == "cross_entropy"

    @property
    def metric(self) -> Metric:
        return metric_for(self.settings)

    def train_config(self, regularizers: Regularizers) -> TrainConfig:
        return replace(
            self.config,
            weight_decay=regularizers.weight_decay,
            l1=regularizers.l1,
            patience=regularizers.patience,
        )


# What builds a search's task from its config, in the command's process and again in every
# --jobs worker: picklable (a module-level function, or a functools.partial of one that holds
# the task's own flags, e.g. search.tasks.cifar.CifarOptions).
TaskBuilder = Callable[[SearchConfig], Task]


def study_settings(
    name: str,
    config: TrainConfig,
    space: SearchSpace,
    seed: int,
    warmup: int,
    split_sizes: list[int],
    **extra,
) -> dict:
    """What makes two trials of a task comparable: `Task.settings`, stored on the study.

    `seed` is the search's (data split, sampler, trials), `warmup` the pruner's warm-up epochs.
    """
    return {
        "task": name,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "seed": seed,
        "split_sizes": split_sizes,
        **extra,
        "warmup_epochs": warmup,
        "space": space.to_dict(),
    }


def resolve_device(name: str) -> torch.device:
    """--device: auto picks cuda when a GPU is visible."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
    return torch.device(name)
