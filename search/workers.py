"""Search workers: one process's loop over a shared study, and N such processes on one machine.

Every worker, however it was started, counts the study's trials before starting one, so
`--trials` is the study's total: a worker starts a trial only while finished + running trials
are fewer than --trials, and that check and the start happen under a lock that all workers of
the database share (search/locks.py), which makes the total exact. A worker leaves when the
study holds --trials finished trials; until then it waits for the trials still running, so a
trial left RUNNING by a killed worker is failed (with a `fail_reason`) when its heartbeat has
been silent for the grace period. That failed trial counts as finished; its parameters are
enqueued again only while the study has room for them under --trials.

Baselines are the exception: every comparison in the report needs them, so a baseline that a
kill or an interrupt left without a result is measured again whatever --trials says.
"""

import copy
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import cache

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from search.attrs import (
    APPLIED_ATTR,
    BASELINE_ATTR,
    EPOCHS_RUN_ATTR,
    FAIL_REASON_ATTR,
    WORKER_ATTR,
    WORKERS_ATTR,
)
from search.config import SearchConfig
from search.errors import UsageError
from search.interrupts import (
    INTERRUPTED,
    SIGNAL_NAMES,
    InterruptGate,
    Interruptible,
    StopSignals,
    exit_status,
    resend_swallowed_interrupts,
)
from search.locks import DatabaseLock
from search.objective import make_objective
from search.progress import QueueProgress, SearchProgress, TrialLine, forward_events
from search.storage import (
    STORAGE_ERRORS,
    database_url,
    open_storage,
    reason,
    safe_url,
    storage_error,
)
from search.study import (
    baseline_name,
    make_pruner,
    make_sampler,
    name_the_metric,
    open_study,
)
from search.task import Task, TaskBuilder
from search.training import EpochStats
from search.trial_queries import (
    add_indexes,
    baseline_trials,
    database_now,
    highest_worker_id,
    orphaned_trial_ids,
    running_heartbeats,
    trial_counts,
)

# fail_reason of trials stopped from outside (a signal, a dead worker) rather than by an error
# of their own: a baseline stopped so has no result yet and is measured again.
_STOPPED_REASONS = (INTERRUPTED, "worker stopped")
_INTERRUPTED_EXITS = tuple(exit_status(signum) for signum in SIGNAL_NAMES)
_EXIT_STORAGE_LOST = 1

_Progress = SearchProgress | QueueProgress


def worker_seed(seed: int, worker_id: int) -> int:
    """Worker 0 samples with --seed itself, so a lone worker reproduces a plain run."""
    return (seed + worker_id * 1_000_003) % 2**31


def worker_gpu(index: int, gpus: int) -> int:
    """The GPU that the `index`-th --jobs worker (from 0) trains on, of `gpus` visible."""
    return index % gpus


def _stopped_without_result(trial: FrozenTrial) -> bool:
    """A FAIL that a signal or a dead worker caused before the trial measured anything.

    A trial's own error (out of memory) is left alone: running it again would fail again. A
    trial that trained to the end stores epochs_run, also when its loss diverged. A FAIL with
    no fail_reason at all was failed by a stale-trial pass of a version that gave none.
    """
    if trial.state != TrialState.FAIL or EPOCHS_RUN_ATTR in trial.user_attrs:
        return False
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return reason is None or reason.startswith(_STOPPED_REASONS)


def _lost_baselines(trials: list[FrozenTrial], baselines: dict[str, dict]) -> list[str]:
    """The task's baselines whose every measurement was stopped without a result."""
    attempts: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        name = baseline_name(trial)
        if name in baselines:
            attempts.setdefault(name, []).append(trial)
    return [name for name, tried in attempts.items() if all(map(_stopped_without_result, tried))]


class _RetryWithinCap:
    """Enqueue a stale (killed) trial's parameters again while the study has room for them.

    Baselines are left to `Worker._enqueue_lost_baselines`, which retries them whatever the cap.
    The retry takes the trial's user attrs but not its fail_reason.
    """

    def __init__(self, trials: int) -> None:
        self.trials = trials
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether `trial`'s params were enqueued again."""
        if BASELINE_ATTR in trial.user_attrs:
            return False
        if trial_counts(study._storage, study._study_id).total < self.trials:
            self.again(study, trial)
            return True
        return False

    def again(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Enqueue `trial`'s params (fixed ones too) and user attrs; system attr failed_trial."""
        trial = copy.copy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != FAIL_REASON_ATTR}
        self.retry(study, trial)


def _join_study(study: optuna.Study, storage: optuna.storages.BaseStorage, worker_id: int | None):
    """This worker's id: the one given, or the next free one in the study (call under lock).

    Ids handed out by the study are distinct for every worker that ever joined it, so no two
    workers, whether started by --jobs or by hand, sample with the same seed.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    joined = storage.get_study_system_attrs(study_id).get(WORKERS_ATTR, 0)
    # optuna-dashboard's rename copies the trials but not this counter: a worker of the copy
    # would sample with the seed of the original's first worker and propose its trials again.
    # The ids the trials record are taken all the same.
    joined = max(joined, highest_worker_id(storage, study_id) + 1)
    storage.set_study_system_attr(study_id, WORKERS_ATTR, joined + 1)
    return joined if worker_id is None else worker_id


def _make_sampler(config: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The --sampler as --pruned-as and --sampler-history (0: all) say."""
    return make_sampler(
        config.sampler,
        seed,
        config.pruned_as,
        startup_trials=config.start_trials or 10,
        history=config.sampler_history or None,
    )


def _start_design(task: Task, config: SearchConfig) -> list[dict]:
    """--start-trials configurations for a new study, no more than --trials leaves room for
    after the baselines (a queue of trials that never run would outlive the search)."""
    room = max(0, config.trials - len(task.baselines))
    return task.space.start_design(min(config.start_trials, room), config.seed)


def _task_pruner(task: Task, config: SearchConfig) -> optuna.pruners.BasePruner:
    """The --pruner, with the warm-up the task settled on (stored in its study settings)."""
    return make_pruner(config.pruner, config.epochs, task.settings["warmup_epochs"])


class Step(Enum):
    """What one turn of a worker's loop did."""

    RAN = "ran a trial"
    WAIT = "every slot is taken by a running trial"
    DONE = "the study holds --trials finished trials"


class Worker:
    """One process's share of the search: trials until the study holds --trials finished."""

    def __init__(
        self,
        task: Task,
        config: SearchConfig,
        progress: _Progress,
        objective: Callable[[optuna.Trial], float] | None = None,
    ) -> None:
        """`objective`: a trial's work; by default training the task (search.tools.scale passes
        one of fixed duration, to measure what a worker adds around it)."""
        self.task, self.config, self.progress = task, config, progress
        self.retry_stale = _RetryWithinCap(config.trials)
        self.storage = open_storage(
            config.storage,
            heartbeat_interval=config.heartbeat_interval,
            grace_period=config.grace_period,
            # Optuna's own pass inside `optimize` only finds what `_fail_stale_trials` missed.
            stale_trial_callback=self.retry_stale,
        )
        self.lock = DatabaseLock(database_url(config.storage))
        with self.lock:
            self.study = open_study(
                self.storage,
                config.study_name,
                task,
                _make_sampler(config, config.seed),
                _task_pruner(task, config),
                _start_design(task, config),
            )
            self.worker_id = _join_study(self.study, self.storage, config.worker_id)
            add_indexes(self.storage)
        if self.worker_id != 0:
            self.study.sampler = _make_sampler(config, worker_seed(config.seed, self.worker_id))
        # Trials left RUNNING before this command started: their workers may be dead (a rerun
        # right after a kill) or alive (workers elsewhere). Trials started before that is known
        # could fill the study, and a dead worker's parameters would never run again; so no
        # trial starts until each of these has sent a heartbeat or been failed as stale.
        self.started = datetime.fromtimestamp(config.started_at, UTC).replace(tzinfo=None)
        self.unknown = running_heartbeats(self.storage, self.study._study_id, self.started)
        self.said_waiting: set[int] = set()
        self.finished_baselines: dict[int, FrozenTrial] = {}  # baseline_trials' cache
        self.gate = InterruptGate()
        if objective is None:
            objective = make_objective(task, config.seed, on_epoch=self._epoch_done)
        self.objective = Interruptible(self._record_applied(objective), self.gate)
        # The trial this worker ran, as stored when its objective ended, if something else had
        # ended it by then (`_check_still_running`).
        self.ended_elsewhere: FrozenTrial | None = None
        self.trial_id: int | None = None  # the trial this worker runs or ran last
        # --timeout counts from the command's start (the config's), not from this process's.
        self.deadline = None if config.timeout is None else config.started_at + config.timeout

    def _record_applied(self, objective: Callable[[optuna.Trial], float]):
        """Store the values a trial applies, so that "off" reads as off in the dashboard.

        A baseline's params are the raw ends of the ranges (weight_decay 0.0001, patience 100);
        suggesting is idempotent, so the objective gets the same params afterwards.
        """
        space = self.task.space

        def recorded(trial: optuna.Trial) -> float:
            self.trial_id = trial._trial_id
            try:
                trial.set_user_attr(APPLIED_ATTR, space.describe(space.suggest(trial)))
                self.storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, self.worker_id)
                self.progress.trial_started(trial.number, time.time())
                return objective(trial)
            finally:
                self._check_still_running(trial)

        return recorded

    def _check_still_running(self, trial: optuna.Trial) -> None:
        """Note whether the trial was ended elsewhere while this worker trained it.

        Another worker's stale-trial pass (this one was suspended or too slow to send its
        heartbeat), a person in optuna-dashboard or a script can fail a running trial. Its
        objective then fails on its next write, and Optuna's own tell after it raises
        ValueError ("Cannot tell a FAIL trial"), which `step` recognizes by this note.
        """
        stored = self.storage.get_trial(trial._trial_id)
        self.ended_elsewhere = None if stored.state == TrialState.RUNNING else stored

    def _epoch_done(self, number: int, stats: EpochStats) -> None:
        self.progress.epoch_done(number, stats.epoch, stats.val_loss, time.time())

    def _trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.progress.trial_finished(TrialLine.of(trial, self.task.space))

    def run(self) -> None:
        with self.gate.installed():
            while True:
                self.gate.raise_if_requested()
                if self.deadline is not None and time.time() > self.deadline:
                    return
                step = self.step()
                if step == Step.DONE:
                    return
                if step == Step.WAIT:
                    time.sleep(self.storage.heartbeat_interval or 1)

    def step(self) -> Step:
        """Start and run one trial if the study has room for it (or owes a baseline)."""

        def objective(trial: optuna.Trial) -> float:
            # The trial is RUNNING now and counts: other workers may check.
            self.lock.release()
            return self.objective(trial)

        self.lock.acquire()
        try:
            full = self._full()
            if full is not None:
                return full
            # Checked again here, under the lock: waiting for it can outlast the deadline.
            if self.deadline is not None and time.time() > self.deadline:
                return Step.DONE
            self.ended_elsewhere = None
            try:
                self.study.optimize(
                    objective, n_trials=1, callbacks=[self._trial_finished], catch=(RuntimeError,)
                )
            except ValueError:
                if self.ended_elsewhere is None:
                    raise
                self._say_ended_elsewhere(self.ended_elsewhere)
            except KeyboardInterrupt:
                self.run_again_later([] if self.trial_id is None else [self.trial_id])
                raise
        finally:
            self.lock.release()
        return Step.RAN

    def _say_ended_elsewhere(self, trial: FrozenTrial) -> None:
        """One line for a trial of this worker that another process ended; the worker goes on."""
        why = trial.user_attrs.get(FAIL_REASON_ATTR)
        if why and why.startswith(_STOPPED_REASONS):
            by = f"by another worker ({why}: this worker was suspended or too slow)"
        else:
            by = "from outside (optuna-dashboard, a script or the Optuna API)"
        self.progress.trial_dropped(
            trial.number,
            f"trial {trial.number:3d} was set {trial.state.name} {by} while this worker ran it; "
            "its result is dropped, going on with the next trial",
        )

    def _full(self) -> Step | None:
        """WAIT or DONE if the study has no room for another trial (call under the lock).

        Its queries read the counts and the baselines, never the whole study, so their cost
        does not grow with it (search/trial_queries.py).
        """
        self._fail_stale_trials()
        if self._waiting_for_unknown_trials():
            return Step.WAIT
        baselines = self._enqueue_lost_baselines()
        counts = trial_counts(self.storage, self.study._study_id)
        self.progress.study_finished(counts.finished)
        owed = any(t.state == TrialState.WAITING for t in baselines)
        if counts.started < self.config.trials or owed:
            return None
        return Step.DONE if counts.finished >= self.config.trials else Step.WAIT

    def _fail_stale_trials(self) -> None:
        """Fail the trials of dead workers, saying why, and retry them (call under the lock).

        Optuna's `_fail_stale_trials` cannot say why: a FAIL takes no more attributes, so the
        reason is stored while the trial is still RUNNING. Run first under the lock, this pass
        leaves nothing for the one Optuna makes inside `optimize`.
        """
        reason = f"worker stopped: no heartbeat for {self.config.grace_period} s"
        stale = self.storage._get_stale_trial_ids(self.study._study_id)
        stale += orphaned_trial_ids(self.storage, self.study._study_id, self.config.grace_period)
        for trial_id in stale:
            try:
                self.storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
                failed = self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # its worker was slow, not dead, and finished it meanwhile
            if failed:
                trial = self.storage.get_trial(trial_id)
                if self.retry_stale(self.study, trial):
                    then = "its parameters run again"
                elif BASELINE_ATTR in trial.user_attrs:
                    then = "the baseline is measured again"
                else:
                    then = "no room is left under --trials to run its parameters again"
                self.progress.note(
                    f"trial {trial.number:3d} failed: its worker sent no heartbeat for "
                    f"{self.config.grace_period} s (killed?); {then}"
                )

    def run_again_later(self, trial_ids: list[int]) -> None:
        """Enqueue the parameters of this worker's trials failed by a stop signal, within --trials.

        So that the same command run again starts with them, as after a kill (`_fail_stale_trials`)
        and whenever it is rerun; a baseline is measured again anyway (`_enqueue_lost_baselines`).
        """
        with self.lock:
            for trial_id in trial_ids:
                trial = self.storage.get_trial(trial_id)
                reason = trial.user_attrs.get(FAIL_REASON_ATTR, "")
                if trial.state == TrialState.FAIL and reason.startswith(INTERRUPTED):
                    self.retry_stale(self.study, trial)
                    self.progress.trial_stopped(trial.number, BASELINE_ATTR in trial.user_attrs)

    def _waiting_for_unknown_trials(self) -> bool:
        """Whether a trial left RUNNING before this command has yet to show its worker alive (a
        new heartbeat) or dead (failed by `_fail_stale_trials`); says once what it waits for,
        once the trial's heartbeat is older than a live worker's would be."""
        if not self.unknown:
            return False
        now = running_heartbeats(self.storage, self.study._study_id, self.started)
        # A worker started beside a live one waits up to one heartbeat interval without a word:
        # that wait is common and short, and the line reads as a dead worker. The heartbeats'
        # age is read on the database's clock, which timed them.
        late = database_now(self.storage) - timedelta(seconds=2 * self.config.heartbeat_interval)
        for trial_id, (number, beat) in list(self.unknown.items()):
            if trial_id not in now or now[trial_id][1] != beat:
                del self.unknown[trial_id]
            elif number not in self.said_waiting and beat < late:
                self.said_waiting.add(number)
                self.progress.note(
                    f"waiting for trial {number:3d}, left running before this command started: "
                    f"if its worker sends no heartbeat for {self.config.grace_period} s "
                    "(--grace-period), it is failed and its parameters run again"
                )
        return bool(self.unknown)

    def _enqueue_lost_baselines(self) -> list[FrozenTrial]:
        """Enqueue every baseline whose measurements were all stopped without a result.

        Whatever --trials says: the study's comparisons need the baselines, and once the study
        is full a lost baseline would otherwise never come back. Returns the baseline trials,
        the new ones included.
        """
        trials = baseline_trials(self.storage, self.study._study_id, self.finished_baselines)
        lost = _lost_baselines(trials, self.task.baselines)
        for name in lost:
            last = max(
                (t for t in trials if baseline_name(t) == name),
                key=lambda t: t.number,
            )
            self.retry_stale.again(self.study, last)
        if lost:
            return baseline_trials(self.storage, self.study._study_id, self.finished_baselines)
        return trials

    def close(self) -> None:
        self.lock.close()


def _run_worker(task: Task, config: SearchConfig, progress: _Progress, prog: str) -> int:
    """Run one worker in this process; the exit status (the caller prints the summary)."""
    # The heartbeat API is marked experimental; its warnings would drown the progress lines.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # `study.ask` warns that heartbeats belong to `study.optimize`: our workers ask themselves
    # and record the heartbeats of their trials (a fused worker: one thread for all slots).
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with")
    # Failed trials show in the progress lines and keep their fail_reason; Optuna's own
    # warning would add a traceback, also for a Ctrl-C.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    _quiet_storage_errors_in_threads()
    # Imported here: the fused worker builds on this module's Worker.
    from search.fused_worker import make_worker

    worker = None
    try:
        worker = make_worker(task, config, progress)
        worker.run()
    except KeyboardInterrupt:
        # Before the gate is installed only a Ctrl-C raises (SIGTERM still just ends us).
        # run_study says so, once and after closing the bars: --jobs workers wrote it over
        # the bar at once, each its own copy cut into the others'.
        signum = worker.gate.signum if worker and worker.gate.signum else signal.SIGINT
        return exit_status(signum)
    except Exception as error:
        # Optuna 5.0 can mask a failed commit with its own error; look for the real cause.
        cause = storage_error(error)
        if cause is None:
            raise
        error = cause
        if worker is None:
            raise UsageError(
                f"cannot open storage {safe_url(config.storage)!r}: {reason(error)}"
            ) from None
        print(
            f"{prog}: error: lost the study database {safe_url(config.storage)!r} "
            f"({reason(error)}); "
            "the trials recorded before are kept in it, rerun to resume",
            file=sys.stderr,
        )
        return _EXIT_STORAGE_LOST
    finally:
        if worker is not None:
            worker.close()
    return 0


@cache  # once per process: each call would wrap the hook again
def _quiet_storage_errors_in_threads() -> None:
    """Let a background thread die of a lost database without a traceback.

    Optuna's heartbeat thread writes every --heartbeat-interval seconds; when the database goes
    away it may fail before the main thread does, and Python would print its traceback. The
    main thread meets the same error at its next write and reports it in one line.
    """
    default_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if storage_error(args.exc_value) is None:
            default_hook(args)

    threading.excepthook = hook


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGTERM this worker when its --jobs parent dies, however it dies.

    Workers sit in process groups of their own, so a `kill`, a scheduler's SIGTERM or an
    out-of-memory kill of the parent would otherwise leave them running the study as orphans.
    Their trials are then left RUNNING, and failed and enqueued again like any killed worker's.
    """
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_process(
    build_task: TaskBuilder,
    config: SearchConfig,
    events: multiprocessing.Queue,
    prog: str,
    threads: int,
    parent_pid: int,
    index: int,
) -> None:
    # Own process group: a terminal's Ctrl-C reaches only the parent, which forwards it once;
    # a second SIGINT arriving while the trial is being marked failed would leave it RUNNING.
    os.setpgid(0, 0)
    _die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    if config.device != "cpu" and torch.cuda.is_available():
        # "cuda" means the current device: worker i trains on GPU i mod G, not all on GPU 0.
        torch.cuda.set_device(worker_gpu(index, torch.cuda.device_count()))
    try:
        task = build_task(config)
        code = _run_worker(task, config, QueueProgress(events, task.space), prog)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _run_processes(
    build_task: TaskBuilder,
    config: SearchConfig,
    progress: SearchProgress,
    prog: str,
) -> int:
    """Run --jobs worker processes, each with its share of the CPU threads, and wait for them.

    The workers send their progress to this process, which shows one display for them all.
    """
    resend_swallowed_interrupts()  # a lost Ctrl-C here would never reach the workers
    threads = max(1, torch.get_num_threads() // config.jobs)
    # spawn, not fork: a forked copy of a process that already used torch's threads can hang.
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    processes = [
        context.Process(
            target=_worker_process,
            args=(build_task, config, events, prog, threads, os.getpid(), index),
        )
        for index in range(config.jobs)
    ]
    forwarder = forward_events(events, progress)
    for process in processes:
        process.start()
    stop = StopSignals()
    try:
        with stop.installed():
            for process in processes:
                process.join()
    except KeyboardInterrupt:
        signum = stop.signum or signal.SIGINT
        # A second signal while the workers mark their trials failed would cut that short.
        for ignored in SIGNAL_NAMES:
            signal.signal(ignored, signal.SIG_IGN)
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)
        for process in processes:
            process.join()
        return exit_status(signum)
    finally:
        events.put(None)  # after the workers' last events
        forwarder.join()
    codes = [process.exitcode or 0 for process in processes]
    failed = [code if code > 0 else _EXIT_STORAGE_LOST for code in codes if code != 0]
    return max(failed, default=0)


def _the_baselines(names: list[str]) -> str:
    return f"the baseline{'s' if len(names) > 1 else ''} {', '.join(names)}"


def run_study(
    task: Task,
    config: SearchConfig,
    build_task: TaskBuilder,
    progress: SearchProgress,
    print_summary: Callable[[optuna.Study], None],
    prog: str,
    slots: int = 1,
) -> int:
    """Create or check the study, run its workers showing `progress`, print the summary; the
    exit status. `slots`: the trials each worker trains at once (fused_worker.fuse_slots)."""
    if config.trials < len(task.baselines):
        raise UsageError(
            f"--trials {config.trials} is fewer than the {len(task.baselines)} baselines every "
            f"{task.name} study measures first ({', '.join(task.baselines)}): use --trials "
            f"{len(task.baselines)} or more"
        )
    storage = open_storage(config.storage)
    lock = DatabaseLock(database_url(config.storage))
    try:
        with lock:
            study = open_study(
                storage,
                config.study_name,
                task,
                _make_sampler(config, config.seed),
                _task_pruner(task, config),
                _start_design(task, config),
            )
            if study.metric_names is None:
                name_the_metric(study)
    except STORAGE_ERRORS as error:
        raise UsageError(
            f"cannot open storage {safe_url(config.storage)!r}: {reason(error)}"
        ) from None
    finally:
        lock.close()
    counts = trial_counts(study._storage, study._study_id)
    finished = counts.finished
    baselines = baseline_trials(study._storage, study._study_id)
    lost = _lost_baselines(baselines, task.baselines)
    if finished >= config.trials and not lost:
        have = f"{finished} of {config.trials} finished trials"
        print(f"study {config.study_name!r} already has {have}")
        print_summary(study)
        return 0
    workers = f" with {config.jobs} workers" if config.jobs > 1 else ""
    again = f", measuring {_the_baselines(lost)} again" if lost else ""
    owed = [baseline_name(t) for t in baselines if t.state == TrialState.WAITING]
    among = f" ({_the_baselines(owed)} among them)" if owed else ""
    if counts.running:
        # Another worker shares the study (or left a trial when it stopped): this one runs only
        # a share of what is left; two workers each said "running 40 more" of one study.
        shared = f", {counts.running} running elsewhere; "
        left = max(0, config.trials - counts.started)
        plan = (
            f"this worker shares the {left} not started yet"
            if left
            else "all are started: this worker waits for them"
        )
    else:
        left = max(0, config.trials - finished)
        shared, plan = ", ", f"running {left} more"
    # Piped output has no bar to show the trials in flight.
    in_flight = min(slots * config.jobs, left)
    if slots > 1 and in_flight > 1:
        each = in_flight == slots * config.jobs and config.jobs > 1
        workers += f", {slots} trials at a time each" if each else f", {in_flight} trials at a time"
        workers += " (--fuse)"
    print(
        f"study {config.study_name!r}: {finished} finished trials{shared}"
        f"{plan}{among}{again}{workers}",
        flush=True,
    )
    progress.start(finished, _best_value(study))
    try:
        if config.jobs > 1:
            code = _run_processes(build_task, config, progress, prog)
        else:
            code = _run_worker(task, config, progress, prog)
    finally:
        progress.close()
    if code in _INTERRUPTED_EXITS:
        stopped = _stopped_line(progress.stopped)
        print(f"{prog}: interrupted ({SIGNAL_NAMES[code - 128]}); {stopped}", file=sys.stderr)
    if code == 0 or code in _INTERRUPTED_EXITS:
        _print_timeout(study, config)
        print_summary(study)
    return code


def _stopped_line(stopped: dict[int, bool]) -> str:
    """What a stop signal did to this command's trials (`stopped`: number -> whether a
    baseline); a signal while no trial ran stops none, and saying one failed sent users
    looking for it."""
    if not stopped:
        return "no trial of this command was running: none was lost, the same command resumes"

    def trials(numbers: list[int]) -> str:
        listed = ", ".join(map(str, numbers))
        return f"trial {listed}" if len(numbers) == 1 else f"trials {listed}"

    def them(numbers: list[int]) -> str:
        return "it" if len(numbers) == 1 else "them"

    searched = sorted(n for n, baseline in stopped.items() if not baseline)
    baselines = sorted(n for n, baseline in stopped.items() if baseline)
    said = []
    if searched:
        said.append(
            f"{trials(searched)} stopped and marked failed: the same command runs "
            f"{them(searched)} again first, if --trials leaves room"
        )
    if baselines:
        said.append(
            f"baseline {trials(baselines)} stopped and marked failed: the same command "
            f"measures {them(baselines)} again first"
        )
    return "; ".join(said)


def _best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no complete trial yet
        return None


def _print_timeout(study: optuna.Study, config: SearchConfig) -> None:
    """Say so when --timeout, not --trials, ended the search."""
    if config.timeout is None or time.time() < config.started_at + config.timeout:
        return
    finished = trial_counts(study._storage, study._study_id).finished
    if finished < config.trials:
        print(
            f"--timeout {config.timeout:g} s reached: no trial was started after it; the study "
            f"holds {finished} of {config.trials} finished trials, rerun to run the rest"
        )
