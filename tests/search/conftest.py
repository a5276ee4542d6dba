import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import run_module
from tests.search.workers_helpers import (
    NO_POSTGRES,
    POSTGRES_SERVER,
    postgres_admin,
    postgres_reachable,
)

DASHBOARD_CLI = Path(sys.executable).parent / "optuna-dashboard"
# `python -m search.bench` and `search.replay` ran the tools before they moved to search/tools/
OLD_NAMES = {"search.bench": "search.tools.bench", "search.replay": "search.tools.replay"}


@pytest.fixture
def postgres_database() -> Iterator[tuple[str, str]]:
    """A fresh database on the test server: (its name, its plain postgresql:// URL)."""
    if not postgres_reachable():
        pytest.skip(NO_POSTGRES)
    name = f"regsearch_{uuid.uuid4().hex[:12]}"
    postgres_admin(f"CREATE DATABASE {name}")
    yield name, make_url(POSTGRES_SERVER).set(database=name).render_as_string(hide_password=False)
    postgres_admin(f"DROP DATABASE {name} WITH (FORCE)")


@dataclass(frozen=True)
class ReportedStudy:
    url: str
    out: Path  # the report folder
    stdout: str


@pytest.fixture(scope="session")
def reported_study(tmp_path_factory) -> ReportedStudy:
    """A real 8-trial linear study (10 epochs) and its report with 2 seeds, made once."""
    root = tmp_path_factory.mktemp("reported")
    url = f"sqlite:///{root / 'linear.db'}"
    search = run_module(
        "search.linear", "--trials", "8", "--epochs", "10", "--storage", url, cwd=root
    )
    assert search.returncode == 0, search.stderr
    report = run_module(
        "search.report", "--storage", url, "--study-name", "linear", "--repeats", "2", cwd=root
    )
    assert report.returncode == 0, report.stderr
    return ReportedStudy(url, root / "studies" / "linear-report", report.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 30) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def wait_until_serving(base: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read()}")
        try:
            get_json(f"{base}/api/meta", timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no answer from {base} within {seconds}s")


@pytest.fixture
def serve() -> Iterator:
    """Start a real HTTP server process (a command taking the port last); stopped at the end."""
    processes: list[subprocess.Popen] = []

    def start(*command: str, cwd: Path | None = None) -> str:
        port = free_port()
        process = subprocess.Popen(
            [*command, str(port)],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, process)
        return base

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


NOBODY = 65534  # uid and gid of the unprivileged user on Debian-like systems


@dataclass(frozen=True)
class ReadOnlyCopy:
    """A copy of a study database that the test's commands may read but not write."""

    folder: Path  # writable by them, as a user's own folder is
    url: str

    def command(self, module: str, *args: str) -> list[str]:
        """`python -m module args`; as root (whom file modes do not stop), as nobody."""
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        return [*prefix, sys.executable, "-m", module, *args]

    def run(self, module: str, *args: str) -> subprocess.CompletedProcess:
        """`python -m module args` in `folder`, as `command` says."""
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "HOME": str(self.folder),  # matplotlib wants a writable config folder
        }
        return subprocess.run(
            self.command(module, *args),
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )


def _copy_database(url: str, db: Path) -> None:
    """Copy a SQLite study to `db`, read-only for everyone but root."""
    # The backup API, not a file copy: the source may have pages in its -wal file still.
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(db)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    db.chmod(0o444)


@pytest.fixture
def read_only_copy(reported_study) -> Iterator[ReadOnlyCopy]:
    """The reported study's database, copied into a folder outside pytest's (root-only) tmp."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot open a file read-only for real")
    folder = Path(tempfile.mkdtemp(prefix="regsearch-ro-"))
    try:
        folder.chmod(0o777)
        db = folder / "colleague.db"
        _copy_database(reported_study.url, db)
        yield ReadOnlyCopy(folder, f"sqlite:///{db}")
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def read_only_share(reported_study) -> Iterator[ReadOnlyCopy]:
    """The reported study's database in a folder the test's commands cannot write (a read-only
    mount, a colleague's results); `folder` is their own, writable one."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot open a file read-only for real")
    folder = Path(tempfile.mkdtemp(prefix="regsearch-share-"))
    share = folder / "share"
    try:
        folder.chmod(0o777)
        share.mkdir()
        _copy_database(reported_study.url, share / "colleague.db")
        share.chmod(0o555)
        yield ReadOnlyCopy(folder, f"sqlite:///{share / 'colleague.db'}")
    finally:
        share.chmod(0o755)
        shutil.rmtree(folder)
