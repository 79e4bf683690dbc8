"""Run a command (CI: the test suite) and check that it left nothing behind.

    python3 scripts/leftovers.py -- bash scripts/test

After the command exits, two checks:

* processes: this script makes itself a child subreaper (Linux ``prctl``), so every
  process the command started that outlives its parent is re-parented here instead
  of to init, however it detached (background, double fork, new session).  Any
  descendant still running a few seconds after the command exited is a leftover:
  each is named (pid and command line), then terminated so that CI does not hang.
* tracked files: the git working tree's modified tracked files (status and content)
  are compared before and after; a tracked file the command modified is named.

Exit status: the command's own if it failed; otherwise 1 if there was a leftover
process or a modified tracked file, else 0.  Standard library only (it runs before
the virtualenv exists).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
#: Seconds after the command exits for its processes to finish exiting by themselves.
GRACE = 5.0
#: Seconds a leftover gets after SIGTERM before SIGKILL.
TERM_WAIT = 3.0


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        print("usage: python3 scripts/leftovers.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"leftovers: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 2
    before = tracked_changes()
    # Ctrl+C reaches the command (same process group); this script still checks after.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = subprocess.call(command)
    finally:
        signal.signal(signal.SIGINT, previous)
    leftovers = wait_for_descendants(GRACE)
    after = tracked_changes()
    modified = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    failed = False
    if leftovers:
        failed = True
        print(
            f"leftovers: FAILED: {len(leftovers)} process(es) still running after "
            f"{' '.join(command)}:",
            file=sys.stderr,
        )
        for pid, line in leftovers.items():
            print(f"  pid {pid}: {line}", file=sys.stderr)
        terminate(list(leftovers))
    if modified:
        failed = True
        print(
            f"leftovers: FAILED: {' '.join(command)} modified tracked files: "
            f"{', '.join(modified)} (git diff shows how; git checkout -- FILE restores)",
            file=sys.stderr,
        )
    if status != 0:
        return status
    return 1 if failed else 0


def tracked_changes() -> dict[str, str]:
    """Each tracked file that differs from HEAD: its git status and a content hash."""
    result = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=no"],
        check=True,
        capture_output=True,
    )
    changes: dict[str, str] = {}
    entries = iter(result.stdout.decode(errors="surrogateescape").split("\0"))
    for entry in entries:
        if not entry:
            continue
        state, path = entry[:2], entry[3:]
        if "R" in state or "C" in state:
            next(entries, None)  # the rename's source path
        file = Path(path)
        digest = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else "-"
        changes[path] = f"{state} {digest}"
    return changes


def descendants() -> dict[int, str]:
    """Every live (non-zombie) descendant of this process: pid -> command line."""
    parents: dict[int, int] = {}
    states: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(stat.parent.name)
        states[pid], parents[pid] = fields[0], int(fields[1])
    found: dict[int, str] = {}
    pending = [os.getpid()]
    while pending:
        parent = pending.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                pending.append(pid)
                found[pid] = _command_line(pid)
    return {pid: line for pid, line in found.items() if states.get(pid) != "Z"}


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def reap() -> None:
    """Collect the exit status of every child that has exited (re-parented ones too)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_for_descendants(grace: float) -> dict[int, str]:
    """The descendants still running after ``grace`` seconds (reaping those that exit)."""
    deadline = time.monotonic() + grace
    while True:
        reap()
        alive = descendants()
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def terminate(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL past TERM_WAIT; reap them."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + TERM_WAIT
        while time.monotonic() < deadline:
            reap()
            alive = descendants()
            pids = [pid for pid in pids if pid in alive]
            if not pids:
                reap()  # those that became zombies since the last reap
                return
            time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
