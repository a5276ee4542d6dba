import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from search.fidelity import (
    Curve,
    curves_from_trials,
    fidelity_table,
    format_fidelity,
    tau_by_epoch,
    trust_sentence,
)


def _curve(dropout, activation, values):
    return Curve({"dropout": dropout, "activation": activation}, values, min(values))


def test_tau_is_one_when_every_epoch_orders_trials_as_the_end_does():
    curves = [_curve(0.1, "relu", [2.0 - i * 0.1, 1.5 - i * 0.1]) for i in range(6)]
    assert tau_by_epoch(curves, 2) == [(6, pytest.approx(1.0)), (6, pytest.approx(1.0))]


def test_slow_starters_that_end_best_give_a_negative_early_tau():
    # Trials that lead at epoch 1 end last: the early ranking is reversed.
    curves = [_curve(0.1 * i, "gelu", [1.5 - 0.1 * i, 0.4 + 0.1 * i]) for i in range(6)]
    (n1, tau1), (n2, tau2) = tau_by_epoch(curves, 2)
    assert (n1, n2) == (6, 6)
    assert tau1 == pytest.approx(-1.0)
    assert tau2 == pytest.approx(1.0)


def test_groups_split_by_dropout_and_activation_and_small_groups_have_no_tau():
    curves = [_curve(0.6, "gelu", [1.5 + 0.1 * i, 1.0 + 0.1 * i]) for i in range(5)]
    curves += [_curve(0.1, "relu", [1.2 + 0.1 * i, 1.3 - 0.1 * i]) for i in range(3)]
    rows = {row["group"]: row for row in fidelity_table(curves, 2)}
    assert rows["all"]["trials"] == 8
    assert rows["dropout 0.5-1"]["trials"] == 5
    assert rows["dropout 0.5-1"]["tau"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert rows["relu"]["tau"] == [None, None]  # 3 trials: too few
    assert "dropout 0.25-0.5" not in rows
    lines = format_fidelity(list(rows.values()))
    assert lines[0].startswith("| group | trials | epoch 1 | epoch 2 |")
    assert "| relu | 3 | - | - |" in lines


def test_a_long_run_shows_a_readable_subset_of_its_epochs():
    # A 100-epoch linear study's table had 100 epoch columns.
    curves = [_curve(0.1 * i, "relu", [1.0 + 0.01 * i * e for e in range(100)]) for i in range(6)]
    header = format_fidelity(fidelity_table(curves, 100))[0]
    shown = [int(cell.split()[1]) for cell in header.strip("| ").split(" | ")[2:]]
    assert shown == [1, 2, 5, 10, 20, 50, 100]


def test_trust_sentence_names_the_first_epoch_that_ranks_like_the_end():
    curves = [
        _curve(0.1, "relu", [3.0 + 0.1 * (i % 2), 2.0 - 0.1 * i, 1.9 - 0.1 * i]) for i in range(8)
    ]
    text = trust_sentence(fidelity_table(curves, 3))
    assert text.startswith("epoch 1 ranks the trials")
    assert "epoch 2 is the first to reach 0.8" in text
    assert "too few" in trust_sentence(fidelity_table(curves[:3], 3))


def test_curves_come_from_completed_trials_only():
    study = optuna.create_study()
    dists = {"dropout": FloatDistribution(0, 1), "activation": CategoricalDistribution(["relu"])}
    params = {"dropout": 0.2, "activation": "relu"}
    study.add_trial(
        optuna.trial.create_trial(
            params=params, distributions=dists, value=1.1, intermediate_values={1: 1.3, 2: 1.1}
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=dists,
            state=optuna.trial.TrialState.PRUNED,
            intermediate_values={1: 2.0},
        )
    )
    assert curves_from_trials(study.trials) == [Curve(params, [1.3, 1.1], 1.1)]
