"""Re-training configurations over seeds for a report: in parallel, and resumable.

The report re-trains the best configuration, the baselines and the ablations of a study over
the same k seeds. Each (configuration, seed) run is independent, so `jobs` worker processes
share them, and every finished run's numbers (its best validation loss, which choices are made
on, and its test number, which is only reported) are written at once to a JSON file in the
report's folder: an interrupted report, run again, trains only what is missing.
"""

import json
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from search.errors import UsageError
from search.objective import run_configuration
from search.progress import format_duration
from search.spec import BUILT_IN_TASKS
from search.task import Task
from search.task_file import task_from_source
from search.tasks import cifar, linear

TaskBuilder = Callable[[], Task]  # picklable: a functools.partial of rebuild_task


def rebuild_task(
    settings: dict,
    device: str,
    data: str | None,
    cache_dir: str = "studies/cache",
    source: dict | None = None,
) -> Task:
    """The study's task, rebuilt from its stored settings (and a task file's stored `source`);
    refused if the code builds another.

    It lives here, not in the report's __main__, because worker processes unpickle it by
    module name, and multiprocessing does not import a package's __main__ in its children.
    """
    if source is not None:
        task = task_from_source(source, settings, device)
    elif settings.get("task") not in BUILT_IN_TASKS:
        raise UsageError(
            f"study of task {settings.get('task')!r} has no task file to rebuild it from (it "
            "was defined in Python): pass its TaskSpec to search.write_report(task=...), or "
            "use --repeats 0"
        )
    elif settings.get("task") == "cifar":
        if not data:
            raise UsageError(
                "re-training a CIFAR-10 study needs the data: pass --data or set CIFAR10_ROOT "
                "(or --repeats 0 to skip re-training)"
            )
        task = cifar.task_from_settings(settings, device, data, cache_dir)
    else:
        task = linear.task_from_settings(settings, device)
    mismatch = [k for k in settings if _json(task.settings).get(k) != settings[k]]
    if mismatch:
        raise UsageError(
            f"this code rebuilds the task with other {', '.join(mismatch)} than the study "
            "stored; re-train with the code version that made it, or use --repeats 0"
        )
    return task


Run = dict[str, float | None]  # one (configuration, seed) run: {"val_loss": .., "test": ..}


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    measured = [v for v in values if v is not None]
    mean = statistics.fmean(measured) if measured else None
    return mean, statistics.stdev(measured) if len(measured) > 1 else None


def summarize_runs(seeds: list[int], runs: list[Run]) -> dict:
    """The form every re-trained configuration takes in a report: the test metric per seed
    (`values`), its mean and std, and the same of the best validation loss (`val_losses`)."""
    values = [run["test"] for run in runs]
    val_losses = [run["val_loss"] for run in runs]
    mean, std = _mean_std(values)
    val_mean, val_std = _mean_std(val_losses)
    return {
        "seeds": seeds,
        "values": values,
        "mean": mean,
        "std": std,
        "val_losses": val_losses,
        "val_loss_mean": val_mean,
        "val_loss_std": val_std,
    }


def _key(params: dict, seed: int) -> str:
    return json.dumps([sorted(params.items()), seed])


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _train_once(task: Task, params: dict, seed: int, metric_key: str) -> Run:
    outcome = run_configuration(task, params, seed)
    best = outcome.result.best
    return {
        "val_loss": None if best is None else _finite(best.val_loss),
        "test": _finite(outcome.user_attrs(task.classification).get(metric_key)),
    }


_worker_task: Task | None = None


def _init_worker(build_task: TaskBuilder, threads: int) -> None:
    global _worker_task
    # A terminal's Ctrl-C reaches the whole process group: the parent alone answers it, by
    # ending these workers, so that none prints a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _worker_task = build_task()


def _run(job: tuple[dict, int, str]) -> tuple[str, Run]:
    params, seed, metric_key = job
    return _key(params, seed), _train_once(_worker_task, params, seed, metric_key)


class Retrainer:
    """Configurations' numbers over fixed seeds, kept in `results_file` as they finish.

    `task` trains in this process (jobs=1); with jobs > 1 each worker process builds its own
    task with `build_task` (a CIFAR-10 task reads the decoded-image cache, so that is quick).
    The workers start at the first batch that needs them and serve every later one (the
    ablation path asks batch after batch) until `close()` or the end of a `with` block.
    The file records the study settings it was made for and is ignored if they change.
    """

    def __init__(
        self,
        task: Task,
        build_task: TaskBuilder,
        metric_key: str,
        seeds: list[int],
        results_file: Path | None = None,
        jobs: int = 1,
    ) -> None:
        self.task, self.build_task = task, build_task
        self.metric_key, self.seeds = metric_key, seeds
        self.results_file, self.jobs = results_file, jobs
        self.results: dict[str, Run] = self._load()
        self.trained = 0  # runs trained by this object (not read back from the file)
        self.expected = 0  # runs this report will train, as far as known (expect)
        self._started: float | None = None
        self._pool = None

    def __enter__(self) -> "Retrainer":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None and issubclass(kind, KeyboardInterrupt) and self._pool is not None:
            # Stopped: end the runs in flight rather than wait for them (minutes on CIFAR-10);
            # the finished ones are saved. The executor has no public way to do it in 3.11.
            for process in list(self._pool._processes.values()):
                process.terminate()
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _load(self) -> dict[str, Run]:
        if self.results_file is None or not self.results_file.exists():
            return {}
        try:
            saved = json.loads(self.results_file.read_text())
        except (OSError, ValueError):
            return {}  # a file cut short by a kill: train again
        if saved.get("settings") != _json(self.task.settings) or saved.get("metric") != (
            self.metric_key
        ):
            return {}
        # A file of an older version kept the test number alone: those runs train again.
        return {k: v for k, v in saved.get("results", {}).items() if isinstance(v, dict)}

    def _save(self) -> None:
        if self.results_file is None:
            return
        state = {"settings": _json(self.task.settings), "metric": self.metric_key}
        state["results"] = self.results
        partial = self.results_file.with_suffix(".tmp")
        partial.write_text(json.dumps(state))
        os.replace(partial, self.results_file)  # atomic: a kill leaves the old or the new file

    def _pending(self, configurations: list[dict]) -> list[tuple[dict, int]]:
        pending: dict[str, tuple[dict, int]] = {}  # a configuration asked twice trains once
        for params in configurations:
            for seed in self.seeds:
                key = _key(params, seed)
                if key not in self.results:
                    pending.setdefault(key, (params, seed))
        return list(pending.values())

    def expect(self, configurations: list[dict]) -> None:
        """Count these configurations' runs in the progress lines' total before they are asked
        for, so that the count runs on across the report's phases instead of restarting."""
        self.expected += len(self._pending(configurations))

    def measure(self, configurations: list[dict], label: str = "re-training") -> list[dict]:
        """Each configuration's numbers over the seeds (summarize_runs), in order.

        Each finished run prints one line on stderr: `label`, the runs done of those expected,
        and the time left at the pace so far.
        """
        todo = self._pending(configurations)
        self.expected = max(self.expected, self.trained + len(todo))
        if todo and self._started is None:
            self._started = time.monotonic()
        for key, run in self._train(todo):
            self.results[key] = run
            self.trained += 1
            self._save()
            print(self._progress_line(label), file=sys.stderr, flush=True)
        return [
            summarize_runs(self.seeds, [self.results[_key(p, s)] for s in self.seeds])
            for p in configurations
        ]

    def _progress_line(self, label: str) -> str:
        elapsed = time.monotonic() - (self._started or time.monotonic())
        left = self.expected - self.trained
        line = f"re-trained {self.trained}/{self.expected} runs ({label})"
        if left:
            line += f", about {format_duration(elapsed / self.trained * left)} left"
        return line

    def _train(self, todo: list[tuple[dict, int]]):
        if not todo:
            return
        if self.jobs == 1 or len(todo) == 1:
            for params, seed in todo:
                yield _key(params, seed), _train_once(self.task, params, seed, self.metric_key)
            return
        if self._pool is None:
            # An executor, not multiprocessing.Pool: a worker that fails to start or dies
            # breaks it with an error, where a Pool starts a new worker forever and waits.
            threads = max(1, torch.get_num_threads() // self.jobs)
            self._pool = ProcessPoolExecutor(
                self.jobs,
                multiprocessing.get_context("spawn"),
                _init_worker,
                (self.build_task, threads),
            )
        jobs = [self._pool.submit(_run, (p, s, self.metric_key)) for p, s in todo]
        for job in as_completed(jobs):
            yield job.result()


def _json(value):
    return json.loads(json.dumps(value))
