"""A lock shared by every worker of one study database, for the few steps that must not race.

Creating the tables and the study, and "count the trials, then start one", are check-then-act
steps: two workers doing them at once would both create, or both take the last slot. SQLite
databases live on one machine, so a lock file beside the database serializes its workers;
PostgreSQL workers on many machines share a server-side advisory lock instead.
"""

import fcntl
import os
from pathlib import Path
from types import TracebackType

import sqlalchemy
from sqlalchemy.engine import make_url

# Any fixed 64-bit number: it names this project's lock among the server's advisory locks.
ADVISORY_KEY = 0x7265_6773_6561_7263  # "regsearc"


class DatabaseLock:
    """Re-usable exclusive lock; a no-op for None and databases other than SQLite and PostgreSQL."""

    def __init__(self, url: str | None) -> None:
        self._file: Path | None = None
        self._engine: sqlalchemy.Engine | None = None
        self._connection: sqlalchemy.Connection | None = None
        self._fd: int | None = None
        if url is None:
            return
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._file = Path(f"{parsed.database}.lock")
        elif backend == "postgresql":
            # One pooled connection, pinged before use so a restarted server is noticed.
            self._engine = sqlalchemy.create_engine(url, pool_size=1, pool_pre_ping=True)

    @property
    def held(self) -> bool:
        return self._fd is not None or self._connection is not None

    def acquire(self) -> None:
        if self._file is not None:
            fd = os.open(self._file, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        elif self._engine is not None:
            connection = self._engine.connect()
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({ADVISORY_KEY})"))
            self._connection = connection

    def release(self) -> None:
        """Release if held (safe to call twice)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({ADVISORY_KEY})"))
            finally:
                # The server drops a session's advisory locks when its connection closes.
                connection.close()

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()

    def __enter__(self) -> "DatabaseLock":
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
