"""The CI scripts in .ci/, run for real."""

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT

POSTGRES_SH = ROOT / ".ci" / "postgres.sh"
HAS_POSTGRES = shutil.which("pg_ctl") is not None or any(Path("/usr/lib/postgresql").glob("*/bin"))


def postgres_sh(command: str, url: str | None = None) -> subprocess.CompletedProcess:
    # Never this test run's own server (the one $REGSEARCH_TEST_POSTGRES names).
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REGSEARCH_PGDIR", "REGSEARCH_TEST_POSTGRES")
    }
    if url is not None:
        env["REGSEARCH_TEST_POSTGRES"] = url
    return subprocess.run(
        [str(POSTGRES_SH), command], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.skipif(not HAS_POSTGRES, reason="PostgreSQL is not installed")
def test_two_runs_on_one_machine_keep_their_own_postgres_servers():
    """A developer's tests and a CI clone's used to share one folder, and stop each other."""
    first = postgres_sh("start")
    assert first.returncode == 0, first.stderr
    first_url = first.stdout.strip()
    try:
        second = postgres_sh("start")
        assert second.returncode == 0, second.stderr
        second_url = second.stdout.strip()
        try:
            with psycopg.connect(first_url, connect_timeout=10) as connection:
                connection.execute("SELECT 1")
            assert postgres_sh("stop", first_url).returncode == 0
            with psycopg.connect(second_url, connect_timeout=10) as connection:
                connection.execute("SELECT 1")
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(first_url, connect_timeout=10)
        finally:
            postgres_sh("stop", second_url)
    finally:
        postgres_sh("stop", first_url)  # refused if stopped already: nothing to do


def test_stop_without_the_url_of_its_server_stops_nothing():
    stop = postgres_sh("stop")
    assert stop.returncode == 2
    assert stop.stderr.strip() == (
        "postgres.sh: which server? set REGSEARCH_TEST_POSTGRES to the URL start printed"
    )
