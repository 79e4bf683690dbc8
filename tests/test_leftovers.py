"""scripts/leftovers.py, CI's check that the suite leaves nothing behind: a process
still running, a tracked file modified.  Each case runs it for real on a small
command, in a throw-away git repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "leftovers.py"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A git repository with one committed file, ``tracked.txt``."""
    (tmp_path / "tracked.txt").write_text("committed\n")
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "tracked.txt"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "x"],
    ):
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=30)
    return tmp_path


def leftovers(directory: Path, shell: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--", "bash", "-c", shell],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_clean_command_passes_with_its_own_status(repository: Path) -> None:
    assert leftovers(repository, "echo fine").returncode == 0
    failed = leftovers(repository, "exit 3")
    assert failed.returncode == 3
    assert "FAILED" not in failed.stderr


def test_a_process_left_running_is_named_and_ended(repository: Path) -> None:
    # Detached twice over: a background subshell's child, and a new session.
    result = leftovers(repository, "(sleep 300 &); setsid sleep 301 & exit 0")
    assert result.returncode == 1
    assert "leftovers: FAILED: 2 process(es) still running after bash -c" in result.stderr
    pids = [int(p) for p in re.findall(r"pid (\d+): sleep 30[01]", result.stderr)]
    assert len(pids) == 2, result.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"leftover {pid} still running"


def test_a_process_that_exits_soon_after_is_not_a_leftover(repository: Path) -> None:
    # A server's child that needs a moment to exit after the suite (within the grace).
    assert leftovers(repository, "(sleep 1 &); exit 0").returncode == 0


def test_a_modified_tracked_file_is_named(repository: Path) -> None:
    result = leftovers(repository, "echo changed >> tracked.txt; echo new > untracked.txt")
    assert result.returncode == 1
    # Untracked files are not part of this check: only tracked.txt is named.
    assert "modified tracked files: tracked.txt (git diff" in result.stderr


def test_a_file_modified_before_the_run_is_not_blamed_on_it(repository: Path) -> None:
    (repository / "tracked.txt").write_text("work in progress\n")
    assert leftovers(repository, "cat tracked.txt").returncode == 0
    result = leftovers(repository, "echo more >> tracked.txt")
    assert result.returncode == 1
    assert "modified tracked files: tracked.txt" in result.stderr
