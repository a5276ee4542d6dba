"""Replay pruners over a finished search's learning curves: `python -m search.tools.replay`.

"How many epochs would this pruner have saved on my search, and would it have kept the best
trial?" answered in seconds, without training anything. The recorded validation curves are
fed, in the order the trials started and `--fuse` at a time as one worker trained them, into a
fresh in-memory study that runs the real Optuna pruner, built as the search CLIs build it and
asked at the epochs the objective asks (search/objective.py). Replay an unpruned search
(`--pruner none`): a curve that a pruner cut short cannot be extended.

A replay cannot show how the sampler reacts. In a real pruned search TPE learns from the
pruned trials too and proposes other trials. A sampler that ignores results (`--sampler
random`) proposes the same trials either way, and then the replay equals the real pruned
search of one worker at the same --fuse epoch for epoch (tests/search/tools/test_replay.py
checks this at 1 and 3). Several workers' trials interleave by timing, which a replay does not
mimic.
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
from search.objective import asks_pruner, prune_interval, starts_the_study
from search.storage import find_studies
from search.study import StudySnapshot, make_pruner, stored_settings

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
    slots: int = 1,
) -> tuple[int, list[FrozenTrial], list[FrozenTrial]]:
    """Epochs trained, the recorded trials kept (COMPLETE) and those the pruner stopped.

    `slots` trials run at once, as a fused worker runs them (search/fused_worker.py): each
    empty slot takes the next trial, every running trial reports its epoch, then each, in slot
    order, asks the pruner against the study read once for the epoch and ends there if its
    curve does. Baselines and the start design are never pruned, as in the search.
    `study_name` must be the recorded study's: Hyperband assigns brackets by a hash of the
    study name and the trial number.
    """
    study = optuna.create_study(study_name=study_name, direction="minimize", pruner=pruner)
    waiting = iter(trials)
    running: dict[int, tuple[optuna.Trial, FrozenTrial, list[tuple[int, float]]]] = {}
    trained, kept, stopped = 0, [], []

    def end(k: int, cut: bool) -> None:
        trial, recorded, _ = running.pop(k)
        if cut or recorded.state == TrialState.PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
            stopped.append(recorded)
        elif recorded.state == TrialState.COMPLETE:
            study.tell(trial, recorded.value)
            kept.append(recorded)
        else:
            study.tell(trial, state=TrialState.FAIL)

    while True:
        for k in range(slots):
            if k not in running and (recorded := next(waiting, None)) is not None:
                running[k] = (study.ask(), recorded, curve(recorded))
        if not running:
            return trained, kept, stopped
        for k in [k for k, (_, _, left) in running.items() if not left]:
            end(k, cut=False)  # no epoch recorded: failed at the start
        for trial, _, left in running.values():
            epoch, value = left[0]
            trial.report(value, epoch)
            trained += 1
        snapshot = None
        for k in sorted(running):
            trial, recorded, left = running[k]
            epoch = left.pop(0)[0]
            cut = False
            if not starts_the_study(recorded.user_attrs) and asks_pruner(epoch, epochs):
                if snapshot is None:
                    snapshot = StudySnapshot(study)
                cut = snapshot.should_prune(trial)
            if cut or not left:
                end(k, cut)


def replay_pruner(
    trials: list[FrozenTrial],
    name: str,
    warmup_epochs: int,
    epochs: int,
    study_name: str,
    slots: int = 1,
) -> Replay:
    pruner = make_pruner(name, epochs, warmup_epochs)
    trained, kept, stopped = replay(trials, pruner, epochs, study_name, slots)
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
    add(
        "--fuse",
        type=positive_int,
        default=1,
        help="trials at once, as the recorded search's worker trained them (its --fuse)",
    )
    return parser


def most_at_once(trials: list[FrozenTrial]) -> int:
    """The most trials that ran at the same time in the recording (1 when none overlap)."""
    timed = [t for t in trials if t.datetime_start and t.datetime_complete]
    # At equal times -1 sorts first: a trial that ends as the next starts is not overlapped.
    events = sorted(
        [(t.datetime_start, 1) for t in timed] + [(t.datetime_complete, -1) for t in timed]
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return max(peak, 1)


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
        replay_pruner(trials, name, warmup, epochs, study.study_name, args.fuse)
        for name in args.pruner
        for warmup in warmups
    ]
    at_once = f", {args.fuse} trials at a time" if args.fuse > 1 else ""
    print(
        f"study {study.study_name!r}: {len(trials)} finished trials, {recorded.epochs} epochs "
        f"recorded, the pruner asked every {prune_interval(epochs)} epoch(s) but the last"
        f"{at_once}"
    )
    if (ran := most_at_once(trials)) != args.fuse:
        recorded_so = (
            "the recording ran one trial at a time; --fuse 1 replays it so"
            if ran == 1
            else f"up to {ran} trials ran at once when recorded; --fuse {ran} replays them so "
            "(exactly where one worker ran them)"
        )
        print(f"note: {recorded_so}")
    if recorded.pruned:
        print(
            f"note: {recorded.pruned} trials were pruned when recorded; a replay cannot run "
            "them longer, so replay a search run with --pruner none"
        )
    print(format_table(rows, recorded.epochs, metric_for(settings).key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
