"""The report's figures, checked on what matplotlib and plotly will draw (look at the PNGs too:
`python -m search.report` writes them)."""

import matplotlib.pyplot as plt
import pytest
from matplotlib.layout_engine import ConstrainedLayoutEngine
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.report.plots import (
    history_figure,
    importances_figure,
    learning_curves_figure,
    learning_curves_png,
    slice_params,
    slices_figure,
)
from search.space import SearchSpace

SPACE = SearchSpace(dropout=(0.0, 0.7), weight_decay=(1e-7, 1e-2), l1=(1e-8, 1e-3), patience=(1, 8))
DISTRIBUTIONS = {
    "dropout": FloatDistribution(0.0, 0.7),
    "weight_decay": FloatDistribution(1e-7, 1e-2, log=True),
    "l1": FloatDistribution(1e-8, 1e-3, log=True),
    "patience": IntDistribution(1, 8, log=True),
}


def trial(number: int, state: TrialState, epochs: int, **params) -> FrozenTrial:
    """A CIFAR-10-like trial: 8 epochs of losses between 1.1 and 1.6 (less than a decade)."""
    curve = {epoch: 1.6 - 0.05 * epoch - 0.01 * number for epoch in range(1, epochs + 1)}
    made = create_trial(
        state=state,
        value=min(curve.values()) if state == TrialState.COMPLETE else None,
        params={**SPACE.params_for(dropout=0.0), **params},
        distributions=DISTRIBUTIONS,
        intermediate_values=curve,
        user_attrs={"train_loss_curve": [v - 0.2 for v in curve.values()]},
    )
    made.number = number
    return made


@pytest.fixture
def trials() -> list[FrozenTrial]:
    baseline = trial(0, TrialState.COMPLETE, 8)
    baseline.user_attrs = {**baseline.user_attrs, "baseline": "no regularization"}
    return [
        baseline,
        trial(1, TrialState.COMPLETE, 8, dropout=0.4, weight_decay=1e-4, l1=1e-6, patience=3),
        trial(2, TrialState.PRUNED, 4, dropout=0.1, weight_decay=1e-3, l1=1e-4, patience=2),
        trial(3, TrialState.PRUNED, 4, dropout=0.6, weight_decay=1e-5, l1=1e-7, patience=5),
        trial(4, TrialState.COMPLETE, 8, dropout=0.3, weight_decay=1e-6, l1=1e-5, patience=8),
    ]


def labels(ax: plt.Axes) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def visible_tick_labels(ax: plt.Axes) -> list[str]:
    """The y tick labels drawn inside the axes, major and minor."""
    low, high = ax.get_ylim()
    ticks = ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
    return [
        tick.label1.get_text()
        for tick in ticks
        if low <= tick.get_loc() <= high and tick.label1.get_text()
    ]


def test_history_shows_pruned_trials_and_marks_the_baselines(trials):
    fig = history_figure(trials)
    [ax] = fig.axes
    assert {"complete", "pruned (loss when stopped)", "baseline"} <= set(labels(ax))
    by_label = dict(zip(labels(ax), ax.get_legend_handles_labels()[0], strict=True))
    assert len(by_label["pruned (loss when stopped)"].get_offsets()) == 2
    assert [text.get_text() for text in ax.texts] == ["no regularization"]
    plt.close(fig)


def test_slices_leave_room_for_their_labels_and_mark_the_off_end(trials):
    fig = slices_figure(trials, ["weight_decay", "patience"], SPACE)
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    weight_decay, patience = fig.axes[:2]
    for ax, off in ((weight_decay, 1e-7), (patience, 8)):
        [line] = ax.get_lines()
        assert line.get_xdata()[0] == off
        assert [text.get_text() for text in ax.texts] == ["off"]
    plt.close(fig)


def test_learning_curves_have_whole_epochs_and_readable_log_labels(trials):
    short = {"best": trial(4, TrialState.COMPLETE, 3), "baseline": trial(0, TrialState.PRUNED, 2)}
    fig = learning_curves_png(short)
    [ax] = fig.axes
    fig.canvas.draw()
    assert all(float(tick).is_integer() for tick in ax.get_xticks())  # not 1.25, 1.5, ...
    # Losses from 1.2 to 1.6 span less than a decade: matplotlib labelled its minor ticks
    # 1.1x10^0, 1.2x10^0, ... and they ran together.
    shown = visible_tick_labels(ax)
    assert 2 <= len(shown) <= 6 and not any("10^" in label for label in shown), shown
    plt.close(fig)


def test_the_dashboard_graph_has_whole_epochs_and_says_what_it_shows(trials):
    figure = learning_curves_figure({"best (trial 4)": trials[4]}, "5 finished trials, now")
    assert figure.layout.xaxis.dtick == 1
    assert "(5 finished trials, now)" in figure.layout.title.text


def test_the_importances_title_fits_in_the_figure():
    importances = {"weight_decay": 0.6, "l1": 0.2, "dropout": 0.1, "patience": 0.1}
    fig = importances_figure(importances, {"reliable": False, "complete_trials": 8})
    fig.canvas.draw()
    [ax] = fig.axes
    title = ax.title.get_window_extent()
    # On one line, the caveat made the title wider than the figure: its ends were cut off.
    assert "not reliable yet" in ax.get_title()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.width
    plt.close(fig)


def test_the_slices_show_what_the_ablation_found_to_matter_first():
    importances = {"weight_decay": 0.6, "l1": 0.2, "dropout": 0.1, "activation": 0.002}
    assert slice_params(importances, []) == ["weight_decay", "l1"]
    assert slice_params(importances, ["activation"]) == ["activation", "weight_decay"]
    assert slice_params(importances, ["l1", "weight_decay"]) == ["l1", "weight_decay"]
