"""The report's figures: PNG files drawn headless with matplotlib, and a plotly figure of the
learning curves for optuna-dashboard."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from optuna.trial import FrozenTrial, TrialState

from search.attrs import TRAIN_CURVE_ATTR
from search.report.ablation import LABELS
from search.space import L1, PATIENCE, WEIGHT_DECAY, SearchSpace
from search.study import baseline_name

LOG_PARAMS = (WEIGHT_DECAY, L1)


def _save(fig: plt.Figure, path: Path) -> str:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def _readable_log_axis(axis: Axis) -> None:
    """A few labels in plain numbers on a log axis (call after plotting).

    Matplotlib labels every minor tick of a log axis spanning less than a decade (0.2, 0.3, ...
    as 2x10^-1, 3x10^-1, ...), and those labels run together; so label 1-2-5 steps, finer
    ones on a narrow span, only the decades on a wide one.
    """
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 else math.inf
    if decades < 1:
        subs: tuple[float, ...] = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
    elif decades < 3:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    axis.set_major_locator(LogLocator(subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _last_value(trial: FrozenTrial) -> float | None:
    """The validation loss a pruned trial had when it was stopped."""
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def history_figure(trials: list[FrozenTrial]) -> plt.Figure:
    """Validation loss per trial: complete ones, pruned ones at their last epoch, baselines."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and _last_value(t) is not None]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    fig, ax = plt.subplots(figsize=(8.5, 4), layout="constrained")
    ax.scatter([t.number for t in complete], [t.value for t in complete], s=14, label="complete")
    if pruned:
        ax.scatter(
            [t.number for t in pruned],
            [_last_value(t) for t in pruned],
            s=14,
            marker="x",
            color="0.55",
            label="pruned (loss when stopped)",
        )
    best, running = float("inf"), []
    for t in complete:
        best = min(best, t.value)
        running.append(best)
    ax.step([t.number for t in complete], running, where="post", color="C3", label="best so far")
    baselines = [t for t in complete + pruned if baseline_name(t)]
    for i, t in enumerate(baselines):
        value = t.value if t.value is not None else _last_value(t)
        label = "baseline" if i == 0 else None
        ax.scatter(t.number, value, s=90, marker="*", color="C1", zorder=3, label=label)
        ax.annotate(
            baseline_name(t),
            (t.number, value),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=7,
        )
    title = "Optimization history"
    if failed:
        title += f" ({failed} failed trial{'s' if failed > 1 else ''} not shown)"
    ax.set(xlabel="trial", ylabel="validation loss", title=title)
    ax.set_yscale("log")
    _readable_log_axis(ax.yaxis)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the points
    return fig


def plot_history(trials: list[FrozenTrial], path: Path) -> str:
    return _save(history_figure(trials), path)


def importances_figure(importances: dict[str, float], reliability: dict) -> plt.Figure:
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    ax.barh(names, [importances[n] for n in names])
    title = "Parameter importances"
    if not reliability["reliable"]:  # the figure travels without the report's caveat
        # On a line of its own: on one line the figure's edges cut it off.
        title += f"\n(not reliable yet: {reliability['complete_trials']} complete trials)"
    ax.set(xlabel="PED-ANOVA importance (validation loss)", title=title)
    return fig


def plot_importances(importances: dict[str, float], reliability: dict, path: Path) -> str:
    return _save(importances_figure(importances, reliability), path)


def _off_end(name: str, space: SearchSpace) -> float | None:
    """Where a parameter's range means "off": a penalty's low end, patience's high end."""
    if name in LOG_PARAMS:
        return getattr(space, name)[0]
    if name == PATIENCE:
        return space.patience[1]
    return None


def slices_figure(trials: list[FrozenTrial], params: list[str], space: SearchSpace) -> plt.Figure:
    """Validation loss against each of the most important parameters (a slice plot)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    # Constrained layout keeps each panel's tick labels and the colorbar clear of the others.
    fig, axes = plt.subplots(
        1, len(params), figsize=(5 * len(params), 4), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes[0], params, strict=True):
        points = [(t.params[name], t.value, t.number) for t in complete if name in t.params]
        shown = ax.scatter(
            [p[0] for p in points], [p[1] for p in points], c=[p[2] for p in points], s=16
        )
        if name in LOG_PARAMS:
            ax.set_xscale("log")
        ax.set_yscale("log")
        _readable_log_axis(ax.yaxis)
        off = _off_end(name, space)
        if off is not None:
            ax.axvline(off, color="0.5", linestyle=":", linewidth=1)
            # Beside the line at the bottom: the baselines, mostly worse, sit high at this end.
            ax.annotate(
                "off",
                (off, 0.03),
                xycoords=("data", "axes fraction"),
                xytext=(3, 0) if name in LOG_PARAMS else (-3, 0),  # inward from the range's end
                textcoords="offset points",
                ha="left" if name in LOG_PARAMS else "right",
                va="bottom",
                fontsize=8,
                color="0.35",
            )
        ax.set(xlabel=name, ylabel="validation loss", title=f"Slice: {name}")
    colorbar = fig.colorbar(shown, ax=axes[0].tolist(), label="trial")
    colorbar.locator = MaxNLocator(integer=True)
    return fig


def plot_slices(
    trials: list[FrozenTrial], params: list[str], space: SearchSpace, path: Path
) -> str:
    return _save(slices_figure(trials, params, space), path)


def curves(trial: FrozenTrial) -> tuple[list[float], list[float]]:
    """Train and validation loss per epoch (epoch i at index i-1)."""
    train = list(trial.user_attrs.get(TRAIN_CURVE_ATTR, []))
    val = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
    return train, val


def learning_curves_png(labelled: dict[str, FrozenTrial]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for i, (label, trial) in enumerate(labelled.items()):
        train, val = curves(trial)
        color = f"C{i}"
        ax.plot(range(1, len(train) + 1), train, "--", color=color, label=f"{label} train")
        ax.plot(range(1, len(val) + 1), val, "-", color=color, label=f"{label} validation")
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curves (dashed: train)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yscale("log")
    _readable_log_axis(ax.yaxis)
    ax.legend(fontsize=7)
    return fig


def plot_learning_curves(labelled: dict[str, FrozenTrial], path: Path) -> str:
    return _save(learning_curves_png(labelled), path)


def learning_curves_figure(labelled: dict[str, FrozenTrial], stamp: str) -> go.Figure:
    """The dashboard's graph; `stamp` says which state of the study it shows."""
    fig = go.Figure()
    for label, trial in labelled.items():
        train, val = curves(trial)
        fig.add_scatter(x=list(range(1, len(train) + 1)), y=train, name=f"{label} train")
        fig.add_scatter(x=list(range(1, len(val) + 1)), y=val, name=f"{label} validation")
    fig.update_layout(
        title=f"Learning curves: best trial and baselines ({stamp})",
        xaxis_title="epoch",
        yaxis_title="loss",
        yaxis_type="log",
    )
    # Whole epochs only: plotly would put ticks at 1.2, 1.4, ... on a short run.
    longest = max((len(curve) for t in labelled.values() for curve in curves(t)), default=1)
    fig.update_xaxes(tick0=0, dtick=max(1, round(longest / 10)))
    return fig


def plot_ablation_path(steps: list[dict], metric_key: str, path: Path) -> str:
    """The test metric along the ablation path, mean ± std over the re-training seeds."""
    labels = ["reference"] + [f"+ {LABELS[step['added']]}" for step in steps[1:]]
    means = [math.nan if s["run"]["mean"] is None else s["run"]["mean"] for s in steps]
    stds = [s["run"]["std"] or 0.0 for s in steps]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(steps)), 3.6), layout="constrained")
    ax.errorbar(range(len(steps)), means, yerr=stds, marker="o", capsize=4)
    ax.set_xticks(range(len(steps)), labels)
    ax.set_ylabel(f"{metric_key} (mean ± std)")
    ax.set_title("Ablation path: from the reference to the best configuration")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def slice_params(importances: dict[str, float], mattered: list[str]) -> list[str]:
    """The two parameters the slice plot shows: those the ablation found to matter first, then
    the most important ones (by importance alone it never showed an activation that won the
    ablation while ranking last)."""
    return list(dict.fromkeys([*mattered, *importances]))[:2]


def write_plots(
    trials: list[FrozenTrial],
    importances: dict[str, float],
    reliability: dict,
    labelled: dict[str, FrozenTrial],
    space: SearchSpace,
    out: Path,
    mattered: list[str] = (),
) -> dict[str, str]:
    """Draw every figure into `out`; returns {figure: file name} for the figures drawn.
    `mattered`: the regularizers the ablation found to matter (slice_params)."""
    files = {"history": plot_history(trials, out / "history.png")}
    if importances:
        files["importances"] = plot_importances(importances, reliability, out / "importances.png")
        sliced = slice_params(importances, mattered)
        files["slices"] = plot_slices(trials, sliced, space, out / "slices.png")
    files["learning_curves"] = plot_learning_curves(labelled, out / "learning_curves.png")
    return files
