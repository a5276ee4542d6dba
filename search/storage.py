"""Opening a study database from a URL, with errors a user can act on."""

import os
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial
from sqlalchemy.engine import URL, make_url

from search.errors import UsageError
from search.locks import DatabaseLock

URL_HINT = "use sqlite:///path/to/file.db or postgresql://user:password@host/database"
# user:password@ in a URL SQLAlchemy cannot parse (a bad port, say), to mask it all the same.
_USER_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")
# The pip package of each driver module SQLAlchemy may ask for (others: the module's name).
_DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "psycopg2": "psycopg2-binary"}
# What a vanished or unreachable database raises: Optuna wraps failed commits.
STORAGE_ERRORS = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)


def storage_error(error: BaseException | None) -> BaseException | None:
    """The database error behind `error`, if any (Optuna 5.0 can mask one with its own)."""
    while error is not None and not isinstance(error, STORAGE_ERRORS):
        error = error.__cause__ or error.__context__
    return error


def reason(error: BaseException) -> str:
    """The first line of what the database driver said, for a one-line error."""
    while error.__cause__ is not None:
        error = error.__cause__
    error = getattr(error, "orig", None) or error
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def safe_url(url: str) -> str:
    """`url` fit to print, log or store: its password, if any, replaced by ***."""
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return _USER_PASSWORD.sub(r"\1***@", url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def without_password(url: str) -> tuple[str, bool]:
    """`url` with its password left out, to print a command that runs as printed: libpq reads
    the password from PGPASSWORD or ~/.pgpass instead. Also whether there was one."""
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        masked = safe_url(url)
        return masked, masked != url
    if parsed.password is None:
        return url, False
    # URL.set ignores a None password: build the URL again without it.
    bare = URL.create(
        parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
        parsed.query,
    )  # fmt: skip
    return bare.render_as_string(hide_password=False), True


def database_url(url: str) -> str:
    """`url` with plain postgresql:// pointed at psycopg 3, the driver installed here."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def sqlite_connector(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connections that let several worker processes write to one file.

    WAL lets readers (dashboard, report) and one writer work at once, and the busy timeout
    makes a writer wait for the lock instead of failing with "database is locked". Every epoch
    of every trial is one `trial.report` commit: with synchronous=NORMAL it no longer waits for
    an fsync (~8 ms → ~1.5 ms here, more than a linear-task epoch). A power cut may lose the
    last commits, never corrupt the file.
    """

    def connect() -> sqlite3.Connection:
        # The heartbeat thread uses pooled connections made in the main thread.
        connection = sqlite3.connect(path, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout = 60000")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    return connect


def read_only_sqlite_connector(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connections that read a database this user may not write (the file or its folder).

    SQLite wants to make its -shm (and -wal) file beside a WAL database even to read it, which
    a read-only folder refuses ("unable to open database file"). Without a -wal file nobody is
    writing the database, so it is opened as immutable, which needs neither; with one, a writer
    is at work and its -shm file exists to read through.
    """
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if not Path(f"{path}-wal").exists():
        uri += "&immutable=1"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout = 60000")
        return connection

    return connect


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite URL, or None for other databases and in-memory sqlite."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.host:
        # sqlite://studies/x.db reads "studies" as a host and names no file.
        raise UsageError(
            f"storage {url!r} names no file: a SQLite URL has three slashes before a relative "
            "path (sqlite:///studies/x.db) and four before an absolute one (sqlite:////srv/x.db)"
        )
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def open_storage(
    url: str,
    create: bool = True,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    flag: str = "--storage",
) -> optuna.storages.RDBStorage:
    """Open (and with `create`, make) the database behind `url`.

    Without `create` a missing sqlite file is an error rather than a new empty database, which
    is what readers such as the report want; the error names `flag`, where the URL came from.
    With `heartbeat_interval` every running trial records a heartbeat; one silent for
    `grace_period` seconds is failed and handed to `stale_trial_callback`.
    """
    shown, url = safe_url(url), database_url(url)
    try:
        path = sqlite_path(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise UsageError(f"storage {shown!r} is not a database URL: {URL_HINT}") from None
    engine_kwargs: dict = {}
    made = None  # the first folder made for a new SQLite file, if any
    if path is not None:
        if path.is_dir():
            raise UsageError(f"storage {shown!r} points at a folder: name a .db file inside it")
        if create and path.exists() and not os.access(path, os.W_OK):
            # Checked before the lock file and SQLite's -wal/-shm files are made beside it: a
            # refused run leaves the folder as it was.
            raise UsageError(
                f"storage {shown!r} is read-only for this user: a search writes its trials "
                "there; search in a writable copy, or read it with search.report"
            )
        if not path.exists() and not create:
            raise UsageError(f"no study database at {path}: check {flag}")
        made = _make_folder(path.parent)
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        if create or writable:
            engine_kwargs["creator"] = sqlite_connector(path)
        else:
            engine_kwargs["creator"] = read_only_sqlite_connector(path)
    # A file SQLite refuses (not a database) keeps no lock file of ours beside it. Its header is
    # not read here instead: closing any descriptor of a database file drops every SQLite lock
    # this process holds on it, and the workers' own connections would then corrupt it.
    lock_file = None if path is None else Path(f"{path}.lock")
    refusable = (
        lock_file is not None
        and not lock_file.exists()
        and path.is_file()
        and path.stat().st_size > 0
    )
    try:
        storage = _connect(
            url,
            shown,
            create,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=stale_trial_callback,
        )
    except UsageError:
        if refusable:
            lock_file.unlink(missing_ok=True)
        raise
    if made is not None:
        print(f"made the folder {made} for the new study database", file=sys.stderr)
    return storage


def _make_folder(folder: Path) -> Path | None:
    """Make `folder` and its missing parents; the first one made (None if it existed)."""
    missing = None
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        missing = parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot make the folder {folder}: {error.strerror}") from None
    return missing


def _connect(url: str, shown: str, create: bool, **kwargs) -> optuna.storages.RDBStorage:
    """Optuna's storage on `url`; its errors as one line."""
    try:
        # Workers started together on a new database would race to create its tables.
        lock = DatabaseLock(url if create else None)
        try:
            with lock:
                return optuna.storages.RDBStorage(url, **kwargs)
        finally:
            lock.close()
    except ImportError as error:  # Optuna's, for a driver module that is not installed
        module = getattr(error.__context__, "name", None) or "its driver"
        package = _DRIVER_PACKAGES.get(module, module)
        raise UsageError(
            f"storage {shown!r} needs the database driver {module}, which is not installed: "
            f"pip install {package}"
        ) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise UsageError(
            f"storage {shown!r} names an unknown database driver: {URL_HINT}"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise UsageError(f"cannot open storage {shown!r}: {reason}") from None
    except OSError as error:  # the lock file beside an SQLite database cannot be made
        raise UsageError(
            f"cannot open storage {shown!r}: {error.strerror}: {error.filename}"
        ) from None


def find_studies(
    storages: list[str], names: list[str] | None, flag: str = "--storage"
) -> list[optuna.Study]:
    """Load the named studies (or all) from the databases, which must already exist (given by
    `flag`).

    A name held by several databases gives one study from each, in the order of `storages`.
    """
    found: list[optuna.Study] = []
    available: list[str] = []
    for url in dict.fromkeys(storages):
        storage = open_storage(url, create=False, flag=flag)
        for name in optuna.get_all_study_names(storage):
            available.append(name)
            if names is None or name in names:
                found.append(optuna.load_study(study_name=name, storage=storage))
    missing = [name for name in names or [] if name not in available]
    if missing:
        listed = ", ".join(sorted(set(available))) or "none"
        raise UsageError(f"no study named {missing[0]!r}: the database(s) hold {listed}")
    if not found:
        raise UsageError("the database(s) hold no study yet: run python -m search.linear first")
    return found
