"""Search workers: one process's loop over a shared study, and N such processes on one machine.

Every worker, however it was started, counts the study's trials before starting one, so
`--trials` is the study's total: a worker starts a trial only while finished + running trials
are fewer than --trials, and that check and the start happen under a lock that all workers of
the database share (search/locks.py), which makes the total exact. A worker leaves when the
study holds --trials finished trials; until then it waits for the trials still running, so a
trial left RUNNING by a killed worker is failed when its heartbeat has been silent for the grace
period. That failed trial counts as finished; its parameters are enqueued again only while the
study has room for them under --trials.
"""

import argparse
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from functools import cache

import optuna
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial, TrialState

from search.errors import UsageError
from search.interrupts import InterruptGate, Interruptible, resend_swallowed_interrupts
from search.locks import DatabaseLock
from search.objective import make_objective
from search.space import SearchSpace
from search.storage import database_url, open_storage
from search.study import make_pruner, make_sampler, open_study
from search.task import Task

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STARTED = (*FINISHED, TrialState.RUNNING)
WORKERS_ATTR = "regsearch:workers"  # study system attr: how many workers have joined
EXIT_INTERRUPTED = 130
EXIT_STORAGE_LOST = 1
# What a vanished or unreachable database raises: Optuna wraps failed commits.
STORAGE_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)

Callback = Callable[[optuna.Study, FrozenTrial], None]
TaskBuilder = Callable[[argparse.Namespace], Task]


def worker_seed(seed: int, worker_id: int) -> int:
    """Worker 0 samples with --seed itself, so a lone worker reproduces a plain run."""
    return (seed + worker_id * 1_000_003) % 2**31


def count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    # Ask the database itself: the study's cache may not know other workers' new trials.
    storage = study._storage
    storage = getattr(storage, "_backend", storage)
    return len(storage.get_all_trials(study._study_id, deepcopy=False, states=states))


class RetryWithinCap:
    """Enqueue a stale (killed) trial's parameters again while the study has room for them."""

    def __init__(self, trials: int) -> None:
        self.trials = trials
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        queued = count(study, (*STARTED, TrialState.WAITING))
        if queued < self.trials:
            self.retry(study, trial)


def join_study(study: optuna.Study, storage: optuna.storages.BaseStorage, worker_id: int | None):
    """This worker's id: the one given, or the next free one in the study (call under lock).

    Ids handed out by the study are distinct for every worker that ever joined it, so no two
    workers, whether started by --jobs or by hand, sample with the same seed.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    joined = storage.get_study_system_attrs(study_id).get(WORKERS_ATTR, 0)
    storage.set_study_system_attr(study_id, WORKERS_ATTR, joined + 1)
    return joined if worker_id is None else worker_id


def task_pruner(task: Task, args: argparse.Namespace) -> optuna.pruners.BasePruner:
    """The --pruner, with the warm-up the task settled on (stored in its study settings)."""
    return make_pruner(args.pruner, args.epochs, task.settings["warmup_epochs"])


class Worker:
    """One process's share of the search: trials until the study holds --trials finished."""

    def __init__(self, task: Task, args: argparse.Namespace, progress: Callback) -> None:
        self.task, self.args, self.progress = task, args, progress
        self.storage = open_storage(
            args.storage,
            heartbeat_interval=args.heartbeat_interval,
            grace_period=args.grace_period,
            stale_trial_callback=RetryWithinCap(args.trials),
        )
        self.lock = DatabaseLock(database_url(args.storage))
        with self.lock:
            self.study = open_study(
                self.storage,
                args.study_name,
                task,
                make_sampler(args.sampler, args.seed),
                task_pruner(task, args),
            )
            self.worker_id = join_study(self.study, self.storage, args.worker_id)
        if self.worker_id != 0:
            self.study.sampler = make_sampler(args.sampler, worker_seed(args.seed, self.worker_id))
        self.gate = InterruptGate()
        self.objective = Interruptible(make_objective(task, args.seed), self.gate)

    def run(self) -> None:
        deadline = None if self.args.timeout is None else time.monotonic() + self.args.timeout
        with self.gate.installed():
            while count(self.study, FINISHED) < self.args.trials:
                self.gate.raise_if_requested()
                if deadline is not None and time.monotonic() > deadline:
                    return
                if not self.run_trial():
                    self.wait_for_running()

    def run_trial(self) -> bool:
        """Start and run one trial if the study has room for it; False if it had none."""

        def objective(trial: optuna.Trial) -> float:
            # The trial is RUNNING now and counts: other workers may check.
            self.lock.release()
            return self.objective(trial)

        self.lock.acquire()
        try:
            if count(self.study, STARTED) >= self.args.trials:
                return False
            # Inside, Optuna first fails stale trials of dead workers (and may retry them).
            self.study.optimize(
                objective, n_trials=1, callbacks=[self.progress], catch=(RuntimeError,)
            )
        finally:
            self.lock.release()
        return True

    def wait_for_running(self) -> None:
        """Every slot is taken by a running trial: wait, failing those whose worker died."""
        time.sleep(self.storage.heartbeat_interval or 1)
        with self.lock:
            optuna.storages.fail_stale_trials(self.study)

    def close(self) -> None:
        self.lock.close()


def run_worker(task: Task, args: argparse.Namespace, progress: Callback, prog: str) -> int:
    """Run one worker in this process; the exit status (the caller prints the summary)."""
    # The heartbeat API is marked experimental; its warnings would drown the progress lines.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Failed trials show in the progress lines and keep their fail_reason; Optuna's own
    # warning would add a traceback, also for a Ctrl-C.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    quiet_storage_errors_in_threads()
    worker = None
    try:
        worker = Worker(task, args, progress)
        worker.run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; a running trial was marked failed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        # Optuna 5.0 can mask a failed commit with its own error; look for the real cause.
        cause = storage_error(error)
        if cause is None:
            raise
        error = cause
        if worker is None:
            raise UsageError(f"cannot open storage {args.storage!r}: {reason(error)}") from None
        print(
            f"{prog}: error: lost the study database {args.storage!r} ({reason(error)}); "
            "the trials recorded before are kept in it, rerun to resume",
            file=sys.stderr,
        )
        return EXIT_STORAGE_LOST
    finally:
        if worker is not None:
            worker.close()
    return 0


@cache  # once per process: each call would wrap the hook again
def quiet_storage_errors_in_threads() -> None:
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


def storage_error(error: BaseException | None) -> BaseException | None:
    while error is not None and not isinstance(error, STORAGE_ERRORS):
        error = error.__cause__ or error.__context__
    return error


def reason(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    error = getattr(error, "orig", None) or error
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGTERM this worker when its --jobs parent dies, however it dies.

    Workers sit in process groups of their own, so a `kill`, a scheduler's SIGTERM or an
    out-of-memory kill of the parent would otherwise leave them running the study as orphans.
    Their trials are then left RUNNING, and failed and enqueued again like any killed worker's.
    """
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_process(
    build_task: TaskBuilder,
    args: argparse.Namespace,
    make_progress: Callable[[SearchSpace], Callback],
    prog: str,
    threads: int,
    parent_pid: int,
) -> None:
    # Own process group: a terminal's Ctrl-C reaches only the parent, which forwards it once;
    # a second SIGINT arriving while the trial is being marked failed would leave it RUNNING.
    os.setpgid(0, 0)
    die_with_parent(parent_pid)
    torch.set_num_threads(threads)
    try:
        task = build_task(args)
        code = run_worker(task, args, make_progress(task.space), prog)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)


def run_processes(
    build_task: TaskBuilder,
    args: argparse.Namespace,
    make_progress: Callable[[SearchSpace], Callback],
    prog: str,
) -> int:
    """Run --jobs worker processes, each with its share of the CPU threads, and wait for them."""
    resend_swallowed_interrupts()  # a lost Ctrl-C here would never reach the workers
    threads = max(1, torch.get_num_threads() // args.jobs)
    # spawn, not fork: a forked copy of a process that already used torch's threads can hang.
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_process,
            args=(build_task, args, make_progress, prog, threads, os.getpid()),
        )
        for _ in range(args.jobs)
    ]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join()
    codes = [process.exitcode or 0 for process in processes]
    failed = [code if code > 0 else EXIT_STORAGE_LOST for code in codes if code != 0]
    return max(failed, default=0)


def run_study(
    task: Task,
    args: argparse.Namespace,
    build_task: TaskBuilder,
    make_progress: Callable[[SearchSpace], Callback],
    print_summary: Callable[[optuna.Study], None],
    prog: str,
) -> int:
    """Create or check the study, run its workers, print the summary; the exit status."""
    storage = open_storage(args.storage)
    lock = DatabaseLock(database_url(args.storage))
    try:
        with lock:
            study = open_study(
                storage,
                args.study_name,
                task,
                make_sampler(args.sampler, args.seed),
                task_pruner(task, args),
            )
    except STORAGE_ERRORS as error:
        raise UsageError(f"cannot open storage {args.storage!r}: {reason(error)}") from None
    finally:
        lock.close()
    finished = count(study, FINISHED)
    if finished >= args.trials:
        print(f"study {args.study_name!r} already has {finished} of {args.trials} finished trials")
        print_summary(study)
        return 0
    workers = f" with {args.jobs} workers" if args.jobs > 1 else ""
    print(
        f"study {args.study_name!r}: {finished} finished trials, "
        f"running {args.trials - finished} more{workers}",
        flush=True,
    )
    if args.jobs > 1:
        code = run_processes(build_task, args, make_progress, prog)
    else:
        code = run_worker(task, args, make_progress(task.space), prog)
    if code in (0, EXIT_INTERRUPTED):
        print_summary(study)
    return code
