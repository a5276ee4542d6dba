import math

import optuna
import pytest
from optuna.trial import TrialState

from search.space import SearchSpace
from search.study import SETTINGS_ATTR
from tests.conftest import run_module


def finished(study: optuna.Study) -> list:
    return [t for t in study.trials if t.state.is_finished()]


def test_search_fills_the_database_resumes_and_extends(tmp_path):
    db = tmp_path / "sub" / "linear.db"
    url = f"sqlite:///{db}"
    run = run_module("search.linear", "--trials", "20", "--storage", url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="linear", storage=url)
    states = [t.state for t in study.trials]
    assert len(states) == 20
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert math.isfinite(study.best_value)
    assert study.user_attrs[SETTINGS_ATTR]["epochs"] == 100
    assert study.user_attrs[SETTINGS_ATTR]["warmup_epochs"] == 10  # epochs // 10
    assert "best regularizers:" in run.stdout and "trial  19" in run.stdout
    # The baselines were enqueued first and measured like any other trial.
    assert study.trials[0].user_attrs["baseline"] == "no regularization (reference)"
    assert study.trials[0].params["weight_decay"] == 1e-4  # the "off" end of the range

    again = run_module("search.linear", "--trials", "20", "--storage", url, cwd=tmp_path)
    assert again.returncode == 0 and "already has 20" in again.stdout
    more = run_module("search.linear", "--trials", "23", "--storage", url, cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert len(finished(optuna.load_study(study_name="linear", storage=url))) == 23


def test_default_storage_is_created_under_studies(tmp_path):
    run = run_module("search.linear", "--trials", "2", "--epochs", "3", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "studies" / "linear.db").exists()


def test_a_study_created_with_other_settings_is_refused_untouched(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert (
        run_module(
            "search.linear", "--trials", "2", "--epochs", "5", "--storage", url, cwd=tmp_path
        ).returncode
        == 0
    )
    refused = run_module(
        "search.linear", "--trials", "4", "--epochs", "6", "--storage", url, cwd=tmp_path
    )
    assert refused.returncode == 2
    # What differs, not the whole search space: a changed range reads as that range.
    assert refused.stderr == (
        "python -m search.linear: error: study 'linear' was created with other settings: "
        "epochs=5 (now 6), space.patience=[1, 5] (now [1, 6]); rerun with the study's settings "
        "or pick a new --study-name\n"
    )
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert len(optuna.load_study(study_name="linear", storage=url).trials) == 2


def test_no_trial_is_pruned_before_the_warmup_epochs(tmp_path):
    url = f"sqlite:///{tmp_path / 'linear.db'}"
    flags = ("--trials", "16", "--epochs", "40", "--warmup-epochs", "30", "--storage", url)
    run = run_module("search.linear", *flags, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="linear", storage=url)
    assert study.user_attrs[SETTINGS_ATTR]["warmup_epochs"] == 30
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "16 trials should give the pruner something to stop"
    assert min(t.last_step for t in pruned) >= 30


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--trials", "0"], "--trials: must be at least 1"),
        (["--trials", "-3"], "--trials: must be at least 1"),
        (["--sampler", "bayes"], "invalid choice: 'bayes'"),
        (["--pruner", "never"], "invalid choice: 'never'"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--storage", "not-a-url"], "not a database URL"),
        (["--storage", "nosuchdb://x/y"], "unknown database driver"),
        (["--storage", "postgresql://u:p@127.0.0.1:1/db"], "cannot open storage"),
        (["--storage", "postgresql://u@host:no-port/db"], "not a database URL"),
        (["--storage", "postgresql+nodriver://u@127.0.0.1/db"], "unknown database driver"),
        (["--storage", "sqlite:////proc/regsearch.db"], "cannot open storage"),
        (["--storage", "sqlite://relative.db"], "three slashes before a relative path"),
        (
            ["--storage", "mysql://user:secret@127.0.0.1/db"],
            "needs the database driver MySQLdb, which is not installed: pip install mysqlclient",
        ),
        (["--jobs", "0"], "--jobs: must be at least 1"),
        (["--grace-period", "0"], "--grace-period: must be at least 1"),
        (["--grace-period", "5"], "--grace-period 5 must be above --heartbeat-interval 5"),
        (
            ["--heartbeat-interval", "3", "--grace-period", "2"],
            "--grace-period 2 must be above --heartbeat-interval 3",
        ),
        (["--warmup-epochs", "0"], "--warmup-epochs: must be at least 1"),
        (["--warmup-epochs", "101"], "--warmup-epochs 101 is more than --epochs 100"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, flags, says):
    run = run_module("search.linear", *flags, cwd=tmp_path)
    assert run.returncode == 2
    assert says in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "secret" not in run.stderr
    assert not (tmp_path / "studies" / "linear.db").exists()


def test_corrupt_database_is_refused_and_left_as_it_was(tmp_path):
    db = tmp_path / "broken.db"
    db.write_bytes(b"this is not sqlite" * 100)
    run = run_module("search.linear", "--trials", "2", "--storage", f"sqlite:///{db}", cwd=tmp_path)
    assert run.returncode == 2 and "cannot open storage" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert db.read_bytes() == b"this is not sqlite" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.db"]  # no broken.db.lock


def test_a_new_database_s_missing_folders_are_made_and_said(tmp_path):
    db = tmp_path / "new" / "deeper" / "x.db"
    run = run_module(
        "search.linear", "--trials", "1", "--epochs", "2", "--storage", f"sqlite:///{db}",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"made the folder {tmp_path / 'new'} for the new study database" in run.stderr
    assert db.exists()


def test_help_shows_every_flag_with_its_default(tmp_path):
    run = run_module("search.linear", "--help", cwd=tmp_path)
    assert run.returncode == 0
    for flag in (
        "--trials",
        "--storage",
        "--study-name",
        "--sampler",
        "--pruner",
        "--epochs",
        "--warmup-epochs",
        "--seed",
        "--timeout",
        "--device",
        "--hidden",
        "--batch-size",
    ):
        assert flag in run.stdout
    assert "(default: 50)" in run.stdout and "sqlite:///studies/linear.db" in run.stdout


def test_the_study_reads_well_in_the_dashboard_and_says_what_to_run_next(tmp_path):
    url = f"sqlite:///{tmp_path / 'linear.db'}"
    run = run_module(
        "search.linear", "--trials", "2", "--epochs", "3", "--storage", url, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="linear", storage=url)
    assert study.metric_names == ["validation loss"]  # the dashboard said "Objective 0"
    # The baseline's params are the raw ends of the ranges; what it applied reads as "off".
    baseline, sampled = study.trials
    assert baseline.user_attrs["regularizers"] == "dropout=0 weight_decay=off l1=off patience=off"
    assert sampled.user_attrs["regularizers"].startswith("dropout=")
    [line] = [line for line in run.stdout.splitlines() if line.startswith("trial   0 ")]
    assert line.endswith("[baseline: no regularization (reference)]")
    assert "[baseline" not in run.stdout.split("trial   1 ")[1]
    last = run.stdout.strip().splitlines()[-1]
    assert last == f"next: python -m search.report --storage {url} --study-name linear"


def test_a_read_only_database_is_refused_and_left_without_new_files(read_only_copy):
    before = sorted(path.name for path in read_only_copy.folder.iterdir())
    run = read_only_copy.run(
        "search.linear", "--trials", "9", "--epochs", "10", "--storage", read_only_copy.url
    )
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert "is read-only for this user" in run.stderr
    # No colleague.db.lock, -wal or -shm beside it.
    assert sorted(path.name for path in read_only_copy.folder.iterdir()) == before


def test_a_start_design_runs_after_the_baselines_and_one_worker_reproduces_a_search(tmp_path):
    flags = ("--trials", "12", "--epochs", "20", "--start-trials", "4", "--seed", "3")
    studies = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        run = run_module("search.linear", *flags, "--storage", url, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        studies.append(optuna.load_study(study_name="linear", storage=url))
    a, b = studies
    design = [t.user_attrs.get("start_design") for t in a.trials[:7]]
    assert design == [None, 0, 1, 2, 3, None, None]  # after the one baseline
    settings = a.user_attrs[SETTINGS_ATTR]
    space = SearchSpace(**{k: tuple(v) for k, v in settings["space"].items()})
    assert [t.params for t in a.trials[1:5]] == space.start_design(4, seed=3)
    # --jobs 1 with one --seed: the same trials, values and states, to the last digit.
    assert [(t.params, t.value, t.state) for t in a.trials] == [
        (t.params, t.value, t.state) for t in b.trials
    ]
