import math

import optuna
import pytest

from search.space import ACTIVATION, L1, PARAM_NAMES, PATIENCE, WEIGHT_DECAY, SearchSpace

SPACE = SearchSpace(
    dropout=(0.0, 0.7),
    weight_decay=(1e-6, 1e-1),
    l1=(1e-8, 1e-3),
    patience=(1, 8),
    activations=("relu", "gelu"),
)


def test_suggest_uses_the_schema_names_and_ranges():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = SPACE.suggest(trial)
        assert set(params) == set(PARAM_NAMES)
        assert 1e-6 <= params[WEIGHT_DECAY] <= 1e-1 and 1 <= params[PATIENCE] <= 8
        study.tell(trial, 0.0)


def test_low_end_of_a_penalty_and_full_patience_mean_off():
    reg = SPACE.regularizers(SPACE.params_for(dropout=0.25, activation="gelu"))
    assert (reg.dropout, reg.weight_decay, reg.l1, reg.activation, reg.patience) == (
        0.25,
        0.0,
        0.0,
        "gelu",
        None,
    )
    on = SPACE.regularizers(
        {"dropout": 0.1, WEIGHT_DECAY: 1e-3, L1: 1e-5, PATIENCE: 3, ACTIVATION: "relu"}
    )
    assert (on.weight_decay, on.l1, on.patience) == (1e-3, 1e-5, 3)


def test_activation_is_absent_without_a_hidden_layer():
    space = SearchSpace(dropout=(0, 0.5), weight_decay=(1e-4, 1), l1=(1e-6, 1), patience=(1, 10))
    params = space.suggest(optuna.trial.FixedTrial(space.params_for(0.1)))
    assert ACTIVATION not in params


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unknown activation"):
        SearchSpace(
            dropout=(0, 1), weight_decay=(1, 2), l1=(1, 2), patience=(1, 2), activations=("x",)
        )


def test_the_start_design_takes_every_stratum_of_every_range_once():
    design = SPACE.start_design(8, seed=0)
    assert len(design) == 8 and all(set(p) == set(PARAM_NAMES) for p in design)
    # Each eighth of the dropout range, and of the log ranges of the penalties, holds one.
    strata = sorted(int(p["dropout"] / 0.7 * 8) for p in design)
    assert strata == list(range(8))
    decades = sorted(int(math.log(p[L1] / 1e-8) / math.log(1e-3 / 1e-8) * 8) for p in design)
    assert decades == list(range(8))
    # Each activation equally often, patience inside its range.
    assert sorted(p[ACTIVATION] for p in design) == ["gelu"] * 4 + ["relu"] * 4
    assert all(1 <= p[PATIENCE] <= 8 for p in design)
    assert SPACE.start_design(8, seed=0) == design != SPACE.start_design(8, seed=1)
    assert SPACE.start_design(0, seed=0) == []


def test_a_start_design_without_activations_has_none():
    space = SearchSpace(dropout=(0, 0.5), weight_decay=(1e-4, 1), l1=(1e-6, 1), patience=(1, 10))
    assert all(ACTIVATION not in p for p in space.start_design(5, seed=0))
