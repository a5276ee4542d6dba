"""Which code produced a result: the git commit recorded in bench.json and report.json."""

import subprocess
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, "+dirty" if it has uncommitted changes;
    None outside a git checkout (an installed copy, no git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")
