"""A search's configuration: one frozen object, made once from the flags or the Python API.

The workers, the study and the objective read its fields; a task's own flags (CIFAR-10's data
and sizes, the linear task's --hidden, search.run's --task) stay with that task's builder
(search/task.py TaskBuilder). docs/design.md follows a search from the command to a trial.
"""

import argparse
import time
from dataclasses import dataclass, field, fields

from search.errors import UsageError

SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("median", "percentile", "successive-halving", "hyperband", "predictive", "none")
# A task file's training length unless its TaskSpec says otherwise; here, not in search/spec.py,
# so that `python -m search.run --help` shows them without importing torch.
TASK_EPOCHS, TASK_BATCH_SIZE = 10, 32


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """The search flags of search/flags.py under their Python names, checked and resolved.

    Raises UsageError for flags that contradict each other (--grace-period not above
    --heartbeat-interval, --warmup-epochs above --epochs).
    """

    storage: str = field(repr=False)  # study database URL; not in the repr: it may hold a password
    study_name: str  # the study to create or resume in the storage
    trials: int  # finished trials (complete, pruned or failed) the study should hold in all
    epochs: int  # training epochs per trial
    batch_size: int  # training batch size
    seed: int  # seeds the sampler of worker 0, the data split and each trial's training
    device: str  # "auto", "cpu" or "cuda", as --device; the task resolves it
    sampler: str  # one of SAMPLERS
    start_trials: int  # Latin hypercube trials a new study starts with; 0: the sampler's own
    sampler_history: int  # finished trials tpe and gp learn from at most; 0: all
    pruned_as: str  # how the sampler sees a pruned trial: one of search.pruning.PRUNED_VIEWS
    pruner: str  # one of PRUNERS
    warmup_epochs: int  # epochs before the pruner may stop a trial (--warmup-epochs, resolved)
    jobs: int  # worker processes on this machine
    fuse: int | None  # trials one worker trains at once; None: the device's default
    worker_id: int | None  # seeds this worker's sampler; None: the next id the study hands out
    heartbeat_interval: int  # seconds between a running trial's heartbeats
    grace_period: int  # seconds without a heartbeat after which a trial's worker is dead
    timeout: float | None  # seconds after started_at when no trial starts any more; None: never
    # When the search started (time.time()): --timeout counts from it in this process and in
    # every --jobs worker, which gets this object pickled.
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.grace_period <= self.heartbeat_interval:
            raise UsageError(
                f"--grace-period {self.grace_period} must be above --heartbeat-interval "
                f"{self.heartbeat_interval}: a live worker's trial would be failed between two "
                f"heartbeats; use e.g. --grace-period {4 * self.heartbeat_interval}"
            )
        if self.warmup_epochs > self.epochs:
            raise UsageError(
                f"--warmup-epochs {self.warmup_epochs} is more than --epochs {self.epochs}: "
                "pruning would never start; lower it, or use --pruner none"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SearchConfig":
        """The config of flags parsed by a search.flags.make_parser parser; started now.

        The task's own flags in `args` are left to its builder. Raises UsageError as the
        constructor does.
        """
        flags = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "started_at"}
        return cls(**flags | {"warmup_epochs": _warmup_epochs(args)})


def _warmup_epochs(args: argparse.Namespace) -> int:
    """--warmup-epochs, or the task's default share of --epochs for the --pruner, at least 1."""
    if args.warmup_epochs is not None:
        return args.warmup_epochs
    divisors = args.warmup_divisors
    return max(1, args.epochs // divisors.get(args.pruner, divisors["other"]))
