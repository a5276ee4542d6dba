"""Workers against a real PostgreSQL server (see .ci/postgres.sh)."""

import shlex

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from tests.conftest import run_module
from tests.search.workers_helpers import (
    FAST,
    NO_POSTGRES,
    assert_exact_study,
    postgres_admin,
    postgres_reachable,
    start_worker,
    trials,
    wait_until,
)

SECRET = "s3cr3t-pw"

pytestmark = pytest.mark.skipif(not postgres_reachable(), reason=NO_POSTGRES)


@pytest.mark.slow
def test_three_workers_share_one_postgres_study_exactly(tmp_path, postgres_database):
    _, url = postgres_database
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
    # The next: command runs as printed, the password given where libpq looks for it.
    printed = stdout.strip().splitlines()[-1].removeprefix("next: ")
    assert printed.endswith("  # password: set PGPASSWORD or add it to ~/.pgpass (docs/workers.md)")
    python, dash_m, module, *flags = shlex.split(printed, comments=True)
    assert (python, dash_m, module) == ("python", "-m", "search.report") and "***" not in printed
    report = run_module(module, *flags, "--repeats", "0", cwd=tmp_path, env={"PGPASSWORD": SECRET})
    assert report.returncode == 0, report.stderr
    driver_url = url.replace("postgresql://", "postgresql+psycopg://")
    found = assert_exact_study(driver_url, 9)
    best = optuna.load_study(study_name="linear", storage=driver_url).best_value
    assert best == min(t.value for t in found if t.state == TrialState.COMPLETE)


@pytest.mark.slow
def test_a_vanished_server_ends_the_worker_with_one_line_and_keeps_the_trials(
    tmp_path, postgres_database
):
    name, url = postgres_database
    driver_url = url.replace("postgresql://", "postgresql+psycopg://")
    worker = start_worker("--trials", "500", *FAST, "--storage", url, cwd=tmp_path)
    wait_until(lambda: sum(t.state.is_finished() for t in trials(driver_url)) >= 2)
    postgres_admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
    postgres_admin(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    _, stderr = worker.communicate(timeout=120)
    postgres_admin(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
    assert worker.returncode == 1, stderr
    assert "lost the study database" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert sum(t.state.is_finished() for t in trials(driver_url)) >= 2
