"""Workers against a real PostgreSQL server (see .ci/postgres.sh)."""

import os
import uuid
from collections.abc import Iterator

import optuna
import psycopg
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from tests.search.workers_helpers import (
    FAST,
    assert_exact_study,
    start_worker,
    trials,
    wait_until,
)

SERVER = os.environ.get("REGSEARCH_TEST_POSTGRES")
SECRET = "s3cr3t-pw"


def admin(sql: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as connection:
        connection.execute(sql)


def server_reachable() -> bool:
    if not SERVER:
        return False
    try:
        admin("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not server_reachable(),
    reason="no PostgreSQL server: run `export REGSEARCH_TEST_POSTGRES=$(.ci/postgres.sh start)`",
)


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """A fresh database on the test server: (its name, its plain postgresql:// URL)."""
    name = f"regsearch_{uuid.uuid4().hex[:12]}"
    admin(f"CREATE DATABASE {name}")
    yield name, make_url(SERVER).set(database=name).render_as_string(hide_password=False)
    admin(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.slow
def test_three_workers_share_one_postgres_study_exactly(tmp_path, database):
    _, url = database
    # The test server trusts loopback and ignores the password; the workers must not print it.
    with_password = make_url(url).set(password=SECRET).render_as_string(hide_password=False)
    workers = [
        start_worker("--trials", "9", *FAST, "--storage", with_password, cwd=tmp_path)
        for _ in "abc"
    ]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr
        assert "best trial" in stdout
        assert SECRET not in stdout + stderr and "next: python -m search.report" in stdout
    driver_url = url.replace("postgresql://", "postgresql+psycopg://")
    found = assert_exact_study(driver_url, 9)
    best = optuna.load_study(study_name="linear", storage=driver_url).best_value
    assert best == min(t.value for t in found if t.state == TrialState.COMPLETE)


@pytest.mark.slow
def test_a_vanished_server_ends_the_worker_with_one_line_and_keeps_the_trials(tmp_path, database):
    name, url = database
    driver_url = url.replace("postgresql://", "postgresql+psycopg://")
    worker = start_worker("--trials", "500", *FAST, "--storage", url, cwd=tmp_path)
    wait_until(lambda: sum(t.state.is_finished() for t in trials(driver_url)) >= 2)
    admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    _, stderr = worker.communicate(timeout=120)
    admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
    assert worker.returncode == 1, stderr
    assert "lost the study database" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert sum(t.state.is_finished() for t in trials(driver_url)) >= 2
