"""Opening a study database from a URL, with errors a user can act on."""

from pathlib import Path

import optuna
import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from search.errors import UsageError

URL_HINT = "use sqlite:///path/to/file.db or postgresql://user:password@host/database"


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite URL, or None for other databases and in-memory sqlite."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return None
    return Path(parsed.database)


def open_storage(url: str, create: bool = True) -> optuna.storages.RDBStorage:
    """Open (and with `create`, make) the database behind `url`.

    Without `create` a missing sqlite file is an error rather than a new empty database, which
    is what readers such as the report want.
    """
    try:
        path = sqlite_path(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise UsageError(f"storage {url!r} is not a database URL: {URL_HINT}") from None
    engine_kwargs: dict = {}
    if path is not None:
        if path.is_dir():
            raise UsageError(f"storage {url!r} points at a folder: name a .db file inside it")
        if not path.exists():
            if not create:
                raise UsageError(f"no study database at {path}: check --storage")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UsageError(f"cannot create folder for {path}: {error.strerror}") from None
        # Wait for other writers instead of failing at once with "database is locked".
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except sqlalchemy.exc.NoSuchModuleError:
        raise UsageError(f"storage {url!r} names an unknown database driver: {URL_HINT}") from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise UsageError(f"cannot open storage {url!r}: {reason}") from None
    if path is not None:
        _fast_commits(storage.engine)
    return storage


def _fast_commits(engine: sqlalchemy.Engine) -> None:
    """WAL journal with synchronous=NORMAL: a commit no longer waits for an fsync.

    Every epoch of every trial is one `trial.report` commit; with the default rollback journal
    each costs ~8 ms on these disks (more than a linear-task epoch), with WAL ~1.5 ms. WAL also
    lets readers (dashboard, report) read while a worker writes. A power cut may lose the last
    commits, never corrupt the file.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # RDBStorage already connected (to create the schema) before the listener existed.
    engine.dispose()
