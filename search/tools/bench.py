"""Measure the project's speed on this machine: `python -m search.tools.bench [--quick]`.

Four numbers, each against the honest alternative: CIFAR-10 training throughput against the
reference per-sample DataLoader loop (search/tools/baseline_loader.py), epochs saved by the default
pruner against an unpruned search, wall time until a CIFAR-10 search first reaches a
configuration within 1 point of its best test accuracy (1 and 2 worker processes), and what one
SQLite `trial.report` costs against an epoch of training. Prints a table and writes everything,
with the machine and the code's git commit, to JSON. How to read it: docs/speed.md.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from models.cifar_data import CifarArrays, DataError, load_cifar10
from models.cnn import CifarCNN
from search import linear as linear_command
from search.config import SearchConfig
from search.errors import UsageError
from search.flags import ArgumentParser, add_data_flags, non_negative_int, positive_int
from search.fused import FusedTrainer
from search.fused_worker import GPU_FUSE, fuse_slots
from search.metrics import CLASSIFICATION, metric_for
from search.objective import prune_interval, run_configuration
from search.provenance import git_commit
from search.space import Regularizers, SearchSpace
from search.storage import open_storage
from search.task import Task, resolve_device
from search.tasks import cifar, linear
from search.tools.baseline_loader import reference_images_per_second
from search.tools.protocols import protocol_flags
from search.training import Split, TaskData, TrainConfig, train

BATCH_SIZE = 32  # the reference training script's
GOOD_MARGIN = 0.01  # "a good result": test accuracy within 1 point of the search's best


@dataclass(frozen=True)
class Sizes:
    throughput_steps: int  # timed training steps of batch 32, per loop
    linear_trials: int  # per search (pruned and unpruned)
    linear_epochs: int
    cifar_prune_trials: int  # 0: skip the CIFAR-10 pruning comparison
    search_trials: int  # CIFAR-10 trials of the time-to-result searches
    cifar_protocol: str  # the CIFAR-10 searches' sizes and epochs (search/tools/protocols.py)
    fused_linear_trials: int  # the linear search run unfused and fused
    fused_steps: int  # timed batches of K fused CIFAR-10 slots and of K processes


SIZES = {
    "tiny": Sizes(4, 3, 20, 0, 2, "cifar-tiny", 6, 4),
    "quick": Sizes(60, 20, 100, 0, 6, "cifar-tiny", 50, 30),
    "full": Sizes(300, 50, 100, 50, 20, "cifar-2k", 50, 100),
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m search.tools.bench",
        description=__doc__.splitlines()[0],
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="small sizes: under 3 minutes on 2 CPU cores"
    )
    mode.add_argument("--tiny", action="store_true", help="smallest sizes, to test the benchmark")
    mode.add_argument(
        "--fused-only",
        action="store_true",
        help="only fused against unfused (the linear search, CIFAR-10 images/s): about 2 "
        "minutes on a GPU",
    )
    add = parser.add_argument
    add("--out", default="studies/bench.json", help="JSON file the results are written to")
    add_data_flags(parser)
    add(
        "--threads",
        type=non_negative_int,
        default=0,
        help="torch CPU threads for every measurement (0: torch's default, one per core)",
    )
    add("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train")
    add(
        "--fuse",
        type=positive_int,
        default=None,
        help="K of the fused measurements, in every mode: the linear search at --fuse K "
        "against --fuse 1, and K CIFAR-10 CNNs trained in one process against K processes "
        "(default: the linear search's own default on the device, 4 on a CPU and "
        f"{GPU_FUSE} on a GPU; {GPU_FUSE} CNNs)",
    )
    return parser


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        # The instruction set of the kernels: runs on AVX-512 and AVX2 machines do not compare.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        # Other processes on the cores skew every timing: the load says how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "measured_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
    }


def project_images_per_second(
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    device: torch.device,
    threads: int,
    ready: threading.Barrier,  # a manager's proxy of one, shared by the processes timed together
) -> float:
    """Train `steps` batches with the project's loop (one epoch of `train`); images/second."""
    torch.set_num_threads(threads)
    n = steps * batch_size
    one_batch = Split(images[:batch_size], labels[:batch_size]).to(device)
    data = TaskData(Split(images[:n], labels[:n]).to(device), one_batch, one_batch, cifar.normalize)
    config = TrainConfig("adam", 1e-3, batch_size, 1, "cross_entropy")

    def seconds(split_data: TaskData) -> float:
        torch.manual_seed(0)
        model = CifarCNN(dropout=0.25).to(device, memory_format=torch.channels_last)
        return train(model, split_data, config, seed=0).seconds

    # The first optimizer of a process imports torch._dynamo (seconds): pay it untimed.
    seconds(TaskData(one_batch, one_batch, one_batch, cifar.normalize))
    ready.wait()
    return n / seconds(data)


def images_per_second(
    measure: Callable[..., float],
    processes: int,
    threads: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    device: torch.device,
) -> float:
    """Summed images/second of `measure` in `processes` fresh processes timed together.

    Fresh processes start as the original training script would, with the default allocator
    settings (the project's loop sets its own in `train`); the barrier lines their timed steps
    up.
    """
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        ready = manager.Barrier(processes, timeout=600)
        args = (images, labels, steps, BATCH_SIZE, device, threads, ready)
        return sum(pool.starmap(measure, [args] * processes))


def throughput(arrays: CifarArrays, steps: int, device: torch.device) -> dict:
    """Images/second of the project's loop and of the reference, as one loop and side by side.

    One loop has all torch threads. Side by side is one single-threaded process per thread,
    as `--jobs` runs its workers: on a few CPU cores small batches keep one process's threads
    waiting on each other, so together they train more images a second.
    """
    threads = torch.get_num_threads()
    n = steps * BATCH_SIZE
    data = (arrays.train_images[:n], arrays.train_labels[:n], steps, device)
    result: dict = {"steps": steps, "batch_size": BATCH_SIZE}
    layouts = {"one_loop": (1, threads)}
    if threads > 1:  # with one thread, side by side is the one loop again
        layouts["side_by_side"] = (threads, 1)
    for layout, (processes, threads_each) in layouts.items():
        project = images_per_second(project_images_per_second, processes, threads_each, *data)
        seed = images_per_second(reference_images_per_second, processes, threads_each, *data)
        result[layout] = {
            "processes": processes,
            "threads_each": threads_each,
            "project_images_per_s": round(project, 1),
            "reference_images_per_s": round(seed, 1),
            "ratio": round(project / seed, 2),
        }
    return result


def module_env() -> dict[str, str]:
    """The environment for `python -m search...` children: this checkout importable."""
    root = str(Path(__file__).resolve().parents[2])  # the checkout holding search/tools/
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _run_search(module: str, args: Sequence[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", module, *args], env=module_env(), capture_output=True, text=True
    )
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{module} failed: {last[0]}")
    return time.perf_counter() - started


def study_summary(storage: str, name: str, test_key: str) -> dict:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    best = study.best_trial
    return {
        "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "epochs_trained": sum(len(t.intermediate_values) for t in trials),
        "best_val_loss": round(best.value, 5),
        test_key: round(best.user_attrs[test_key], 5),
    }


def pruning_saving(workdir: Path, task: str, trials: int, extra: Sequence[str]) -> dict:
    """The default pruner against none, same seed, same trial count (baselines included)."""
    test_key = metric_for({"task": task}).key
    result: dict = {"task": task, "args": list(extra)}
    for label, pruner_args in (("unpruned", ["--pruner", "none"]), ("pruned", [])):
        storage = f"sqlite:///{workdir / f'{task}-{label}.db'}"
        args = ["--trials", str(trials), "--storage", storage, *pruner_args, *extra]
        seconds = _run_search(f"search.{task}", args)
        result[label] = study_summary(storage, task, test_key) | {"seconds": round(seconds, 1)}
    result["epoch_ratio"] = round(
        result["pruned"]["epochs_trained"] / result["unpruned"]["epochs_trained"], 3
    )
    return result


def time_to_result(workdir: Path, trials: int, cifar_args: Sequence[str]) -> list:
    """Wall seconds from launch until a trial first lands within 1 point of the best accuracy.

    The search runs as `search.cifar --jobs N`, which splits the process's torch threads
    between its N workers.
    """
    rows = []
    for jobs in (1, 2):
        storage = f"sqlite:///{workdir / f'time-to-result-{jobs}.db'}"
        launched = datetime.datetime.now()
        seconds = _run_search(
            "search.cifar",
            ["--storage", storage, *cifar_args, "--trials", str(trials), "--jobs", str(jobs)],
        )
        study = optuna.load_study(study_name="cifar", storage=storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        accuracy = CLASSIFICATION.key
        best_accuracy = study.best_trial.user_attrs[accuracy]
        first_good = min(
            t.datetime_complete
            for t in complete
            if t.user_attrs[accuracy] >= best_accuracy - GOOD_MARGIN
        )
        rows.append(
            {
                "jobs": jobs,
                "complete_trials": len(complete),
                "best_test_accuracy": round(best_accuracy, 4),
                "seconds_to_good": round((first_good - launched).total_seconds(), 1),
                "seconds_total": round(seconds, 1),
            }
        )
    return rows


def storage_overhead(workdir: Path, cifar_epoch_seconds: float) -> dict:
    """Milliseconds per `trial.report` and per `should_prune` against an epoch of training."""
    storage = open_storage(f"sqlite:///{workdir / 'overhead.db'}")
    study = optuna.create_study(storage=storage, pruner=optuna.pruners.MedianPruner(5, 1))
    epochs, report_s, prune_s = 20, [], []

    def objective(trial: optuna.Trial) -> float:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            trial.report(1.0 / epoch + trial.number * 1e-3, epoch)
            t1 = time.perf_counter()
            trial.should_prune()
            prune_s.append(time.perf_counter() - t1)
            report_s.append(t1 - t0)
        return 1.0

    study.optimize(objective, n_trials=10)
    task = linear.task_from_args(linear_command.build_parser().parse_args([]))
    linear_run = run_configuration(task, task.space.params_for(dropout=0.0), seed=0).result
    report_ms = 1e3 * sum(report_s) / len(report_s)
    prune_ms = 1e3 * sum(prune_s) / len(prune_s)
    linear_epoch_ms = 1e3 * linear_run.seconds / linear_run.epochs_run
    linear_checks = 1 / prune_interval(task.config.epochs)
    return {
        "report_ms": round(report_ms, 2),
        "should_prune_ms": round(prune_ms, 2),
        "linear_epoch_ms": round(linear_epoch_ms, 2),
        "linear_storage_share": round(
            (report_ms + linear_checks * prune_ms)
            / (report_ms + linear_checks * prune_ms + linear_epoch_ms),
            3,
        ),
        "cifar_epoch_s": round(cifar_epoch_seconds, 1),
        "cifar_storage_share": round((report_ms + prune_ms) / 1e3 / cifar_epoch_seconds, 6),
    }


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def linear_default_fuse(device: str, trials: int) -> int:
    """The --fuse that `python -m search.linear --trials trials --device device` takes when
    not given."""
    args = linear_command.build_parser().parse_args(["--device", device, "--trials", str(trials)])
    return fuse_slots(linear.task_from_args(args), SearchConfig.from_args(args))


def fused_linear(workdir: Path, trials: int, slots: int | None, device: str) -> dict:
    """The linear search unfused and with --fuse `slots` (None: the search's default), one
    after the other in this run: wall and CPU seconds (CPU time counts on a busy machine too),
    their ratios, the answers."""
    test_key = metric_for({"task": "linear"}).key
    slots = slots or linear_default_fuse(device, trials)
    result: dict = {"trials": trials, "slots": slots}
    for label, fuse in (("unfused", 1), ("fused", slots)):
        storage = f"sqlite:///{workdir / f'fused-linear-{label}.db'}"
        args = ["--trials", str(trials), "--storage", storage, "--device", device]
        cpu = _children_cpu_seconds()
        seconds = _run_search("search.linear", [*args, "--fuse", str(fuse)])
        result[label] = study_summary(storage, "linear", test_key) | {
            "seconds": round(seconds, 1),
            "cpu_seconds": round(_children_cpu_seconds() - cpu, 1),
        }
    for key in ("seconds", "cpu_seconds"):
        result[f"{key}_ratio"] = round(result["unfused"][key] / result["fused"][key], 2)
    return result


def fused_images_per_second(
    images: torch.Tensor, labels: torch.Tensor, steps: int, slots: int, device: torch.device
) -> float:
    """Training images/second of `slots` CIFAR-10 CNNs fused in this process (search/fused.py),
    batch 32 each, all torch threads; the first epoch (allocations, kernels) is untimed."""
    n = steps * BATCH_SIZE
    one_batch = Split(images[:BATCH_SIZE], labels[:BATCH_SIZE]).to(device)
    data = TaskData(Split(images[:n], labels[:n]).to(device), one_batch, one_batch, cifar.normalize)
    space = SearchSpace(
        dropout=(0.0, 0.9), weight_decay=(1e-6, 1e-2), l1=(1e-7, 1e-3), patience=(1, 8)
    )
    config = TrainConfig("adam", 1e-3, BATCH_SIZE, 1, "cross_entropy")

    def build(reg: Regularizers) -> CifarCNN:
        return CifarCNN(reg.dropout, reg.activation).to(memory_format=torch.channels_last)

    trainer = FusedTrainer(Task("cifar", data, space, config, build), slots)
    for k in range(slots):
        trainer.start(k, Regularizers(dropout=0.25), seed=k)
    trainer.train_epoch()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    trainer.train_epoch()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return slots * n / (time.perf_counter() - started)


def fused_throughput(arrays: CifarArrays, steps: int, slots: int, device: torch.device) -> dict:
    """CIFAR-10 images/s of `slots` fused slots in one process against `slots` processes."""
    threads = torch.get_num_threads()
    data = (arrays.train_images, arrays.train_labels)
    fused = fused_images_per_second(*data, steps, slots, device)
    n = steps * BATCH_SIZE
    apart = images_per_second(
        project_images_per_second,
        slots,
        max(1, threads // slots),
        arrays.train_images[:n],
        arrays.train_labels[:n],
        steps,
        device,
    )
    return {
        "slots": slots,
        "steps": steps,
        "fused_images_per_s": round(fused, 1),
        "processes_images_per_s": round(apart, 1),
        "ratio": round(fused / apart, 2),
    }


def format_fused(results: dict) -> list[str]:
    lines = []
    if "fused_linear" in results:
        f = results["fused_linear"]
        u, v = f["unfused"], f["fused"]
        lines.append(
            f"fused linear {f['trials']} trials, --fuse {f['slots']}: {v['seconds']:.1f}s against "
            f"{u['seconds']:.1f}s unfused: x{f['seconds_ratio']:.2f} wall, "
            f"x{f['cpu_seconds_ratio']:.2f} CPU ({v['cpu_seconds']:.1f} vs {u['cpu_seconds']:.1f}"
            f" CPU s); best val {v['best_val_loss']:.4f} vs {u['best_val_loss']:.4f}"
        )
    if "fused_throughput" in results:
        t = results["fused_throughput"]
        lines.append(
            f"fused CIFAR-10 {t['slots']} slots: {t['fused_images_per_s']:.0f} img/s against "
            f"{t['processes_images_per_s']:.0f} img/s in {t['slots']} processes: x{t['ratio']:.2f}"
        )
    return lines


def format_table(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cpu_capability']}), {m['cores']} cores, "
        f"{m['torch_threads']} torch threads, "
        f"torch {m['torch']}, gpu {m['gpu'] or 'none'}, load {m['load_average_1min']}",
        *format_fused(results),
    ]
    if "throughput" not in results:  # --fused-only
        return "\n".join(lines)
    tp, ov = results["throughput"], results["storage_overhead"]
    for layout in ("one_loop", "side_by_side"):
        if layout in tp:
            row = tp[layout]
            lines.append(
                f"throughput   {row['processes']} x {row['threads_each']} thread(s): project "
                f"{row['project_images_per_s']:.0f} img/s, reference "
                f"{row['reference_images_per_s']:.0f} img/s: x{row['ratio']:.2f} "
                f"({tp['steps']} steps of {tp['batch_size']} each)"
            )
    for saving in results["pruning"]:
        p, u = saving["pruned"], saving["unpruned"]
        key = metric_for({"task": saving["task"]}).key
        lines.append(
            f"pruning      {saving['task']}: {p['epochs_trained']} of {u['epochs_trained']} "
            f"epochs ({saving['epoch_ratio']:.0%}), best val {p['best_val_loss']:.4f} vs "
            f"{u['best_val_loss']:.4f}, {key} {p[key]:.4f} vs {u[key]:.4f}"
        )
    for row in results["time_to_result"]:
        lines.append(
            f"time-to-good jobs {row['jobs']}: {row['seconds_to_good']:.1f}s to within 1 point "
            f"of {row['best_test_accuracy']:.3f} ({row['complete_trials']} complete trials, "
            f"{row['seconds_total']:.1f}s in all)"
        )
    lines.append(
        f"storage      report {ov['report_ms']:.2f} ms, should_prune {ov['should_prune_ms']:.2f} "
        f"ms; linear epoch {ov['linear_epoch_ms']:.2f} ms (storage {ov['linear_storage_share']:.0%}"
        f" of a trial), CIFAR-10 epoch {ov['cifar_epoch_s']:.0f}s"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    mode = "tiny" if args.tiny else "quick" if args.quick or args.fused_only else "full"
    sizes = SIZES[mode]
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the search processes
    device = resolve_device(args.device)
    arrays = load_cifar10(args.data, cache_dir=args.cache_dir)
    cifar_args = [
        *(["--data", args.data] if args.data else []),
        *("--cache-dir", args.cache_dir, "--device", args.device),
        *protocol_flags(sizes.cifar_protocol),
    ]
    results: dict = {"mode": mode, "sizes": asdict(sizes), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="regsearch-bench-") as tmp:
        workdir = Path(tmp)
        results["fused_linear"] = fused_linear(
            workdir, sizes.fused_linear_trials, args.fuse, args.device
        )
        results["fused_throughput"] = fused_throughput(
            arrays, sizes.fused_steps, args.fuse or GPU_FUSE, device
        )
        if args.fused_only:
            return results
        results["throughput"] = throughput(arrays, sizes.throughput_steps, device)
        results["pruning"] = [
            pruning_saving(
                workdir,
                "linear",
                sizes.linear_trials,
                # One trial at a time: the pruner's saving alone (fused, the default on a CPU,
                # it decides with up to 4 trials unfinished), as docs/speed.md records it.
                ["--device", args.device, "--epochs", str(sizes.linear_epochs), "--fuse", "1"],
            )
        ]
        if sizes.cifar_prune_trials:
            results["pruning"].append(
                pruning_saving(workdir, "cifar", sizes.cifar_prune_trials, cifar_args)
            )
        results["time_to_result"] = time_to_result(workdir, sizes.search_trials, cifar_args)
        cifar_epoch_s = 45_000 / results["throughput"]["one_loop"]["project_images_per_s"]
        results["storage_overhead"] = storage_overhead(workdir, cifar_epoch_s)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    if out.is_dir():
        print(f"{parser.prog}: error: --out {out} is a folder: name a .json file", file=sys.stderr)
        return 2
    try:
        results = run(args)
    except (UsageError, DataError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
