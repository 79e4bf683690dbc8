"""The official AsyncAPI tools (npm), run on triows' documents.

``tests/asyncapi/`` pins them (``package.json`` and its ``package-lock.json``): the
parser (``@asyncapi/parser``), Modelina (the docs' TypeScript types) and the web
component (the docs' page) and Ajv.  It holds ``parse.cjs``, which parses a batch
of documents and prints every diagnostic, and ``validate.cjs``, which checks
messages against a document's payload schemas.  The first use in a checkout runs ``npm ci`` there (a few seconds;
``node_modules`` is ignored by git); a stamp records which lock file was installed,
so a changed lock reinstalls.  A file lock next to ``node_modules`` makes
concurrent test processes (pytest-xdist's workers) install once, one at a time:
``npm ci`` empties ``node_modules`` first, so a second install must never run while
another process uses it.  Without node and npm, or if npm cannot install, the
test fails with npm's output: there is no skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs
from filelock import FileLock

__all__ = [
    "IGNORED_CODES",
    "NODE_MODULES",
    "Diagnostic",
    "ParseResult",
    "check_messages",
    "ensure_installed",
    "parse_documents",
    "run_script",
]

DIRECTORY = Path(__file__).resolve().parent / "asyncapi"
NODE_MODULES = DIRECTORY / "node_modules"
#: Held while checking and installing NODE_MODULES (ignored by git, like NODE_MODULES).
INSTALL_LOCK = DIRECTORY / ".install.lock"
#: Where scripts from elsewhere (the docs' snippets) run, so that they find NODE_MODULES.
RUN_DIRECTORY = DIRECTORY / ".run"
INSTALL_TIMEOUT = 300.0
PARSE_TIMEOUT = 120.0
#: The one diagnostic a valid triows document gets: an information (severity 2)
#: that AsyncAPI 3.1.0 exists; triows writes 3.0.0 on purpose.
IGNORED_CODES = frozenset({"asyncapi-latest-version"})
_SEVERITIES = {0: "error", 1: "warning", 2: "information", 3: "hint"}


@attrs.frozen
class Diagnostic:
    severity: int
    code: str
    message: str
    path: tuple[str | int, ...]

    def __str__(self) -> str:
        where = "/".join(str(part) for part in self.path)
        return f"{_SEVERITIES.get(self.severity, self.severity)} {self.code} at /{where}: {self.message}"


@attrs.frozen
class ParseResult:
    """What the parser said about one document."""

    parsed: bool
    diagnostics: tuple[Diagnostic, ...]

    @property
    def problems(self) -> list[Diagnostic]:
        """Every diagnostic but the ignored ones (errors, warnings, hints alike)."""
        return [d for d in self.diagnostics if d.code not in IGNORED_CODES]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"the AsyncAPI validity tests need {name!r} (Node.js 18 or newer with npm) "
            "on PATH to run the official parser; install Node.js (Debian: apt-get install "
            "nodejs npm)"
        )
    return found


def ensure_installed() -> None:
    """Install the pinned tools into ``tests/asyncapi/node_modules`` unless the
    installed copy matches the lock file."""
    lock = (DIRECTORY / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    stamp = NODE_MODULES / ".triows-installed-lock"
    if stamp.is_file() and stamp.read_text() == digest:
        return  # the usual case, without the lock: the stamp is written last
    with FileLock(INSTALL_LOCK, timeout=INSTALL_TIMEOUT + 60):
        if not (stamp.is_file() and stamp.read_text() == digest):
            _install(digest, stamp)


def _install(digest: str, stamp: Path) -> None:
    """``npm ci`` in DIRECTORY, then the stamp (the caller holds INSTALL_LOCK)."""
    command = [_tool("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    _output(
        command,
        DIRECTORY,
        INSTALL_TIMEOUT,
        f"npm ci in {DIRECTORY} failed; the AsyncAPI validity tests need the npm "
        "registry once per checkout",
        with_stdout=True,
    )
    stamp.write_text(digest)


def _output(
    command: list[str], cwd: Path, timeout: float, failure: str, *, with_stdout: bool = False
) -> str:
    """Run ``command`` in ``cwd``: its standard output, or RuntimeError naming
    ``failure``, the status and what it printed (stderr; stdout too if asked)."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        printed = f"{done.stdout}\n{done.stderr}" if with_stdout else done.stderr
        raise RuntimeError(f"{failure} (status {done.returncode}):\n{printed}")
    return done.stdout


def run_script(script: Path, *args: str) -> str:
    """Run a Node.js ``script`` (an ES module or CommonJS file from anywhere) with
    the pinned tools importable; its standard output.  Fails with its stderr."""
    ensure_installed()
    RUN_DIRECTORY.mkdir(exist_ok=True)
    copy = RUN_DIRECTORY / script.name
    # Written aside, then renamed: a node process of another test process that runs
    # the same script never reads a half-written copy.
    partial = RUN_DIRECTORY / f".{script.name}.{os.getpid()}"
    partial.write_bytes(script.read_bytes())
    partial.replace(copy)
    return _output(
        [_tool("node"), str(copy), *args],
        RUN_DIRECTORY,
        PARSE_TIMEOUT,
        f"node {script.name} failed",
    )


def parse_documents(documents: dict[str, Any]) -> dict[str, ParseResult]:
    """Parse each document (by name) with ``@asyncapi/parser`` in one node process."""
    ensure_installed()
    done = subprocess.run(
        [_tool("node"), str(DIRECTORY / "parse.cjs")],
        cwd=DIRECTORY,
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        timeout=PARSE_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"parse.cjs failed with status {done.returncode}:\n{done.stderr}")
    results: dict[str, ParseResult] = {}
    for name, raw in json.loads(done.stdout).items():
        diagnostics = tuple(
            Diagnostic(d["severity"], d["code"], d["message"], tuple(d["path"]))
            for d in raw["diagnostics"]
        )
        results[name] = ParseResult(raw["parsed"], diagnostics)
    return results


def check_messages(
    document: dict[str, Any], samples: list[tuple[str, Any]]
) -> list[list[str] | None]:
    """Check each ``(message, value)`` sample against ``document``: ``message`` is a
    message's JSON Pointer (``#/channels/chat/messages/Say``).  Per sample, None when
    the value fits the message's payload schema, else the validator's complaints."""
    ensure_installed()
    request = {"document": document, "samples": [{"message": m, "value": v} for m, v in samples]}
    done = subprocess.run(
        [_tool("node"), str(DIRECTORY / "validate.cjs")],
        cwd=DIRECTORY,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=PARSE_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"validate.cjs failed with status {done.returncode}:\n{done.stderr}")
    results: list[list[str] | None] = json.loads(done.stdout)
    return results
