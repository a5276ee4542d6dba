"""How far a study's early epochs can be trusted: rank agreement of early and final losses.

A pruner that judges trials at epoch t is only as good as the ranking at epoch t. For every
epoch this measures Kendall's tau between the trials' validation loss at that epoch and their
final (best) validation loss, over all completed trials and per group (dropout range,
activation): tau 1 means epoch t already orders the trials as the end does, 0 means it says
nothing. Short-horizon bias (Wu et al., ICLR 2018) shows as a group whose tau stays low, or
as an overall tau far above every group's: the early epochs then tell groups apart, not the
trials within them.

The report shows this table for every study; `python -m search.tools.fidelity` prints it for a
study or a curve bank.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState
from scipy.stats import kendalltau

from search.objective import validation_curve
from search.space import ACTIVATION, DROPOUT

DROPOUT_BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 1.0))
MIN_TRIALS = 5  # fewer trials than this in a group: no tau
MAX_COLUMNS = 12  # epochs the table shows one by one; longer runs show a 1-2-5 subset


@dataclass(frozen=True)
class Curve:
    """One trial's validation curve (epoch 1 first) and final value, with its params."""

    params: dict
    values: list[float]
    final: float


def curves_from_trials(trials: Sequence[FrozenTrial]) -> list[Curve]:
    """The completed trials' curves; a curve with a gap or a non-finite value is left out."""
    curves = []
    for trial in trials:
        if trial.state != TrialState.COMPLETE or trial.value is None:
            continue
        values = validation_curve(trial)
        if values is not None:
            curves.append(Curve(trial.params, values, trial.value))
    return curves


def tau_by_epoch(curves: Sequence[Curve], epochs: int) -> list[tuple[int, float | None]]:
    """Per epoch: (trials that reached it, Kendall's tau of its loss with the final loss)."""
    taus = []
    for epoch in range(1, epochs + 1):
        pairs = [(c.values[epoch - 1], c.final) for c in curves if len(c.values) >= epoch]
        tau = None
        if len(pairs) >= MIN_TRIALS:
            tau = kendalltau(*zip(*pairs, strict=True)).statistic
            tau = None if math.isnan(tau) else float(tau)
        taus.append((len(pairs), tau))
    return taus


def _groups(curves: Sequence[Curve]) -> dict[str, Callable[[Curve], bool]]:
    groups: dict[str, Callable[[Curve], bool]] = {"all": lambda c: True}
    for low, high in DROPOUT_BINS:
        groups[f"dropout {low:g}-{high:g}"] = lambda c, lo=low, hi=high: (
            lo <= c.params[DROPOUT] < hi
        )
    for activation in sorted({c.params[ACTIVATION] for c in curves if ACTIVATION in c.params}):
        groups[activation] = lambda c, a=activation: c.params.get(ACTIVATION) == a
    return groups


def fidelity_table(curves: Sequence[Curve], epochs: int) -> list[dict]:
    """Rows {group, trials, tau: [per epoch, None where too few trials]}, "all" first."""
    rows = []
    for name, member in _groups(curves).items():
        group = [c for c in curves if member(c)]
        if not group:
            continue
        taus = tau_by_epoch(group, epochs)
        rows.append({"group": name, "trials": len(group), "tau": [t for _, t in taus]})
    return rows


def shown_epochs(epochs: int) -> list[int]:
    """The epochs the table shows: every one up to MAX_COLUMNS, else 1, 2, 5, 10, 20, 50, ...
    and the last (a 100-epoch study's table had 100 columns nobody could read)."""
    if epochs <= MAX_COLUMNS:
        return list(range(1, epochs + 1))
    steps, decade = [], 1
    while decade < epochs:
        steps += [s * decade for s in (1, 2, 5) if s * decade < epochs]
        decade *= 10
    return [*steps, epochs]


def format_fidelity(rows: Sequence[dict]) -> list[str]:
    """The table as Markdown lines, on a readable subset of the epochs (shown_epochs)."""
    epochs = shown_epochs(len(rows[0]["tau"]) if rows else 0)
    header = "| group | trials | " + " | ".join(f"epoch {e}" for e in epochs) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(epochs)]
    for row in rows:
        taus = [row["tau"][e - 1] for e in epochs]
        cells = " | ".join("-" if t is None else f"{t:.2f}" for t in taus)
        lines.append(f"| {row['group']} | {row['trials']} | {cells} |")
    return lines


def trust_sentence(rows: Sequence[dict]) -> str:
    """One line a user can act on: from which epoch the ranking is mostly settled."""
    overall = next((r for r in rows if r["group"] == "all"), None)
    taus = [] if overall is None else overall["tau"]
    known = [(e, t) for e, t in enumerate(taus, start=1) if t is not None]
    if not known:
        return f"too few completed trials (fewer than {MIN_TRIALS}) to judge the early epochs"
    settled = next((e for e, t in known if t >= 0.8), None)
    first = known[0]
    text = f"epoch {first[0]} ranks the trials as their final loss does with tau {first[1]:.2f}"
    if settled is None:
        return text + "; no epoch reaches 0.8: prune late, if at all"
    return text + f"; epoch {settled} is the first to reach 0.8"
