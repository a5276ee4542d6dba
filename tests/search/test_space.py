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
