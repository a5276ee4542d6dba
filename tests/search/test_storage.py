import sqlite3
import subprocess
import threading

import pytest

from search.locks import DatabaseLock
from search.storage import database_url, open_storage, safe_url, without_password
from tests.conftest import run_module


def test_a_url_without_its_password_keeps_everything_else():
    url = "postgresql+psycopg://user:s3cr3t@dbhost:5433/regsearch?sslmode=require"
    assert without_password(url) == (
        "postgresql+psycopg://user@dbhost:5433/regsearch?sslmode=require",
        True,
    )
    assert without_password("sqlite:///studies/x.db") == ("sqlite:///studies/x.db", False)


def test_plain_postgresql_urls_use_psycopg_3():
    assert database_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert database_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert database_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_studies_use_wal_so_writers_wait_instead_of_failing(tmp_path):
    db = tmp_path / "s.db"
    storage = open_storage(f"sqlite:///{db}")
    # The journal mode is stored in the file: every later reader and writer uses WAL too.
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: the storage's own connections skip the fsync per commit.
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_the_database_lock_excludes_a_second_holder(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    first, second = DatabaseLock(url), DatabaseLock(url)
    got_it = threading.Event()
    first.acquire()
    waiter = threading.Thread(target=lambda: (second.acquire(), got_it.set()))
    waiter.start()
    assert not got_it.wait(0.5)  # blocked while the first holds it
    first.release()
    assert got_it.wait(10)
    waiter.join()
    second.close()
    first.close()


SECRET = "s3cr3t-pw"
UNREACHABLE = f"postgresql://user:{SECRET}@127.0.0.1:1/db"  # nothing listens on port 1
UNPARSABLE = f"postgresql://user:{SECRET}@host:no-port/db"  # SQLAlchemy cannot parse it


def test_safe_url_masks_only_the_password():
    assert safe_url(UNREACHABLE) == "postgresql://user:***@127.0.0.1:1/db"
    assert safe_url(UNPARSABLE) == "postgresql://user:***@host:no-port/db"
    assert safe_url("postgresql://user@host/db") == "postgresql://user@host/db"
    assert safe_url("sqlite:///studies/x.db") == "sqlite:///studies/x.db"


def assert_masked(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 2, run.stderr
    assert SECRET not in run.stdout + run.stderr
    assert "user:***@" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("url", [UNREACHABLE, UNPARSABLE], ids=["unreachable", "unparsable"])
def test_the_search_never_prints_a_password(tmp_path, url):
    assert_masked(run_module("search.linear", "--storage", url, cwd=tmp_path))


@pytest.mark.parametrize(
    ("module", "flags"),
    [
        ("search.report", ("--study-name", "linear")),
        ("search.dashboard", ()),
        ("search.tools.replay", ()),
    ],
)
def test_the_readers_never_print_a_password(tmp_path, module, flags):
    assert_masked(run_module(module, "--storage", UNREACHABLE, *flags, cwd=tmp_path))


def test_the_cifar_search_never_prints_a_password(tmp_path, cifar_archive, cifar_cache):
    run = run_module(
        "search.cifar",
        *("--data", str(cifar_archive), "--cache-dir", str(cifar_cache)),
        *("--storage", UNREACHABLE),
        cwd=tmp_path,
    )
    assert_masked(run)
