import json
import math
import re

import numpy as np
import pytest
from optuna.trial import TrialState

from search.tasks.cifar import baselines, search_space
from search.tools.bank import planned_runs, read_bank
from search.tools.simulate import (
    EPOCHS,
    STRATEGIES,
    Surrogate,
    _imputed,
    compare,
    early_stopped,
    format_table,
    main,
    simulate,
    summary_rows,
    true_test_accuracy,
)
from tests.conftest import run_module

SPACE = search_space(EPOCHS)
BASELINE_PARAMS = list(baselines(SPACE).values())


def synthetic_curve(params: dict, seed: int) -> list[float]:
    """Slow-starting winners: strong dropout ends lowest but starts highest; sigmoid networks
    and strong L1 stay at chance."""
    if params["activation"] == "sigmoid" or params["l1"] > 1e-4:
        return [2.303] * EPOCHS
    dropout = params["dropout"]
    final = 1.25 - 0.4 * dropout + (0.05 if params["activation"] == "relu" else 0.0)
    start, tau = 1.6 + 0.6 * dropout, 0.5 + 4 * dropout
    wobble = np.random.default_rng(seed).normal(0, 0.01, EPOCHS)
    return [final + (start - final) * math.exp(-(e - 1) / tau) + w for e, w in enumerate(wobble)]


def write_bank(path, sobol_runs=48) -> list[dict]:
    records = []
    for run in planned_runs(SPACE, sobol_runs, repeats=3, seed=0):
        val = synthetic_curve(run.params, run.seed)
        records.append(
            {
                "run": run.name,
                "params": run.params,
                "seed": run.seed,
                "diverged": False,
                "seconds": 1.0,
                "val_loss": val,
                "test_accuracy": [1 - v / 3 for v in val],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "bank.jsonl"
    write_bank(path)
    return Surrogate(read_bank(path), SPACE)


def test_imported_search_trials_join_the_surrogate_with_imputed_test_curves(tmp_path):
    # Trials of a search (search.tools.bank --import-storage) have the test set at the best epoch
    # only, and many share a label: never a repeated configuration (the seed noise); in the
    # surrogate only if they trained every epoch, their test curve imputed through that point.
    records = write_bank(tmp_path / "bank.jsonl")
    for number, record in enumerate(records[:12]):
        imported = {k: v for k, v in record.items() if k != "test_accuracy"}
        records.append({**imported, "run": f"cifar-s1-{number:04d}", "test_accuracy_at_best": 0.5})
    stopped = {**records[-1], "run": "cifar-s1-0099", "val_loss": records[-1]["val_loss"][:3]}
    records.append(stopped)
    assert Surrogate(records, SPACE, imported=False).runs == 57
    surrogate = Surrogate(records, SPACE)
    assert surrogate.runs == 57 + 12
    assert len(surrogate.noise_curves) == 9
    imputed = _imputed(records[:57], records[57:69])
    for run in imputed:
        best = int(np.argmin(run["val_loss"]))
        assert run["test_accuracy"][best] == pytest.approx(0.5)
        # A lower validation loss imputes a higher test accuracy (the line's slope).
        order = np.argsort(run["val_loss"])
        assert np.all(np.diff(np.array(run["test_accuracy"])[order]) <= 1e-12)


def test_the_surrogate_reproduces_the_bank_and_its_seed_noise(surrogate):
    assert surrogate.runs == 57
    assert len(surrogate.noise_curves) == 9  # 3 repeated configurations x 3 seeds
    params = SPACE.params_for(dropout=0.6, activation="gelu")
    val, test = surrogate.curves(params)
    expected = synthetic_curve(params, seed=0)
    assert np.allclose(val, expected, rtol=0.05)
    assert np.allclose(test, [1 - v / 3 for v in val], atol=0.03)


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    curve = np.array([1.0, 0.9, 0.95, 0.96, 0.8, 0.7])
    assert early_stopped(curve, None) == 6
    assert early_stopped(curve, 2) == 4
    assert early_stopped(curve, 3) == 6


def test_true_accuracy_uses_the_best_epoch_under_the_patience(surrogate):
    params = SPACE.params_for(dropout=0.6, activation="gelu")
    full = true_test_accuracy(surrogate, params)
    assert full == pytest.approx(surrogate.curves(params)[1][-1])
    assert true_test_accuracy(surrogate, {**params, "patience": 1}) <= full + 1e-9


def test_a_simulated_search_runs_the_real_sampler_and_pruner(surrogate):
    outcome = simulate(surrogate, STRATEGIES["median-1"], seed=0, trials=20)
    assert outcome.pruned > 0
    assert outcome.epochs < 20 * EPOCHS
    # The baselines are enqueued first, as in a real search.
    params = [t.params for t in outcome.trials]
    assert params[0]["dropout"] == 0.0 and params[1]["dropout"] == 0.25
    again = simulate(surrogate, STRATEGIES["median-1"], seed=0, trials=20)
    assert [t.params for t in again.trials] == params  # seeded: the same search twice


def test_finalists_choose_among_the_lowest_trials_on_the_same_search_path(surrogate):
    plain = simulate(surrogate, STRATEGIES["hyperband-1"], seed=2, trials=16)
    final = simulate(surrogate, STRATEGIES["hyperband-1"], seed=2, trials=16, finalists=3)
    assert [t.params for t in final.trials] == [t.params for t in plain.trials]
    complete = sorted(
        (t for t in plain.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value
    )
    assert plain.best_params == complete[0].params
    assert final.best_params in [t.params for t in complete[:3]]


def test_strategies_are_compared_on_the_same_seeds(surrogate):
    strategies = [STRATEGIES["none"], STRATEGIES["predictive-1-predicted"]]
    outcomes = compare(surrogate, strategies, seeds=[0, 1], trials=16)
    rows = {row["strategy"]: row for row in summary_rows(outcomes, "none")}
    assert rows["none"]["epochs_share"] == 1.0
    assert rows["none"]["test_loss_vs_reference"] == 0.0
    assert rows["predictive-1-predicted"]["epochs_share"] <= 1.0
    table = format_table(list(rows.values()), "none")
    assert "| predictive-1-predicted |" in table


def test_the_cli_prints_the_table_and_refuses_a_missing_bank(tmp_path, capsys):
    path = tmp_path / "bank.jsonl"
    write_bank(path, sobol_runs=16)
    assert main(["--bank", str(path), "--seeds", "1", "--trials", "12", "--strategy", "none"]) == 0
    out = capsys.readouterr().out
    assert "| none | 100% |" in out
    assert main(["--bank", str(tmp_path / "missing.jsonl")]) == 2
    assert "no curve bank at" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_named_strategy_runs_a_search(surrogate, name):
    strategy = STRATEGIES[name]
    outcome = simulate(surrogate, strategy, seed=1, trials=14)
    params = [t.params for t in outcome.trials]
    assert len(params) == 14
    if strategy.baselines == "last":
        assert params[-2:] == BASELINE_PARAMS
    else:
        assert params[:2] == BASELINE_PARAMS
    if strategy.l1_high is not None:
        assert max(p["l1"] for p in params) <= strategy.l1_high
    if strategy.pruner == "none":  # only a trial stuck at chance stops, after its first epoch
        stopped = [t for t in outcome.trials if t.state.name == "PRUNED"]
        assert all(t.last_step == 1 for t in stopped)
        assert strategy.chance_stop or not stopped


def test_the_nearest_surrogate_returns_the_recorded_curves(tmp_path):
    path = tmp_path / "bank.jsonl"
    records = write_bank(path, sobol_runs=16)
    nearest = Surrogate(read_bank(path), SPACE, kind="nearest")
    run = records[-1]
    val, test = nearest.curves(run["params"])
    assert np.allclose(val, run["val_loss"], rtol=1e-6)
    assert np.allclose(test, run["test_accuracy"], atol=1e-6)


def test_two_workers_overlap_their_trials_and_one_never_does(surrogate):
    strategy = STRATEGIES["none"]

    def running_at_start(trials):
        """Per trial, how many others were running when it was asked for."""
        return [
            sum(o.datetime_start < t.datetime_start < o.datetime_complete for o in trials)
            for t in trials
        ]

    alone = simulate(surrogate, strategy, seed=0, trials=10, workers=1).trials
    assert running_at_start(alone) == [0] * 10
    pair = simulate(surrogate, strategy, seed=0, trials=10, workers=2).trials
    assert len(pair) == 10
    # The second worker asks while the first trial runs, and never are three running: TPE's
    # constant liar sees the other worker's trial.
    assert running_at_start(pair)[1] == 1 and max(running_at_start(pair)) == 1


def test_the_start_design_follows_the_baselines_and_stuck_trials_stop(surrogate):
    strategy = STRATEGIES["none1-l1-chance-start6"]
    trials = simulate(surrogate, strategy, seed=3, trials=12).trials
    design = SPACE.start_design(6, seed=3)
    assert [t.params for t in trials[2:8]] == design
    assert sorted(t.params["activation"] for t in trials[2:8]) == sorted(SPACE.activations)
    for trial in trials[:8]:  # the baselines and the design train to the end
        assert trial.state.name == "COMPLETE" and trial.last_step == EPOCHS
    for trial in trials[8:]:
        at_chance = trial.intermediate_values[1] >= 0.99 * math.log(10)
        assert (trial.state.name == "PRUNED") == at_chance
        if at_chance:
            assert trial.last_step == 1


def test_the_table_gives_the_gain_over_the_reference_configuration(surrogate):
    outcomes = compare(surrogate, [STRATEGIES["none"]], seeds=[0, 1], trials=12)
    reference = true_test_accuracy(surrogate, BASELINE_PARAMS[1])
    for outcome in outcomes["none"]:
        assert outcome.gain == pytest.approx(outcome.best_test - reference)
        assert outcome.top_test >= outcome.best_test
    row = summary_rows(outcomes, "none")[0]
    assert row["gain_min"] <= row["gain_mean"]
    best_known = max(o.top_test for o in outcomes["none"])
    assert row["near_best"] == sum(o.best_test >= best_known - 0.01 for o in outcomes["none"])


def test_the_default_start_keeps_short_searches_on_the_synthetic_winners(surrogate):
    # Strong dropout with any activation but ReLU wins the synthetic bank and starts slowly;
    # 16 trials with 2 workers, as the short searches of docs/default-search.md.
    def gains(name: str) -> list[float]:
        strategy = STRATEGIES[name]
        return [simulate(surrogate, strategy, seed, 16, workers=2).gain for seed in range(5)]

    old, new = gains("hyperband-1"), gains("hyperband1-l1-chance-start6")
    assert min(new) >= min(old) and min(new) > 0.02


def test_help_names_each_strategy_once_and_a_bad_name_is_one_line(tmp_path):
    shown = run_module("search.tools.simulate", "--help", cwd=tmp_path)
    assert shown.returncode == 0
    for name in ("hyperband1-l1-chance-start6", "median-1-predicted"):
        assert len(re.findall(rf"(?<![\w-]){re.escape(name)}(?![\w-])", shown.stdout)) == 1
    bad = run_module("search.tools.simulate", "--strategy", "bogus", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown strategy 'bogus'" in bad.stderr.strip().splitlines()[-1]
