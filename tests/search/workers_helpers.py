"""Starting and watching real worker processes, shared by the SQLite and PostgreSQL tests."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import psycopg
from optuna.trial import TrialState

from search.attrs import BASELINE_ATTR, WORKERS_ATTR
from tests.conftest import project_env

# A PostgreSQL server for the tests: `export REGSEARCH_TEST_POSTGRES=$(.ci/postgres.sh start)`.
POSTGRES_SERVER = os.environ.get("REGSEARCH_TEST_POSTGRES")
NO_POSTGRES = "no PostgreSQL server: run `export REGSEARCH_TEST_POSTGRES=$(.ci/postgres.sh start)`"
# A dead worker is found within 2 s.
BEATS = ("--heartbeat-interval", "1", "--grace-period", "2")
# The worker protocol one trial at a time, as these tests follow it (the linear task's default
# on a CPU trains 4 at once; test_fused.py tests fused workers).
ONE_AT_A_TIME = ("--fuse", "1")
FAST = ("--epochs", "5", *BEATS, *ONE_AT_A_TIME)


def start_worker(*args: str, cwd: Path) -> subprocess.Popen:
    """`python -m search.linear args` in the background, as a user would start it."""
    return subprocess.Popen(
        [sys.executable, "-m", "search.linear", *args],
        cwd=cwd,
        env=project_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def trials(url: str, name: str = "linear") -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).trials
    except KeyError:  # the study is not created yet
        return []


def running_with_epochs(url: str, epochs: int, baseline: bool | None = None) -> bool:
    """A trial is mid-training: RUNNING with at least `epochs` reported epochs (and, unless
    `baseline` is None, a baseline or not as it says)."""
    return any(
        t.state == TrialState.RUNNING
        and len(t.intermediate_values) >= epochs
        and (baseline is None or (BASELINE_ATTR in t.user_attrs) == baseline)
        for t in trials(url)
    )


def stop_mid_trial(
    url: str, flags: tuple[str, ...], cwd: Path, signum: int, reason: str, baseline: bool | None
) -> tuple[subprocess.Popen, str, str]:
    """Start `search.linear flags` and send it `signum` once a trial of it (a baseline or not,
    unless None) has reported a few epochs, until the signal stops such a trial (one stored as
    failed for `reason`); the stopped process and its stdout and stderr.

    A linear trial can end by early stopping between the poll and the signal, which then finds
    no trial running (seen under CI's load): the search is started again on the same study,
    which --trials leaves room for. Every attempt must have stopped cleanly.
    """
    for _ in range(5):
        before = {t.number for t in trials(url)}
        search = start_worker(*flags, cwd=cwd)
        wait_until(lambda: running_with_epochs(url, 3, baseline=baseline))
        search.send_signal(signum)
        stdout, stderr = search.communicate(timeout=120)
        assert search.returncode == 128 + signum and "Traceback" not in stderr, stderr
        found = trials(url)
        assert all(t.state != TrialState.RUNNING for t in found), [t.state for t in found]
        stopped = [t for t in found if t.number not in before and t.state == TrialState.FAIL]
        if any(
            t.user_attrs.get("fail_reason") == reason
            and (baseline is None or (BASELINE_ATTR in t.user_attrs) == baseline)
            for t in stopped
        ):
            return search, stdout, stderr
        if not stopped:
            assert "no trial of this command was running: none was lost" in stderr, stderr
    raise AssertionError(f"5 signals in a row stopped no such trial; the last run said:\n{stderr}")


def assert_exact_study(url: str, total: int) -> list[optuna.trial.FrozenTrial]:
    """`total` finished trials, none left RUNNING or WAITING, numbers distinct."""
    found = trials(url)
    states = [t.state for t in found]
    assert len(found) == total, states
    assert all(state.is_finished() for state in states), states
    assert len({t.number for t in found}) == total
    return found


def workers_joined(url: str, name: str = "linear") -> int:
    storage = optuna.storages.RDBStorage(url)
    return storage.get_study_system_attrs(storage.get_study_id_from_name(name))[WORKERS_ATTR]


def postgres_admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as connection:
        connection.execute(sql)


def postgres_reachable() -> bool:
    if not POSTGRES_SERVER:
        return False
    try:
        postgres_admin("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True
