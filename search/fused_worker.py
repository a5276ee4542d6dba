"""A fused worker (`--fuse K`): one process trains up to K trials of the study at once.

Each slot of the fused trainer (search/fused.py) holds an ordinary Optuna trial, asked from the
study and told its end, with what `Worker` and the objective (search/objective.py) give an
unfused trial: the same params and seed (objective.training_seed), a validation loss every epoch,
the pruner asked at the same epochs, the chance stop, the test measured at the best epoch, the
same user attributes, a heartbeat, and the same count of --trials under the database lock.

What `study.optimize` did for one trial this worker does for every slot:
- a trial is asked only under the lock and only while the study has room (Worker._full), so
  fused and unfused workers of one study keep its exact --trials total;
- one thread records a heartbeat for every running trial; a killed worker's trials go stale
  and the next worker fails and re-runs them, as an unfused worker's;
- an epoch's values of all slots are written in one transaction (on SQLite each `trial.report`
  is a transaction of its own, 7.7 ms, most of a linear-task epoch); the pruner is asked only
  at the epochs where it may prune (objective.asks_pruner);
- a slot whose trial ended, was pruned, diverged or was ended elsewhere (another worker's stale
  check, a person in optuna-dashboard) is refilled with a new trial at the epoch boundary;
- Ctrl-C/SIGTERM fails the running trials, saying why; finished trials are already told;
- --timeout stops asking for trials; the running ones finish.
"""

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import optuna
import torch
from optuna.trial import TrialState

from search.attrs import (
    APPLIED_ATTR,
    AT_CHANCE_ATTR,
    EPOCHS_RUN_ATTR,
    FAIL_REASON_ATTR,
    TRAIN_CURVE_ATTR,
)
from search.config import SearchConfig
from search.errors import UsageError
from search.fused import FusedTrainer, why_unfusable
from search.interrupts import INTERRUPTED, Interruptible
from search.objective import (
    RunOutcome,
    asks_pruner,
    diverged_reason,
    error_reason,
    starts_the_study,
    stuck_at_chance,
    training_seed,
)
from search.progress import TrialLine
from search.space import Regularizers
from search.study import StudySnapshot
from search.task import Task
from search.training import EpochStats
from search.trial_queries import report_together
from search.workers import Step, Worker

# Parameters of all slots below which a fused worker on a CPU trains on one thread.
SMALL_MODEL = 100_000
# Slots per process when --fuse is not given (docs/fused.md): 8 on a GPU, the largest K that
# search.tools.simulate finds costs the answer nothing. On a CPU 4, but only while the 4 slots
# together stay a SMALL_MODEL: there a 50-trial linear search measured 1.4-1.5x faster fused
# (200 and 12,900 parameters), 1.1x at 51,000 parameters a model, and the CNN ran at 0.4x of
# as many processes.
GPU_FUSE = 8
CPU_FUSE = 4


def default_fuse(device: str, model_parameters: int) -> int:
    """--fuse when not given, for a model of `model_parameters` on `device` ("cuda", "cpu"...):
    8 on a GPU, 4 for a small model on a CPU, else 1."""
    if device == "cuda":
        return GPU_FUSE
    if device == "cpu" and CPU_FUSE * model_parameters < SMALL_MODEL:
        return CPU_FUSE
    return 1


def fuse_slots(task: Task, config: SearchConfig) -> int:
    """The trials one worker of this search trains at once: --fuse, or the device's default
    (1 for a model that fused training cannot run), never more than --trials: a slot that no
    trial can fill still costs its model's memory and compute every epoch (--trials 5 --fuse
    100000 took 3.6 GB and 83 s an epoch).

    Raises UsageError for --fuse above 1 with such a model.
    """
    model = task.build_model(Regularizers())
    unfusable = why_unfusable(model)
    if config.fuse is not None:
        if config.fuse > 1 and unfusable:
            raise UsageError(
                f"--fuse {config.fuse}: the {task.name} model {unfusable}, and fused training "
                "runs only a chain of Linear, Conv2d, Dropout, activation, pooling and Flatten "
                "layers (docs/fused.md); use --fuse 1"
            )
        return min(config.fuse, config.trials)
    if unfusable:
        return 1
    parameters = sum(p.numel() for p in model.parameters())
    return min(default_fuse(task.data.train.inputs.device.type, parameters), config.trials)


@dataclass
class _Running:
    """A slot's trial between its epochs."""

    trial: optuna.Trial
    prunable: bool  # baselines and the start design are never pruned nor stopped at chance
    curve: list[float] = field(default_factory=list)


class _RunningTrials:
    """The trials in the slots, as `Interruptible` sees "the trial": a Ctrl-C during an epoch
    says why on each of them."""

    def __init__(self, worker: "FusedWorker") -> None:
        self.worker = worker

    def set_user_attr(self, key: str, value: object) -> None:
        for run in self.worker.running.values():
            _set_attr(run.trial, key, value)


def _set_attr(trial: optuna.Trial, key: str, value: object) -> None:
    # A trial ended elsewhere meanwhile refuses it; the worker finds out at the next write.
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr(key, value)


class FusedWorker(Worker):
    """A worker whose process trains up to `slots` trials at once."""

    def __init__(self, task: Task, config: SearchConfig, progress, slots: int) -> None:
        super().__init__(task, config, progress)
        self.trainer = FusedTrainer(task, slots)
        self.running: dict[int, _Running] = {}  # slot -> its trial
        self.snapshot: StudySnapshot | None = None
        self.epochs = task.config.epochs
        # When the study last had no room: its checks under the lock cost 4x a linear epoch, so
        # with slots left empty at the end of a search they run once a heartbeat, not an epoch.
        self.found_full = -math.inf
        self.train_epoch = Interruptible(lambda _: self.trainer.train_epoch(), self.gate)

    def run(self) -> None:
        with self.gate.installed(), self._heartbeats(), self._torch_threads():
            try:
                while True:
                    self.gate.raise_if_requested()
                    self._fill()
                    if not self.running:
                        if self._past_deadline() or self._idle() == Step.DONE:
                            return
                        time.sleep(self.storage.heartbeat_interval or 1)
                        continue
                    self._epoch()
            except KeyboardInterrupt:
                stopped = [run.trial._trial_id for run in self.running.values()]
                # No trial line each, as an unfused stop: the stop line names them.
                self._fail_all(f"{INTERRUPTED} ({self.gate.name})", shown=False)
                self.run_again_later(stopped)
                raise

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline

    def _idle(self) -> Step:
        """With every slot empty: DONE when the study is, else WAIT for the running trials."""
        with self.lock:
            full = self._full()
        return Step.RAN if full is None else full

    # -- trials in and out of the slots -----------------------------------------------------

    def _fill(self) -> None:
        """Ask a trial for every empty slot while the study has room (under the lock)."""
        empty = [k for k in range(self.trainer.k) if k not in self.running]
        if not empty or self._past_deadline():
            return
        if time.time() - self.found_full < (self.storage.heartbeat_interval or 1):
            return
        asked = []
        with self.lock:
            for k in empty:
                if self._full() is not None:
                    self.found_full = time.time()
                    break
                if self._past_deadline():
                    break
                trial = self.study.ask()
                self.storage.record_heartbeat(trial._trial_id)  # RUNNING and alive from now
                asked.append((k, trial))
        for k, trial in asked:
            self._start(k, trial)

    def _start(self, k: int, trial: optuna.Trial) -> None:
        space = self.task.space
        params = space.suggest(trial)
        trial.set_user_attr(APPLIED_ATTR, space.describe(params))
        self.progress.trial_started(trial.number, time.time())
        seed = training_seed(self.config.seed, trial)
        self.running[k] = _Running(trial, not starts_the_study(trial.user_attrs))
        try:
            self.trainer.start(k, space.regularizers(params), seed)
        except RuntimeError as error:  # out of memory and the like: this trial fails alone
            self._fail(k, error)

    def _epoch(self) -> None:
        """Train every slot an epoch, store its values together, and end the slots whose
        trials are done."""
        try:
            stats = self.train_epoch(_RunningTrials(self))
        except RuntimeError as error:  # out of memory and the like: every slot's trial fails
            self._fail_all(error_reason(error))
            return
        now = time.time()
        self.snapshot = None  # read at the first pruning check of this epoch
        finite = {k: s for k, s in stats.items() if s is not None}
        for k in self._write_epoch(finite):
            self._drop(k)  # ended elsewhere: the slot takes a new trial
        for k, epoch in stats.items():
            if k not in self.running:
                continue
            run = self.running[k]
            if epoch is None:
                self._diverged(k)
                continue
            run.curve.append(epoch.train_loss)
            self.progress.epoch_done(run.trial.number, epoch.epoch, epoch.val_loss, now)
            reason = self._prune_reason(run, epoch)
            if reason is not None:
                self._pruned(k, at_chance=reason == "at chance")
            elif self.trainer.out_of_patience(k) or epoch.epoch == self.epochs:
                slot = self.trainer.slots[k]
                slot.result.stopped_early = epoch.epoch < self.epochs
                self._complete(k)

    def _prune_reason(self, run: _Running, epoch: EpochStats) -> str | None:
        """As the objective decides: at chance after epoch 1, or the pruner says so."""
        stuck = run.prunable and stuck_at_chance(
            epoch.epoch, self.epochs, epoch.val_loss, self.task.chance_loss
        )
        if stuck:
            return "at chance"
        if run.prunable and asks_pruner(epoch.epoch, self.epochs):
            if self.snapshot is None:  # the study read once for all slots
                self.snapshot = StudySnapshot(self.study)
            if self.snapshot.should_prune(run.trial):
                return "pruned"
        return None

    def _write_epoch(self, stats: dict[int, EpochStats]) -> list[int]:
        """Store the epoch's validation loss of every slot in one transaction; the slots whose
        trial was ended elsewhere (nothing is stored for them)."""
        trials = {k: self.running[k].trial for k in stats if k in self.running}
        ended = report_together(
            self.storage,
            {t._trial_id: (stats[k].epoch, stats[k].val_loss) for k, t in trials.items()},
        )
        for k, trial in trials.items():
            # What `trial.report` also does: `should_prune` reads the values from this copy.
            trial._cached_frozen_trial.intermediate_values[stats[k].epoch] = stats[k].val_loss
        return [k for k, trial in trials.items() if trial._trial_id in ended]

    def _outcome(self, k: int) -> RunOutcome | None:
        """Slot k's run with its test measurement; None, its trial failed, if measuring it
        raised (out of memory and the like)."""
        try:
            return RunOutcome(self.trainer.slots[k].result, self.trainer.finish(k))
        except RuntimeError as error:
            self._fail(k, error)
            return None

    def _complete(self, k: int) -> None:
        if (outcome := self._outcome(k)) is None:
            return
        self._store_outcome(k, outcome)
        self._tell(k, values=outcome.result.best.val_loss)

    def _diverged(self, k: int) -> None:
        if (outcome := self._outcome(k)) is None:
            return
        self._store_outcome(k, outcome)
        epoch = outcome.result.epochs_run + 1
        self._set(k, FAIL_REASON_ATTR, diverged_reason(epoch))
        self._tell(k, state=TrialState.FAIL)

    def _pruned(self, k: int, at_chance: bool) -> None:
        run = self.running[k]
        # Keep what the pruned trial learned: the report draws its curves too.
        self._set(k, EPOCHS_RUN_ATTR, len(run.curve))
        self._set(k, TRAIN_CURVE_ATTR, run.curve)
        if at_chance:
            self._set(k, AT_CHANCE_ATTR, True)
        self._tell(k, state=TrialState.PRUNED)

    def _store_outcome(self, k: int, outcome: RunOutcome) -> None:
        for key, value in outcome.user_attrs(self.task.classification).items():
            self._set(k, key, value)

    def _set(self, k: int, key: str, value: object) -> None:
        if k in self.running:
            _set_attr(self.running[k].trial, key, value)

    def _tell(
        self,
        k: int,
        values: float | None = None,
        state: TrialState | None = None,
        shown: bool = True,
    ) -> None:
        run = self.running.pop(k)
        self.trainer.stop(k)
        frozen = self.study.tell(run.trial, values, state=state, skip_if_finished=True)
        if shown:
            self.progress.trial_finished(TrialLine.of(frozen, self.task.space))

    def _drop(self, k: int) -> None:
        """Free the slot of a trial ended elsewhere, saying so; its result is dropped."""
        run = self.running.pop(k)
        self.trainer.stop(k)
        self._say_ended_elsewhere(self.storage.get_trial(run.trial._trial_id))

    def _fail(self, k: int, error: RuntimeError) -> None:
        self._set(k, FAIL_REASON_ATTR, error_reason(error))
        self._tell(k, state=TrialState.FAIL)

    def _fail_all(self, reason: str, shown: bool = True) -> None:
        """Fail every running trial, saying why (a stop, or an error of the fused batch);
        `shown`: with a progress line for each."""
        for k in list(self.running):
            self._set(k, FAIL_REASON_ATTR, reason)
            self._tell(k, state=TrialState.FAIL, shown=shown)

    @contextmanager
    def _torch_threads(self) -> Iterator[None]:
        """One torch thread for a small model on a CPU, while the worker runs: the linear
        task's batched steps are microseconds of work, and with more than one thread torch's
        workers waiting on each other made them 8x slower on the 2 busy cores of the project's
        machine (docs/fused.md). The caller's setting comes back (search.run_search in a
        notebook goes on training with it)."""
        threads = torch.get_num_threads()
        if self.trainer.device.type == "cpu" and self.trainer.numel() < SMALL_MODEL:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    # -- heartbeats -------------------------------------------------------------------------

    @contextmanager
    def _heartbeats(self) -> Iterator[None]:
        """A heartbeat for every running trial every --heartbeat-interval seconds."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.storage.heartbeat_interval):
                for run in list(self.running.values()):
                    self.storage.record_heartbeat(run.trial._trial_id)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def make_worker(task: Task, config: SearchConfig, progress) -> Worker:
    """A fused worker when this search trains more than one trial per process."""
    slots = fuse_slots(task, config)
    if slots > 1:
        return FusedWorker(task, config, progress, slots)
    return Worker(task, config, progress)
