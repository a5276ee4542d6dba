"""Replay pruners over a finished search's learning curves: `python -m search.tools.replay`.

"How many epochs would this pruner have saved on my search, and would it have kept the best
trial?" answered in seconds, without training anything. The recorded validation curves are
fed, one trial at a time in the order the trials started, into a fresh in-memory study that
runs the real Optuna pruner, built as the search CLIs build it and asked at the epochs the
objective asks (search/objective.py). Replay an unpruned search (`--pruner none`): a curve
that a pruner cut short cannot be extended.

A replay cannot show how the sampler reacts. In a real pruned search TPE learns from the
pruned trials too and proposes other trials. A sampler that ignores results (`--sampler
random`) proposes the same trials either way, and then the replay equals the real pruned
search of one trial at a time (`--fuse 1`) epoch for epoch (tests/search/tools/test_replay.py
checks this); a fused search asked the pruner with several trials unfinished.
"""

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.config import PRUNERS
from search.errors import UsageError
from search.flags import ArgumentParser, positive_int
from search.metrics import metric_for
from search.objective import asks_pruner, prune_interval
from search.storage import find_studies
from search.study import make_pruner, stored_settings

PROG = "python -m search.tools.replay"


@dataclass(frozen=True)
class Replay:
    """What a search would have done under one pruner."""

    pruner: str
    warmup_epochs: int | None  # None: the recorded search itself
    epochs: int  # epochs trained, early stopping included
    pruned: int
    best: FrozenTrial | None  # the recorded trial that would have won; None if none completed


def curve(trial: FrozenTrial) -> list[tuple[int, float]]:
    return sorted(trial.intermediate_values.items())


def as_recorded(trials: list[FrozenTrial]) -> Replay:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return Replay(
        pruner="recorded",
        warmup_epochs=None,
        epochs=sum(len(t.intermediate_values) for t in trials),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        best=min(complete, key=lambda t: t.value, default=None),
    )


def replay(
    trials: list[FrozenTrial],
    pruner: optuna.pruners.BasePruner,
    epochs: int,
    study_name: str,
) -> tuple[int, list[FrozenTrial], list[FrozenTrial]]:
    """Epochs trained, the recorded trials kept (COMPLETE) and those the pruner stopped.

    `study_name` must be the recorded study's: Hyperband assigns brackets by a hash of the
    study name and the trial number.
    """
    study = optuna.create_study(study_name=study_name, direction="minimize", pruner=pruner)
    trained, kept, stopped = 0, [], []
    for recorded in trials:
        trial = study.ask()
        cut = False
        for epoch, value in curve(recorded):
            trial.report(value, epoch)
            trained += 1
            if asks_pruner(epoch, epochs) and trial.should_prune():
                cut = True
                break
        if cut or recorded.state == TrialState.PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
            stopped.append(recorded)
        elif recorded.state == TrialState.COMPLETE:
            study.tell(trial, recorded.value)
            kept.append(recorded)
        else:
            study.tell(trial, state=TrialState.FAIL)
    return trained, kept, stopped


def replay_pruner(
    trials: list[FrozenTrial], name: str, warmup_epochs: int, epochs: int, study_name: str
) -> Replay:
    pruner = make_pruner(name, epochs, warmup_epochs)
    trained, kept, stopped = replay(trials, pruner, epochs, study_name)
    best = min(kept, key=lambda t: t.value, default=None)
    return Replay(name, warmup_epochs, trained, len(stopped), best)


def default_warmups(epochs: int) -> list[int]:
    """1, 2, 4, ... up to half the epochs: from the earliest pruning to the CIFAR-10 default."""
    warmups = [1]
    while warmups[-1] * 2 <= epochs // 2:
        warmups.append(warmups[-1] * 2)
    return warmups


def format_table(rows: list[Replay], total_epochs: int, test_key: str) -> str:
    recorded_best = rows[0].best
    lines = [
        f"{'pruner':<20} {'warm-up':>7} {'epochs trained':>16} {'pruned':>6} "
        f"{'best trial':>13} {'val_loss':>8} {test_key:>13}"
    ]
    for row in rows:
        share = f"{row.epochs} ({row.epochs / total_epochs:.0%})"
        warmup = "-" if row.warmup_epochs is None else str(row.warmup_epochs)
        if row.best is None:
            best, value, test = "none", "-", "-"
        else:
            same = row is not rows[0] and recorded_best and row.best.number == recorded_best.number
            best = f"{row.best.number}{' (same)' if same else ''}"
            value = f"{row.best.value:.4f}"
            metric = row.best.user_attrs.get(test_key)
            test = "-" if metric is None else f"{metric:.4f}"
        lines.append(
            f"{row.pruner:<20} {warmup:>7} {share:>16} {row.pruned:>6} {best:>13} {value:>8} "
            f"{test:>13}"
        )
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Replay Optuna pruners over the learning curves of a finished (ideally "
        "unpruned) search: epochs each would have trained and the best trial it would have "
        "kept, without training anything.",
    )
    add = parser.add_argument
    add("--storage", default="sqlite:///studies/cifar.db", help="study database URL")
    add("--study-name", default="cifar", help="study to replay")
    add(
        "--pruner",
        nargs="+",
        choices=[p for p in PRUNERS if p != "none"],
        default=["median"],
        help="pruners to replay, built as the search CLIs build them",
    )
    add(
        "--warmup-epochs",
        nargs="+",
        type=positive_int,
        default=None,
        help="warm-ups to replay each pruner with (default: 1, 2, 4, ... up to half the "
        "study's epochs)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = find_studies([args.storage], [args.study_name])[0]
        settings = stored_settings(study)
        epochs = int(settings["epochs"])
        warmups = args.warmup_epochs or default_warmups(epochs)
        if max(warmups) > epochs:
            raise UsageError(
                f"--warmup-epochs {max(warmups)} is more than the study's {epochs} epochs"
            )
        trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if not any(t.state == TrialState.COMPLETE for t in trials):
            raise UsageError(f"study {args.study_name!r} has no completed trial to replay")
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    recorded = as_recorded(trials)
    rows = [recorded] + [
        replay_pruner(trials, name, warmup, epochs, study.study_name)
        for name in args.pruner
        for warmup in warmups
    ]
    print(
        f"study {study.study_name!r}: {len(trials)} finished trials, {recorded.epochs} epochs "
        f"recorded, the pruner asked every {prune_interval(epochs)} epoch(s) but the last"
    )
    if recorded.pruned:
        print(
            f"note: {recorded.pruned} trials were pruned when recorded; a replay cannot run "
            "them longer, so replay a search run with --pruner none"
        )
    print(format_table(rows, recorded.epochs, metric_for(settings).key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
