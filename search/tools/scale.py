"""What a worker adds around a trial as the study and fleet grow: `python -m search.tools.scale`.

Two measurements, on SQLite and on the `--postgres` server if given, with the real worker loop
(search/workers.py) around an objective of fixed duration that reports and asks the pruner
like the real one, so that only the search's own costs are timed:

1. **Overhead against study size.** The study is filled with synthetic finished trials
   (params, every epoch's value, the attributes a real trial stores) up to each `--sizes`, and
   one worker runs `--measured-trials` trials. Each phase is timed on the real call: the lock
   wait, the room check (stale trials, baselines, counts), creating the trial, the sampler,
   `trial.report`, `should_prune` and finishing the trial. Beside them, in the same run, the
   count as it was before issue 16: loading every trial.
2. **Throughput against workers.** `--workers` processes share a fresh study of
   `--fleet-trials` unpruned trials of `--trial-seconds` each; trials per second against the
   ideal (workers / trial seconds) and against what this machine's cores can sustain at the
   CPU time the workers spent per trial, the time each trial waited for the lock, the exact
   total checked afterwards, and for PostgreSQL the server connections the fleet held at its
   peak.

Prints tables, writes `scale.json` and `scale.png` into `--out`. How to read them:
docs/workers.md, "At scale".
"""

import argparse
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from search import linear as linear_command
from search.attrs import APPLIED_ATTR, EPOCHS_RUN_ATTR, TRAIN_CURVE_ATTR
from search.config import SearchConfig
from search.errors import UsageError
from search.flags import ArgumentParser, positive_float, positive_int
from search.objective import asks_pruner
from search.provenance import git_commit
from search.storage import database_url, reason, safe_url
from search.study import FINISHED
from search.tasks import linear
from search.trial_queries import trial_counts
from search.workers import Step, Worker

PROG = "python -m search.tools.scale"
STUDY = "scale"
# The phases of one trial, in the order a worker goes through them.
START_PHASES = ("lock wait", "room check", "create trial", "sampler")
PHASES = (*START_PHASES, "report", "prune check", "finish")
BEFORE = "count, loading every trial (before issue 16)"


class _Phases:
    """Seconds spent per phase, per trial; timers wrap the real calls."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.trials: list[dict[str, float]] = []

    @contextlib.contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.current[phase] += time.perf_counter() - started

    def wrap(self, owner: object, method: str, phase: str) -> None:
        """Time `owner.method` (on this instance only) as `phase`."""
        call = getattr(owner, method)

        def timed(*args, **kwargs):
            with self.timing(phase):
                return call(*args, **kwargs)

        setattr(owner, method, timed)

    def trial_done(self) -> None:
        self.trials.append(dict(self.current))
        self.current.clear()

    def median(self, phase: str) -> float:
        return statistics.median(t.get(phase, 0.0) for t in self.trials)


class _Silent:
    """A worker's progress display that shows nothing."""

    def trial_started(self, number: int, at: float) -> None:
        pass

    def epoch_done(self, number: int, epoch: int, val_loss: float, at: float) -> None:
        pass

    def trial_finished(self, line) -> None:
        pass

    def study_finished(self, finished: int) -> None:
        pass

    def trial_dropped(self, number: int, text: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def fixed_duration_objective(
    epochs: int, seconds: float, phases: _Phases
) -> Callable[[optuna.Trial], float]:
    """A trial that "trains" `seconds` in all, reporting a falling loss every epoch and asking
    the pruner where the real objective asks it."""

    def objective(trial: optuna.Trial) -> float:
        loss = 1.0 + random.Random(trial.number).random()
        for epoch in range(1, epochs + 1):
            time.sleep(seconds / epochs)
            loss *= 0.9
            with phases.timing("report"):
                trial.report(loss, epoch)
            if asks_pruner(epoch, epochs):
                with phases.timing("prune check"):
                    pruned = trial.should_prune()
                if pruned:
                    raise optuna.TrialPruned()
        return loss

    return objective


def _worker_args(
    url: str, study: str, trials: int, epochs: int, sampler: str, pruner: str = "median"
):
    flags = {"storage": url, "study-name": study, "trials": trials, "epochs": epochs}
    flags |= {"sampler": sampler, "pruner": pruner, "seed": 0}
    args = linear_command.build_parser().parse_args(
        [word for name, value in flags.items() for word in (f"--{name}", str(value))]
    )
    return SearchConfig.from_args(args)


def _instrumented_worker(config: SearchConfig, seconds: float, phases: _Phases) -> Worker:
    task = linear.build_task(config)
    objective = fixed_duration_objective(config.epochs, seconds, phases)
    worker = Worker(task, config, _Silent(), objective=objective)
    phases.wrap(worker.lock, "acquire", "lock wait")
    phases.wrap(worker, "_full", "room check")
    phases.wrap(worker.study, "ask", "create trial")
    sampler = worker.study.sampler
    for method in (
        "before_trial",
        "infer_relative_search_space",
        "sample_relative",
        "sample_independent",
    ):
        phases.wrap(sampler, method, "sampler")
    phases.wrap(worker.storage, "set_trial_state_values", "finish")
    phases.wrap(sampler, "after_trial", "finish")
    return worker


def synthetic_trials(space, epochs: int, count: int, seed: int) -> list[FrozenTrial]:
    """Finished trials as a search stores them: 70% complete, 30% pruned half-way."""
    rng = random.Random(seed)
    distributions = space.distributions()
    trials = []
    for _ in range(count):
        params = {}
        for name, distribution in distributions.items():
            if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                params[name] = rng.choice(distribution.choices)
            elif isinstance(distribution, optuna.distributions.IntDistribution):
                params[name] = rng.randint(distribution.low, distribution.high)
            else:
                params[name] = rng.uniform(distribution.low, distribution.high)
        pruned = rng.random() < 0.3
        ran = epochs // 2 if pruned else epochs
        curve = [1.0 + rng.random() * 0.9**epoch for epoch in range(1, ran + 1)]
        trials.append(
            optuna.trial.create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else min(curve),
                params=params,
                distributions=distributions,
                intermediate_values=dict(enumerate(curve, start=1)),
                user_attrs={
                    APPLIED_ATTR: space.describe(params),
                    EPOCHS_RUN_ATTR: ran,
                    TRAIN_CURVE_ATTR: [v * 0.8 for v in curve],
                    "test_mse": min(curve) * 1.1,
                },
            )
        )
    return trials


def overhead_by_size(
    url: str, sizes: Sequence[int], measured: int, epochs: int, sampler: str
) -> list[dict]:
    """Median seconds per phase of a trial, at each study size (one worker)."""
    rows, filled = [], 0
    for size in sorted(sizes):
        phases = _Phases()
        config = _worker_args(url, STUDY, size + 1 + measured, epochs, sampler)
        worker = _instrumented_worker(config, 0.0, phases)
        try:
            worker.study.add_trials(
                synthetic_trials(worker.task.space, epochs, size - filled, seed=size)
            )
            filled = size
            for _ in range(1 + measured):  # the first one warms the worker's trial cache
                worker.step()
                phases.trial_done()
            phases.trials.pop(0)
            rows.append(
                {
                    "size": size,
                    **{phase: phases.median(phase) for phase in PHASES},
                    "start": statistics.median(
                        sum(t.get(p, 0.0) for p in START_PHASES) for t in phases.trials
                    ),
                    BEFORE: _count_by_loading(worker),
                }
            )
        finally:
            worker.close()
        filled += 1 + measured
    return rows


def _count_by_loading(worker: Worker, repeats: int = 3) -> float:
    backend = getattr(worker.storage, "_backend", worker.storage)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        len(backend.get_all_trials(worker.study._study_id, deepcopy=False, states=FINISHED))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _fleet_worker(
    url: str,
    study: str,
    total: int,
    epochs: int,
    seconds: float,
    sampler: str,
    ready,
    results,
) -> None:
    _quiet()
    phases = _Phases()
    # No pruning: every trial lasts --trial-seconds, so that workers / seconds is the ideal.
    config = _worker_args(url, study, total, epochs, sampler, pruner="none")
    worker = _instrumented_worker(config, seconds, phases)
    # Start together: importing torch takes seconds per process, and a fleet whose first
    # workers ran alone for that long would measure the start-up, not the fleet.
    ready.wait()
    spans = []  # (started, finished) of each trial this worker ran
    cpu = time.process_time()  # all threads of this process: the heartbeats too
    try:
        while True:
            started = time.time()
            step = worker.step()
            if step == Step.DONE:
                break
            if step == Step.WAIT:
                time.sleep(0.05)
                continue
            spans.append((started, time.time()))
            phases.trial_done()
    finally:
        worker.close()
    results.put(
        {
            "spans": spans,
            "lock_waits": [t.get("lock wait", 0.0) for t in phases.trials],
            "cpu_seconds": time.process_time() - cpu,
        }
    )


def throughput_by_workers(
    url: str,
    workers: Sequence[int],
    trials: int,
    epochs: int,
    seconds: float,
    sampler: str,
) -> list[dict]:
    """Trials per second of fleets of `workers` processes, each on a fresh study."""
    rows = []
    for count in workers:
        study = f"{STUDY}-fleet-{count}-{uuid.uuid4().hex[:6]}"
        _worker_args(url, study, trials, epochs, sampler)  # validates the flags early
        reports, errors, connections = _run_fleet(
            url, count, _fleet_worker, (url, study, trials, epochs, seconds, sampler)
        )
        spans = [span for report in reports for span in report["spans"]]
        waits = [wait for report in reports for wait in report["lock_waits"]]
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        counts = _final_counts(url, study)
        rows.append(
            {
                "workers": count,
                "trials": len(spans),
                "trials_per_second": len(spans) / wall,
                "ideal": count / seconds,
                # What the machine's cores could sustain at the CPU time the workers spent per
                # trial (a database server on the same machine takes its share on top).
                "cpu_ceiling": (os.cpu_count() or 1)
                * len(spans)
                / sum(report["cpu_seconds"] for report in reports),
                "lock_wait_median": statistics.median(waits),
                "lock_wait_p90": statistics.quantiles(waits, n=10)[-1] if len(waits) > 1 else 0,
                "finished": counts["finished"],
                "running": counts["running"],
                "failed": counts["failed"],
                "exact": counts["finished"] == trials and counts["running"] == 0,
                "errors": errors,
                "connections_peak": connections,
            }
        )
    return rows


def _run_fleet(url: str, count: int, target: Callable, args: tuple) -> tuple[list, int, int | None]:
    """Run `target(*args, ready, results)` in `count` spawned processes that start together.

    Returns what each put into `results`, how many exited with an error, and the most
    connections the PostgreSQL server of `url` held meanwhile (None for SQLite).
    """
    context = multiprocessing.get_context("spawn")
    results, ready = context.Queue(), context.Barrier(count)
    processes = [context.Process(target=target, args=(*args, ready, results)) for _ in range(count)]
    with _ConnectionPeak(url) as peak:
        for process in processes:
            process.start()
        reports = [results.get() for _ in processes]
        for process in processes:
            process.join()
    return reports, sum(p.exitcode != 0 for p in processes), peak.peak


def _optuna_fleet_worker(
    storage, study: str, space, trials: int, seconds: float, ready, results
) -> None:
    """Plain Optuna: `study.optimize` for `trials` trials, no lock, no heartbeat."""
    _quiet()
    if isinstance(storage, tuple):  # (host, port) of a gRPC proxy
        storage = optuna.storages.GrpcStorageProxy(host=storage[0], port=storage[1])

    def objective(trial: optuna.Trial) -> float:
        space.suggest(trial)
        time.sleep(seconds)
        return random.random()

    loaded = optuna.load_study(study_name=study, storage=storage)
    ready.wait()
    started = time.time()
    loaded.optimize(objective, n_trials=trials)
    results.put((started, time.time()))


def _grpc_proxy(url: str, port: int) -> None:
    _quiet()
    optuna.storages.run_grpc_proxy_server(
        optuna.storages.get_storage(database_url(url)), host="127.0.0.1", port=port
    )


def grpc_against_direct(url: str, workers: int, trials: int, seconds: float) -> list[dict]:
    """Trials per second and server connections of `workers` plain Optuna processes, straight
    to PostgreSQL and through Optuna's gRPC storage proxy (one proxy process)."""
    try:
        import grpc  # noqa: F401  (Optuna imports it lazily; fail here, in one line)
    except ImportError:
        raise UsageError("--grpc-proxy needs grpcio: pip install grpcio") from None
    space = linear.build_task(_worker_args(url, STUDY, trials, 1, "tpe")).space
    port = _free_port()
    proxy = multiprocessing.get_context("spawn").Process(
        target=_grpc_proxy, args=(url, port), daemon=True
    )
    proxy.start()
    rows = []
    try:
        for route, storage in (("direct", database_url(url)), ("gRPC proxy", ("127.0.0.1", port))):
            study = f"{STUDY}-{route.split()[0].lower()}-{uuid.uuid4().hex[:6]}"
            optuna.create_study(study_name=study, storage=database_url(url))
            per_worker = max(1, trials // workers)
            spans, errors, connections = _run_fleet(
                url, workers, _optuna_fleet_worker, (storage, study, space, per_worker, seconds)
            )
            wall = max(end for _, end in spans) - min(start for start, _ in spans)
            rows.append(
                {
                    "route": route,
                    "workers": workers,
                    "trials_per_second": per_worker * workers / wall,
                    "ideal": workers / seconds,
                    "connections_peak": connections,
                    "errors": errors,
                }
            )
    finally:
        proxy.terminate()
        proxy.join()
    return rows


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _final_counts(url: str, study: str) -> dict[str, int]:
    storage = optuna.storages.RDBStorage(database_url(url))
    try:
        study_id = storage.get_study_id_from_name(study)
        counts = trial_counts(storage, study_id)
        failed = len(storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.FAIL,)))
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return {"finished": counts.finished, "running": counts.running, "failed": failed}


class _ConnectionPeak:
    """The most connections a PostgreSQL server held while the block ran (None for SQLite)."""

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_ConnectionPeak":
        if self.url.startswith("postgresql"):
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        # Autocommit: inside one transaction pg_stat_activity would show its first snapshot.
        engine = sqlalchemy.create_engine(self.url, pool_size=1, isolation_level="AUTOCOMMIT")
        query = sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        with engine.connect() as connection:
            while not self._stop.wait(0.2):
                self.peak = max(self.peak or 0, connection.execute(query).scalar_one() - 1)
        engine.dispose()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _format_overhead(rows: list[dict]) -> str:
    names = ["start", *PHASES, BEFORE]
    lines = ["| study size | " + " | ".join(names) + " |", "|---:" * (len(names) + 1) + "|"]
    for row in rows:
        cells = [f"{row[name] * 1000:.1f} ms" for name in names]
        lines.append(f"| {row['size']:,} | " + " | ".join(cells) + " |")
    first, last = rows[0], rows[-1]
    lines.append(
        f"start at {last['size']:,} trials / at {first['size']:,}: "
        f"{last['start'] / first['start']:.2f}x; the count before issue 16: "
        f"{last[BEFORE] / first[BEFORE]:.1f}x"
    )
    return "\n".join(lines)


def _format_throughput(rows: list[dict]) -> str:
    lines = [
        "| workers | trials/s | ideal | CPU ceiling | lock wait (median, p90) | exact total | "
        "failed | connections |",
        "|---:|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for row in rows:
        connections = "-" if row["connections_peak"] is None else str(row["connections_peak"])
        lines.append(
            f"| {row['workers']} | {row['trials_per_second']:.1f} | {row['ideal']:.0f} | "
            f"{row['cpu_ceiling']:.0f} | "
            f"{row['lock_wait_median'] * 1000:.0f} ms, {row['lock_wait_p90'] * 1000:.0f} ms | "
            f"{'yes' if row['exact'] and not row['errors'] else 'NO'} | {row['failed']} | "
            f"{connections} |"
        )
    return "\n".join(lines)


def _format_grpc(rows: list[dict]) -> str:
    lines = [
        "| plain Optuna, PostgreSQL | workers | trials/s | ideal | connections |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['route']} | {row['workers']} | {row['trials_per_second']:.1f} | "
            f"{row['ideal']:.0f} | {row['connections_peak']} |"
        )
    return "\n".join(lines)


def _plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, result in results.items():
        sizes = [row["size"] for row in result["overhead"]]
        left.plot(
            sizes,
            [row["start"] * 1000 for row in result["overhead"]],
            "o-",
            label=f"{name}: start (lock, count, create, sampler)",
        )
        left.plot(
            sizes,
            [row[BEFORE] * 1000 for row in result["overhead"]],
            "x--",
            label=f"{name}: count before issue 16",
        )
        fleet = result["throughput"]
        right.plot(
            [r["workers"] for r in fleet], [r["trials_per_second"] for r in fleet], "o-", label=name
        )
    if results:
        fleet = next(iter(results.values()))["throughput"]
        right.plot(
            [r["workers"] for r in fleet],
            [r["ideal"] for r in fleet],
            ":",
            color="gray",
            label="ideal (workers / trial seconds)",
        )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="finished trials in the study",
        ylabel="ms per trial",
        title="Starting a trial",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="worker processes",
        ylabel="trials per second",
        title="Throughput",
    )
    for axes in (left, right):
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Measure what a search worker adds around a trial as the study grows and "
        "as workers are added, on SQLite and PostgreSQL.",
    )
    add = parser.add_argument
    add(
        "--postgres",
        metavar="URL",
        help="also measure on this PostgreSQL server, in a database made for the run and "
        "dropped after it (SQLite is always measured)",
    )
    add(
        "--sizes",
        type=positive_int,
        nargs="+",
        default=[100, 1000, 5000],
        help="study sizes (finished trials) to time a trial's phases at",
    )
    add(
        "--measured-trials",
        type=positive_int,
        default=20,
        help="trials timed at each study size (the median is shown)",
    )
    add(
        "--workers",
        type=positive_int,
        nargs="+",
        default=[1, 4, 16, 32],
        help="worker processes of each throughput measurement",
    )
    add(
        "--fleet-trials",
        type=positive_int,
        default=128,
        help="trials of each throughput measurement",
    )
    add(
        "--trial-seconds",
        type=positive_float,
        default=0.5,
        help="how long one trial of the throughput measurement trains (sleeps)",
    )
    add("--epochs", type=positive_int, default=4, help="epochs (reports) per trial")
    add("--sampler", default="tpe", help="the search's sampler (as --sampler of the searches)")
    add(
        "--grpc-proxy",
        action="store_true",
        help="with --postgres: also compare plain Optuna workers (as many as the largest "
        "--workers) straight to the server and through Optuna's gRPC storage proxy (needs "
        "grpcio)",
    )
    add("--out", default="studies/scale", help="folder for scale.json and scale.png")
    return parser


def _measure(url: str, args: argparse.Namespace) -> dict:
    print(f"{safe_url(url)}: study sizes {args.sizes}", flush=True)
    overhead = overhead_by_size(url, args.sizes, args.measured_trials, args.epochs, args.sampler)
    print(_format_overhead(overhead), flush=True)
    print(f"{safe_url(url)}: workers {args.workers}", flush=True)
    throughput = throughput_by_workers(
        url, args.workers, args.fleet_trials, args.epochs, args.trial_seconds, args.sampler
    )
    print(_format_throughput(throughput), flush=True)
    return {"overhead": overhead, "throughput": throughput}


def _fresh_postgres_database(url: str) -> str:
    """A new database on the server of `url`, for this run alone: its URL."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        parsed = None
    if parsed is None or parsed.get_backend_name() != "postgresql":
        raise UsageError(f"--postgres {safe_url(url)!r}: use postgresql://user:password@host/db")
    name = f"regsearch_scale_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(database_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        raise UsageError(
            f"cannot create a database on {safe_url(url)!r}: {reason(error)}"
        ) from None
    finally:
        engine.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    parsed = sqlalchemy.engine.make_url(url)
    engine = sqlalchemy.create_engine(
        database_url(parsed.set(database="postgres").render_as_string(False)),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE {parsed.database} WITH (FORCE)"))
    engine.dispose()


def _quiet() -> None:
    # The heartbeat API is marked experimental; the warnings would drown the tables.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.grpc_proxy and not args.postgres:
        parser.error("--grpc-proxy needs --postgres: the proxy serves a PostgreSQL database")
    _quiet()
    out = Path(args.out)
    results: dict[str, dict] = {}
    databases: list[str] = []  # made on the --postgres server for this run, dropped after it
    try:
        if args.postgres:
            databases.append(_fresh_postgres_database(args.postgres))
        with tempfile.TemporaryDirectory() as folder:
            results["SQLite"] = _measure(f"sqlite:///{folder}/scale.db", args)
        for url in databases:
            results["PostgreSQL"] = _measure(url, args)
            if args.grpc_proxy:
                grpc = grpc_against_direct(
                    url, max(args.workers), args.fleet_trials, args.trial_seconds
                )
                results["PostgreSQL"]["grpc_proxy"] = grpc
                print(_format_grpc(grpc), flush=True)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        for url in databases:
            _drop_postgres_database(url)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "commit": git_commit(),
        "flags": {k: v for k, v in vars(args).items() if k != "postgres"},
        "results": results,
    }
    (out / "scale.json").write_text(json.dumps(record, indent=1))
    _plot(results, out / "scale.png")
    print(f"wrote {out / 'scale.json'} and {out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
