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


def test_the_start_design_tries_each_activation_at_dropout_half_then_a_latin_hypercube():
    design = SPACE.start_design(8, seed=0)
    assert design[:2] == [SPACE.params_for(0.5, "relu"), SPACE.params_for(0.5, "gelu")]
    assert SPACE.start_design(1, seed=0) == design[:1] and SPACE.start_design(0, seed=0) == []
    hypercube = design[2:]
    assert len(hypercube) == 6 and all(set(p) == set(PARAM_NAMES) for p in hypercube)
    # Each sixth of the dropout range, and of the log ranges of the penalties, holds one.
    assert sorted(int(p["dropout"] / 0.7 * 6) for p in hypercube) == list(range(6))
    l1_decades = math.log(1e-3 / 1e-8)
    assert sorted(int(math.log(p[L1] / 1e-8) / l1_decades * 6) for p in hypercube) == list(range(6))
    assert sorted(p[ACTIVATION] for p in hypercube) == ["gelu"] * 3 + ["relu"] * 3
    assert all(1 <= p[PATIENCE] <= 8 for p in hypercube)
    assert SPACE.start_design(8, seed=0) == design != SPACE.start_design(8, seed=1)


def test_a_start_design_keeps_its_dropout_in_range_and_needs_no_activation():
    space = SearchSpace(dropout=(0, 0.3), weight_decay=(1e-4, 1), l1=(1e-6, 1), patience=(1, 10))
    design = space.start_design(5, seed=0)
    assert design[0] == space.params_for(0.3)  # 0.5 clipped to the range
    assert all(ACTIVATION not in p and 0 <= p["dropout"] <= 0.3 for p in design)
