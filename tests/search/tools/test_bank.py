import optuna
import pytest

from search.attrs import BEST_EPOCH_ATTR, TEST_ACCURACY_ATTR, TRAIN_CURVE_ATTR
from search.objective import training_seed
from search.tasks.cifar import search_space
from search.tools.bank import CURVES, REPEATED, main, measured_every_epoch, planned_runs, read_bank
from tests.conftest import TINY_CIFAR_SEARCH, run_module

SPACE = search_space(8)


def test_repeated_configurations_come_first_then_a_sobol_design_over_the_space():
    runs = planned_runs(SPACE, sobol_runs=32, repeats=3, seed=0)
    assert len(runs) == 3 * len(REPEATED) + 32
    assert [r.name for r in runs[:3]] == ["none-0", "none-1", "none-2"]
    assert len({r.seed for r in runs}) == len(runs)  # every run its own training seed
    sobol = [r.params for r in runs[3 * len(REPEATED) :]]
    assert {p["activation"] for p in sobol} == set(SPACE.activations)
    for name in ("dropout", "weight_decay", "l1"):
        low, high = getattr(SPACE, name)
        values = [p[name] for p in sobol]
        assert low <= min(values) and max(values) <= high
        # Spread: both ends of the range are sampled (log scale for the penalties).
        assert sum(v < (low * high) ** 0.5 if name != "dropout" else v < 0.35 for v in values) >= 12
    assert all(p["patience"] == SPACE.patience[1] for p in sobol)  # off: curves stay whole
    assert planned_runs(SPACE, 32, 3, 0) == runs
    # A longer design extends a shorter one, so a bank can grow.
    assert planned_runs(SPACE, 40, 3, 0)[: len(runs)] == runs


@pytest.mark.slow
def test_recording_writes_every_epoch_and_a_rerun_resumes(tmp_path, cifar_archive, cifar_cache):
    out = tmp_path / "bank.jsonl"
    flags = ["--out", str(out), "--protocol", "cifar-tiny", "--repeats", "0", "--jobs", "1"]
    flags += ["--data", str(cifar_archive), "--cache-dir", str(cifar_cache)]
    assert main([*flags, "--runs", "2"]) == 0
    first = read_bank(out)
    assert sorted(r["run"] for r in first) == ["sobol-0000", "sobol-0001"]
    for record in first:
        assert all(len(record[key]) == 1 for key in CURVES)  # the tiny protocol: 1 epoch
        assert 0.0 <= record["test_accuracy"][0] <= 1.0
    assert main([*flags, "--runs", "3"]) == 0
    assert [r["run"] for r in read_bank(out)][:2] == [r["run"] for r in first]
    assert len(read_bank(out)) == 3


def test_a_missing_data_path_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["--out", str(tmp_path / "b.jsonl"), "--data", str(tmp_path / "none")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m search.tools.bank: error:") and err.count("\n") == 1
    assert not (tmp_path / "b.jsonl").exists()


def test_a_missing_import_storage_names_its_flag(tmp_path, capsys):
    absent = tmp_path / "absent.db"
    flags = ["--out", str(tmp_path / "b.jsonl"), "--import-storage", f"sqlite:///{absent}"]
    assert main(flags) == 2
    err = capsys.readouterr().err
    assert err == (
        f"python -m search.tools.bank: error: no study database at {absent}: check "
        "--import-storage\n"
    )
    assert not absent.exists() and not (tmp_path / "b.jsonl").exists()


def test_a_finished_search_is_imported_as_runs_and_a_rerun_adds_none(
    tmp_path, cifar_archive, cifar_cache, capsys
):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    search = run_module(
        "search.cifar",
        *TINY_CIFAR_SEARCH,
        *("--seed", "3", "--pruner", "none", "--storage", url),
        *("--data", str(cifar_archive), "--cache-dir", str(cifar_cache)),
        cwd=tmp_path,
    )
    assert search.returncode == 0, search.stderr
    out = tmp_path / "bank.jsonl"
    flags = ["--out", str(out), "--protocol", "cifar-tiny", "--import-storage", url]
    assert main(flags) == 0
    assert "3 completed trials of study 'cifar'" in capsys.readouterr().out
    trials = optuna.load_study(study_name="cifar", storage=url).trials
    runs = read_bank(out)
    assert [r["run"] for r in runs] == ["cifar-s3-0000", "cifar-s3-0001", "cifar-s3-0002"]
    for run, trial in zip(runs, trials, strict=True):
        assert run["params"] == trial.params and run["split_seed"] == 3
        assert run["seed"] == training_seed(3, trial)
        assert run["val_loss"] == [round(trial.intermediate_values[1], 5)]
        assert run["train_loss"] == [round(v, 5) for v in trial.user_attrs[TRAIN_CURVE_ATTR]]
        assert run["best_epoch"] == trial.user_attrs[BEST_EPOCH_ATTR] == 1
        assert run["test_accuracy_at_best"] == trial.user_attrs[TEST_ACCURACY_ATTR]
        assert not measured_every_epoch(run)  # the simulator's surrogate leaves it out
    assert main([*flags, "--label", "again"]) == 0  # another label: the same trials again
    assert main(flags) == 0  # the same label: nothing new
    assert "0 completed trials" in capsys.readouterr().out.splitlines()[-1]
    assert len(read_bank(out)) == 6


def test_a_study_of_another_protocol_is_refused_in_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'linear.db'}"
    search = run_module(
        "search.linear", "--trials", "2", "--epochs", "3", "--storage", url, cwd=tmp_path
    )
    assert search.returncode == 0, search.stderr
    out = tmp_path / "bank.jsonl"
    code = main(["--out", str(out), "--import-storage", url, "--study-name", "linear"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m search.tools.bank: error: study 'linear' ran 3 epochs")
    assert err.count("\n") == 1 and "cifar-10k protocol" in err
    assert not out.exists()
