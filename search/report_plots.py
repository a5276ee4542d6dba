"""The report's figures: PNG files drawn headless with matplotlib, and a plotly figure of the
learning curves for optuna-dashboard."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState

from search.space import L1, WEIGHT_DECAY

LOG_PARAMS = (WEIGHT_DECAY, L1)


def _save(fig: plt.Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def plot_history(trials: list[FrozenTrial], path: Path) -> str:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter([t.number for t in complete], [t.value for t in complete], s=14, label="trial")
    best, running = float("inf"), []
    for t in complete:
        best = min(best, t.value)
        running.append(best)
    ax.step([t.number for t in complete], running, where="post", color="C3", label="best so far")
    ax.set(xlabel="trial", ylabel="validation loss", title="Optimization history")
    ax.set_yscale("log")
    ax.legend()
    return _save(fig, path)


def plot_importances(importances: dict[str, float], path: Path) -> str:
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="PED-ANOVA importance (validation loss)", title="Parameter importances")
    return _save(fig, path)


def plot_slices(trials: list[FrozenTrial], params: list[str], path: Path) -> str:
    """Validation loss against each of the most important parameters (a slice plot)."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    fig, axes = plt.subplots(1, len(params), figsize=(5 * len(params), 4), squeeze=False)
    for ax, name in zip(axes[0], params, strict=True):
        points = [(t.params[name], t.value, t.number) for t in complete if name in t.params]
        shown = ax.scatter(
            [p[0] for p in points], [p[1] for p in points], c=[p[2] for p in points], s=16
        )
        if name in LOG_PARAMS:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel=name, ylabel="validation loss", title=f"Slice: {name}")
    fig.colorbar(shown, ax=axes[0].tolist(), label="trial")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def curves(trial: FrozenTrial) -> tuple[list[float], list[float]]:
    """Train and validation loss per epoch (epoch i at index i-1)."""
    train = list(trial.user_attrs.get("train_loss_curve", []))
    val = [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
    return train, val


def plot_learning_curves(labelled: dict[str, FrozenTrial], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, trial) in enumerate(labelled.items()):
        train, val = curves(trial)
        color = f"C{i}"
        ax.plot(range(1, len(train) + 1), train, "--", color=color, label=f"{label} train")
        ax.plot(range(1, len(val) + 1), val, "-", color=color, label=f"{label} validation")
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curves (dashed: train)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return _save(fig, path)


def learning_curves_figure(labelled: dict[str, FrozenTrial]) -> go.Figure:
    fig = go.Figure()
    for label, trial in labelled.items():
        train, val = curves(trial)
        fig.add_scatter(x=list(range(1, len(train) + 1)), y=train, name=f"{label} train")
        fig.add_scatter(x=list(range(1, len(val) + 1)), y=val, name=f"{label} validation")
    fig.update_layout(
        title="Learning curves: best trial and baselines",
        xaxis_title="epoch",
        yaxis_title="loss",
        yaxis_type="log",
    )
    return fig


def write_plots(
    trials: list[FrozenTrial],
    importances: dict[str, float],
    labelled: dict[str, FrozenTrial],
    out: Path,
) -> dict[str, str]:
    """Draw every figure into `out`; returns {figure: file name} for the figures drawn."""
    files = {"history": plot_history(trials, out / "history.png")}
    if importances:
        files["importances"] = plot_importances(importances, out / "importances.png")
        files["slices"] = plot_slices(trials, list(importances)[:2], out / "slices.png")
    files["learning_curves"] = plot_learning_curves(labelled, out / "learning_curves.png")
    return files
