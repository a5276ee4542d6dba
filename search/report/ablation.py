"""Ablation of the best configuration: what each of its regularizers contributes.

Importance over a search (PED-ANOVA) says which parameter moves the objective across the
whole space; a parameter can matter a lot in bad regions and not at all near the optimum. The
question a user takes to their own training script is about the winner: is its L1 doing
anything? Would ReLU do as well? Ablation analysis (Fawcett & Hoos, "Analysing differences
between algorithm configurations through ablation", J. Heuristics 2016) answers on the winner
itself, re-training over the same seeds as the seed-robustness check:

- leave-one-out: revert one regularizer of the best configuration at a time to its reference
  value (dropout 0, weight decay off, L1 off, ReLU, early stopping off);
- the ablation path: start from the reference configuration and add, at each step, the one
  change of the best configuration that helps most, until it is the best configuration.
"""

from collections.abc import Callable

from search.metrics import Metric
from search.report.robustness import NOISE_FACTOR, compare, lowest_val_loss
from search.space import ACTIVATION, DROPOUT, L1, PARAM_NAMES, PATIENCE, WEIGHT_DECAY, SearchSpace

# What "reverted" means per regularizer, in the report's words.
REFERENCE_TEXT = {
    DROPOUT: "0",
    WEIGHT_DECAY: "off",
    L1: "off",
    ACTIVATION: "relu",
    PATIENCE: "off (no early stopping)",
}
LABELS = {
    DROPOUT: "dropout",
    WEIGHT_DECAY: "weight decay",
    L1: "L1",
    ACTIVATION: "activation",
    PATIENCE: "early stopping",
}
VERDICTS = {"best wins": "helps", "baseline wins": "hurts", "within noise": "no measurable effect"}

Measure = Callable[[list[dict]], list[dict]]  # configurations -> their re-trained runs


def reference_params(space: SearchSpace) -> dict:
    """The configuration with every regularizer off (and ReLU where the activation is searched)."""
    return space.params_for(dropout=0.0)


def changes(best: dict, space: SearchSpace) -> list[str]:
    """The regularizers whose applied value in `best` differs from the reference."""
    applied = space.regularizers(best)
    reference = space.regularizers(reference_params(space))
    return [
        name
        for name in PARAM_NAMES
        if name in best and getattr(applied, name) != getattr(reference, name)
    ]


def _value_text(name: str, params: dict, space: SearchSpace) -> str:
    value = getattr(space.regularizers(params), name)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def reverted_configurations(best: dict, space: SearchSpace) -> list[dict]:
    """`best` with each of its regularizers (changes) reverted alone, in that order."""
    reference = reference_params(space)
    return [best | {name: reference[name]} for name in changes(best, space)]


def leave_one_out(
    measure: Measure, best: dict, best_run: dict, space: SearchSpace, metric: Metric
) -> list[dict]:
    """Per regularizer of `best`: its run with that one reverted, and the verdict."""
    names = changes(best, space)
    reverted = reverted_configurations(best, space)
    rows = []
    runs = measure(reverted, "ablation")
    for name, params, run in zip(names, reverted, runs, strict=True):
        verdict = compare(best_run, run, metric)
        rows.append(
            {
                "regularizer": name,
                "best_value": _value_text(name, best, space),
                "reverted_to": (
                    space.reference_activation if name == ACTIVATION else REFERENCE_TEXT[name]
                ),
                "params": params,
                "run": run,
                # What the regularizer adds: the best configuration against it reverted.
                "difference": verdict["lead"],
                "noise": verdict["noise"],
                "verdict": VERDICTS.get(verdict["verdict"], verdict["verdict"]),
            }
        )
    return rows


def ablation_path(measure: Measure, best: dict, space: SearchSpace) -> list[dict]:
    """Greedy path from the reference to `best`: each step adds the change that lowers the mean
    validation loss most (chosen on validation, as the search chose; the metric is reported)."""
    current = reference_params(space)
    remaining = changes(best, space)
    steps = [{"added": None, "params": current, "run": measure([current], "ablation path")[0]}]
    while remaining:
        candidates = [current | {name: best[name]} for name in remaining]
        runs = measure(candidates, "ablation path")
        pick = lowest_val_loss(runs)
        name = remaining.pop(pick)
        current = candidates[pick]
        steps.append({"added": name, "params": current, "run": runs[pick]})
    return steps


def finding(rows: list[dict], metric: Metric) -> str:
    """One sentence a user can act on, from the leave-one-out rows, e.g. "dropout (+4.1 ± 0.6
    points) matters; L1 and weight decay have no measurable effect: leave them off"."""
    if not rows:
        return "the best configuration is the reference one: there is no regularizer to ablate"
    scale, unit = (100.0, " points") if metric.higher_is_better else (1.0, f" {metric.key}")

    def named(row: dict) -> str:
        label = (
            row["best_value"] if row["regularizer"] == ACTIVATION else LABELS[row["regularizer"]]
        )
        if row["difference"] is None:
            return label
        std = row["noise"] / NOISE_FACTOR  # the larger of the two configurations' stds
        return f"{label} ({row['difference'] * scale:+.2g} ± {std * scale:.2g}{unit})"

    def clause(chosen: list[dict], single: str, plural: str) -> str:
        return _listed([named(r) for r in chosen]) + (single if len(chosen) == 1 else plural)

    helps = [r for r in rows if r["verdict"] == "helps"]
    hurts = [r for r in rows if r["verdict"] == "hurts"]
    neutral = [r for r in rows if r["verdict"] == "no measurable effect"]
    parts = []
    if helps:
        parts.append(clause(helps, " matters", " matter"))
    if hurts:
        parts.append(clause(hurts, " hurts: revert it", " hurt: revert them"))
    penalties = [LABELS[r["regularizer"]] for r in neutral if r["regularizer"] != ACTIVATION]
    if penalties:
        verb, pronoun = ("has", "it") if len(penalties) == 1 else ("have", "them")
        parts.append(f"{_listed(penalties)} {verb} no measurable effect: leave {pronoun} off")
    if any(r["regularizer"] == ACTIVATION for r in neutral):
        parts.append("the activation has no measurable effect: ReLU does as well")
    if not parts:
        return "each regularizer needs 2 or more seeds (--repeats 2) to be judged"
    return "; ".join(parts)


def mattered(ablation: dict | None) -> list[str]:
    """The regularizers the ablation found to help or hurt, the largest effect first."""
    rows = [] if ablation is None else ablation["rows"]
    judged = [r for r in rows if r["verdict"] in ("helps", "hurts")]
    return [r["regularizer"] for r in sorted(judged, key=lambda r: -abs(r["difference"]))]


def _listed(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c" """
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def ablation_report(
    measure: Measure,
    best: dict,
    best_run: dict,
    space: SearchSpace,
    metric: Metric,
    with_path: bool = False,
) -> dict:
    """The report's ablation section: leave-one-out rows, the finding, and the path if asked."""
    rows = leave_one_out(measure, best, best_run, space, metric)
    return {
        "rows": rows,
        "finding": finding(rows, metric),
        "path": ablation_path(measure, best, space) if with_path else None,
    }
