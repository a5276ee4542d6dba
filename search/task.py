"""What a task gives the search: its data, model, fixed training settings and search space."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

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

    @property
    def classification(self) -> bool:
        return self.config.loss == "cross_entropy"

    def train_config(self, regularizers: Regularizers) -> TrainConfig:
        return replace(
            self.config,
            weight_decay=regularizers.weight_decay,
            l1=regularizers.l1,
            patience=regularizers.patience,
        )
