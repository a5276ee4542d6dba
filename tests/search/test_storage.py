import sqlite3

import optuna

from search.storage import open_storage


def test_sqlite_studies_use_a_write_ahead_log(tmp_path):
    path = tmp_path / "study.db"
    storage = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    # The journal mode is stored in the file: every later reader and writer uses WAL too.
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(study.trials) == 1
