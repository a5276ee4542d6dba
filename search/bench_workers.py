"""Several `search.cifar` processes searching one study, for the benchmark's time-to-result.

`search.cifar --trials N` counts the study's finished trials, so N concurrent copies would each
run N trials; a worker here runs exactly `--worker-trials` trials instead, and the benchmark
splits the total across the workers. They share the study through its SQLite file.
"""

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import optuna

from models.cifar_data import DataError
from search import cifar
from search.cli import non_negative_int, positive_int
from search.errors import UsageError
from search.objective import make_objective
from search.storage import open_storage
from search.study import make_pruner, make_sampler, open_study


def build_parser():
    parser = cifar.build_parser()
    parser.prog = "python -m search.bench_workers"
    parser.add_argument(
        "--worker-trials", type=positive_int, default=1, help="trials this worker runs"
    )
    parser.add_argument(
        "--worker-index",
        type=non_negative_int,
        default=0,
        help="offsets the sampler's seed, so that workers do not draw the same start points",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        task = cifar.build_task(args)
        storage = open_storage(args.storage)
        sampler = make_sampler(args.sampler, args.seed + args.worker_index)
        pruner = make_pruner(args.pruner, args.epochs, task.settings["warmup_epochs"])
        study = open_study(storage, args.study_name, task, sampler, pruner)
    except (UsageError, DataError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    study.optimize(
        make_objective(task, args.seed), n_trials=args.worker_trials, catch=(RuntimeError,)
    )
    return 0


def split_trials(total: int, jobs: int) -> list[int]:
    """Per-worker trial counts summing to `total`, as even as possible (no empty worker)."""
    jobs = min(jobs, total)
    return [total // jobs + (1 if i < total % jobs else 0) for i in range(jobs)]


def module_env() -> dict[str, str]:
    """The environment for `python -m search...` children: this checkout importable."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_workers(total: int, jobs: int, cifar_args: Sequence[str], threads: int) -> float:
    """Run `jobs` worker processes to `total` trials; the wall seconds until the last ends.

    Each worker gets `threads` torch threads, so that workers do not oversubscribe the cores.
    """
    env = module_env() | {"OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "search.bench_workers",
                *cifar_args,
                "--worker-trials",
                str(count),
                "--worker-index",
                str(index),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index, count in enumerate(split_trials(total, jobs))
    ]
    failures = []
    for worker in workers:
        _, stderr = worker.communicate()
        if worker.returncode != 0:
            failures.append(stderr.strip().splitlines()[-1] if stderr.strip() else "no output")
    if failures:
        raise RuntimeError(f"a search worker failed: {failures[0]}")
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
