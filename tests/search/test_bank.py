import pytest

from search.bank import CURVES, REPEATED, main, planned_runs, read_bank
from search.tasks.cifar import search_space

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
    assert err.startswith("python -m search.bank: error:") and err.count("\n") == 1
    assert not (tmp_path / "b.jsonl").exists()
