"""A curve bank: unpruned CIFAR-10 learning curves to test pruning ideas on in seconds.

`python -m search.tools.bank --runs 150 --jobs 2` trains configurations spread over the search
space by a scrambled Sobol sequence, each for every epoch with early stopping off, and records
per epoch the validation, train-probe and test loss and accuracy. Early stopping is left to
whoever replays the curves: it is a function of the validation curve alone, so a recorded full
curve gives the exact run of every patience. A few configurations are repeated over seeds to
measure the seed noise. One JSON line per run; a rerun skips the runs already recorded, so an
interrupted recording resumes.

`--import-storage URL` adds the completed trials of a finished search of the same protocol
instead: the unpruned TPE searches run anyway, with the curves as the search trained them
(cut by the trial's patience) and the test set at the best epoch only.
"""

import argparse
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from scipy.stats import qmc

from models.cifar_data import DataError
from search import cifar as cifar_command
from search.attrs import (
    BEST_EPOCH_ATTR,
    SECONDS_ATTR,
    TEST_ACCURACY_ATTR,
    TEST_LOSS_ATTR,
    TRAIN_CURVE_ATTR,
)
from search.errors import UsageError
from search.flags import ArgumentParser, positive_int
from search.objective import training_seed, trial_seed, validation_curve
from search.space import ACTIVATION, DROPOUT, L1, PATIENCE, WEIGHT_DECAY, SearchSpace
from search.storage import find_studies, safe_url
from search.study import stored_settings
from search.tasks import cifar
from search.tools.protocols import PROTOCOLS, protocol_flags
from search.training import EpochStats, evaluate, train

PROG = "python -m search.tools.bank"
DEFAULT_BANK = "studies/bank/cifar-10k.jsonl"
# Repeated over seeds: the two baselines and a strongly regularized configuration of the kind
# that won the unpruned searches, to measure the seed noise where the answer lies.
REPEATED = {
    "none": {DROPOUT: 0.0, ACTIVATION: "relu"},
    "reference": {DROPOUT: 0.25, ACTIVATION: "relu"},
    "strong": {DROPOUT: 0.6, ACTIVATION: "gelu"},
}
CURVES = ("val_loss", "val_accuracy", "train_loss", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class Run:
    """One planned training run of the bank."""

    name: str
    params: dict
    seed: int


def planned_runs(space: SearchSpace, sobol_runs: int, repeats: int, seed: int) -> list[Run]:
    """The repeated configurations first, then `sobol_runs` Sobol points, in a fixed order."""
    runs = [
        Run(f"{name}-{k}", space.params_for(**config), trial_seed(seed, 1000 * (i + 1) + k))
        for i, (name, config) in enumerate(REPEATED.items())
        for k in range(repeats)
    ]
    # Drawn in a power of 2 (Sobol's balance needs it), then cut: a prefix of the sequence.
    points = qmc.Sobol(d=4, scramble=True, seed=seed).random_base2(
        max(0, sobol_runs - 1).bit_length()
    )
    for i, (u_dropout, u_wd, u_l1, u_act) in enumerate(points[:sobol_runs]):
        params = {
            DROPOUT: space.dropout[0] + u_dropout * (space.dropout[1] - space.dropout[0]),
            WEIGHT_DECAY: _log_uniform(u_wd, space.weight_decay),
            L1: _log_uniform(u_l1, space.l1),
            ACTIVATION: space.activations[min(int(u_act * len(space.activations)), 5)],
            PATIENCE: space.patience[1],  # off: the replay applies every patience
        }
        runs.append(Run(f"sobol-{i:04d}", params, trial_seed(seed, i)))
    return runs


def _log_uniform(u: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(low * (high / low) ** u)


def measured_every_epoch(record: dict) -> bool:
    """Whether a run measured the test set at every epoch: recorded here, not imported."""
    return "test_accuracy" in record


def study_runs(study: optuna.Study, protocol: str, label: str) -> list[dict]:
    """The completed trials of a search of `protocol` as bank runs named `label-<number>`.

    A trial's curves end where its patience stopped it, and a search measures the test set
    at the best epoch only: such runs serve the diagnostics (search.tools.fidelity) and whoever
    replays validation curves; the simulator's surrogate needs every epoch's test accuracy
    and takes the recorded runs only.
    """
    settings = stored_settings(study)
    wanted = PROTOCOLS[protocol]
    sizes = [wanted["train_size"], wanted["val_size"], wanted["test_size"]]
    if settings.get("split_sizes") != sizes or settings.get("epochs") != wanted["epochs"]:
        raise UsageError(
            f"study {study.study_name!r} ran {settings.get('epochs')} epochs on split sizes "
            f"{settings.get('split_sizes')}, not the {protocol} protocol ({wanted['epochs']} "
            f"epochs on {sizes}): pick its --protocol or another study"
        )
    runs = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        val_loss = validation_curve(trial)
        if not val_loss:
            continue  # diverged before its first epoch, a gap, or a non-finite value
        attrs = trial.user_attrs
        runs.append(
            {
                "run": f"{label}-{trial.number:04d}",
                "params": trial.params,
                "seed": training_seed(settings["seed"], trial),
                "split_seed": settings["seed"],  # recorded runs: the bank's --seed
                "diverged": False,
                "seconds": round(attrs.get(SECONDS_ATTR, 0.0), 1),
                "val_loss": [round(value, 5) for value in val_loss],
                "train_loss": [round(v, 5) for v in attrs.get(TRAIN_CURVE_ATTR, [])],
                "best_epoch": attrs.get(BEST_EPOCH_ATTR),
                "test_loss_at_best": attrs.get(TEST_LOSS_ATTR),
                "test_accuracy_at_best": attrs.get(TEST_ACCURACY_ATTR),
            }
        )
    return runs


def read_bank(path: str | Path) -> list[dict]:
    """The runs recorded in a bank file, in the order they were written."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no curve bank at {path}: record one with `{PROG} --out {path}`")
    with path.open() as lines:
        return [json.loads(line) for line in lines if line.strip()]


# One task per worker process, built once (data decoding and the split take seconds).
_task = None


def _init_worker(task_args: argparse.Namespace) -> None:
    global _task
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool
    torch.set_num_threads(1)
    _task = cifar.task_from_args(task_args)


def _record(run: Run) -> dict:
    task = _task
    regularizers = task.space.regularizers(run.params)
    torch.manual_seed(run.seed)
    model = task.build_model(regularizers)
    curves: dict[str, list] = {key: [] for key in CURVES}

    def on_epoch(stats: EpochStats) -> None:
        # The test set at every epoch: a replayed patience may stop at any of them.
        test = evaluate(model, task.data.test, task.config.loss, task.data.transform)
        values = (stats.val_loss, stats.val_accuracy, stats.train_loss, test.loss, test.accuracy)
        for key, value in zip(CURVES, values, strict=True):
            curves[key].append(round(value, 5))

    result = train(model, task.data, task.train_config(regularizers), run.seed, on_epoch)
    return {
        "run": run.name,
        "params": run.params,
        "seed": run.seed,
        "diverged": result.diverged,
        "seconds": round(result.seconds, 1),
        **curves,
    }


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Record unpruned CIFAR-10 learning curves (every epoch's validation, train "
        "and test loss and accuracy) over a Sobol design of the search space.",
    )
    add = parser.add_argument
    add("--out", default=DEFAULT_BANK, help="bank file (JSON lines); a rerun resumes it")
    add("--protocol", choices=tuple(PROTOCOLS), default="cifar-10k", help="data sizes, epochs")
    add("--runs", type=positive_int, default=150, help="Sobol points (after the repeats)")
    add("--repeats", type=int, default=3, help="seeds of each repeated configuration")
    add("--jobs", type=positive_int, default=2, help="worker processes, one thread each")
    add("--seed", type=int, default=0, help="seeds the data split, the design and the runs")
    add("--data", default=os.environ.get("CIFAR10_ROOT"), help="CIFAR-10; see search.cifar")
    add("--cache-dir", default="studies/cache", help="decoded image cache")
    add(
        "--import-storage",
        metavar="URL",
        help="instead of training, add the completed trials "
        "of a finished search of --protocol stored at URL",
    )
    add("--study-name", default="cifar", help="the study to import from --import-storage")
    add(
        "--label",
        help="name prefix of the imported runs, one per study (default: "
        "<study name>-s<study seed>)",
    )
    return parser


def _task_args(args: argparse.Namespace) -> argparse.Namespace:
    """The protocol as `python -m search.cifar` flags, parsed by its own parser."""
    return cifar_command.build_parser().parse_args(
        [
            *protocol_flags(args.protocol),
            "--seed", str(args.seed),
            "--device", "cpu",
            "--cache-dir", args.cache_dir,
            *(["--data", args.data] if args.data else []),
        ]
    )  # fmt: skip


def _stop(signum: int, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the recording as Ctrl-C does


def _import(args: argparse.Namespace, out: Path) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = find_studies([args.import_storage], [args.study_name], "--import-storage")[0]
        label = args.label or f"{study.study_name}-s{stored_settings(study)['seed']}"
        runs = study_runs(study, args.protocol, label)
        done = {record["run"] for record in read_bank(out)} if out.exists() else set()
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    new = [run for run in runs if run["run"] not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as bank:
        bank.writelines(json.dumps(run) + "\n" for run in new)
    source = f"study {study.study_name!r} in {safe_url(args.import_storage)}"
    print(
        f"{len(new)} completed trials of {source} added to {out} as {label}-<number>"
        f" ({len(runs) - len(new)} already there)"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.import_storage:
        return _import(args, out)
    task_args = _task_args(args)
    try:
        space = cifar.task_from_args(task_args).space  # checks the data before workers start
        done = {record["run"] for record in read_bank(out)} if out.exists() else set()
    except (UsageError, DataError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    todo = [
        run
        for run in planned_runs(space, args.runs, args.repeats, args.seed)
        if run.name not in done
    ]
    print(f"{len(done)} runs recorded in {out}, {len(todo)} to go with {args.jobs} workers")
    out.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _stop)
    pool = multiprocessing.get_context("spawn").Pool(
        args.jobs, initializer=_init_worker, initargs=(task_args,)
    )
    try:
        with out.open("a") as bank:
            for record in pool.imap_unordered(_record, todo):
                # A whole line per finished run: an interrupted recording loses only the
                # runs still training.
                bank.write(json.dumps(record) + "\n")
                bank.flush()
                best = min(record["val_loss"], default=float("nan"))
                seconds = record["seconds"]
                print(f"{record['run']}: best val_loss {best:.4f} ({seconds:.0f}s)", flush=True)
    except KeyboardInterrupt:
        pool.terminate()
        print(f"{PROG}: interrupted; the finished runs are kept in {out}", file=sys.stderr)
        return 130
    pool.close()
    pool.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
