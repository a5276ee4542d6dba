import sqlite3
import threading

from search.locks import DatabaseLock
from search.storage import database_url, open_storage


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
