"""The distribution: a wheel built from this tree holds every package of triows, its
metadata (version, classifiers, extras) is what pyproject.toml says, and the core
installs and imports without any extra."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import triows

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: The import names of the optional extras' packages: the core must import without them.
EXTRA_MODULES = (
    "coredis",
    "trio_websocket",
    "watchfiles",
    "prometheus_client",
    "opentelemetry",
    "pydantic",
)


def _requirement_name(requirement: str) -> str:
    """``"hypercorn>=0.18,<0.19"`` -> ``"hypercorn"`` (normalized)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def test_the_wheel_holds_every_package(tmp_path: Path) -> None:
    # An editable install maps the source tree and hides a package missing from
    # the build configuration; a wheel does not.
    # Built from a copy of the tracked files: a build/ directory left in the tree
    # would feed setuptools what the configuration itself leaves out.
    source = tmp_path / "source"
    tracked = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("triows-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert wheel.name.startswith(f"triows-{triows.__version__}-")
    (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = Parser().parsestr(archive.read(metadata_name).decode())
    assert metadata["Version"] == triows.__version__  # one place: triows.__version__
    assert "Framework :: Trio" in metadata.get_all("Classifier", [])
    requires = metadata.get_all("Requires-Dist", [])
    unconditional = {_requirement_name(r) for r in requires if ";" not in r}
    assert {"coredis", "trio-websocket", "watchfiles", "mypy", "pytest"}.isdisjoint(unconditional)
    extras = set(metadata.get_all("Provides-Extra", []))
    assert {"redis", "client", "reload", "dev", "test"} <= extras
    packages = sorted(p.parent.relative_to(ROOT) for p in (ROOT / "triows").rglob("__init__.py"))
    assert len(packages) >= 4  # triows, hub, _native, _hypercorn
    for package in packages:
        assert f"{package.as_posix()}/__init__.py" in names, package
    assert "triows/py.typed" in names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "triows").rglob("*.py")}
    assert sources <= names, sorted(sources - names)


def test_the_version_is_defined_once() -> None:
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert "version" not in PYPROJECT["project"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "triows.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", triows.__version__)
    # The installed (editable) distribution reports the same version.
    assert importlib.metadata.version("triows") == triows.__version__


def test_the_core_dependencies_are_exactly_what_triows_imports() -> None:
    """Every third-party package a triows module imports at module level is a core
    dependency, every core dependency is imported somewhere in triows/, and
    ``import triows`` (with its testing helpers and the CLI) works without any extra."""
    script = (
        "import json, sys\n"
        f"for name in {EXTRA_MODULES!r}:\n"
        "    sys.modules[name] = None  # an import of it raises ModuleNotFoundError\n"
        "import triows, triows.testing, triows.hub, triows._cli\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()\n"
        "    if n.split('.')[0] == 'triows' and getattr(m, '__file__', None))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = [Path(f) for f in json.loads(result.stdout)]
    distributions = importlib.metadata.packages_distributions()
    core = {_requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    imported_at_load: dict[str, str] = {}
    for source in loaded:
        for name in _imports(ast.parse(source.read_text()), module_level=True):
            for dist in distributions.get(name, []):
                imported_at_load[_requirement_name(dist)] = f"{source.name} imports {name}"
    assert set(imported_at_load) <= core, {
        d: why for d, why in imported_at_load.items() if d not in core
    }
    imported_anywhere: set[str] = set()
    for source in (ROOT / "triows").rglob("*.py"):
        for name in _imports(ast.parse(source.read_text()), module_level=False):
            imported_anywhere.update(_requirement_name(d) for d in distributions.get(name, []))
    assert core <= imported_anywhere, (
        f"core dependencies triows never imports: {core - imported_anywhere}"
    )


def _imports(tree: ast.Module, *, module_level: bool) -> set[str]:
    """The top-level names of the absolute imports in ``tree`` (those at module level
    only, outside ``if TYPE_CHECKING:``, when ``module_level``)."""
    nodes: list[ast.AST] = []
    if module_level:
        pending: list[ast.stmt] = list(tree.body)
        while pending:
            statement = pending.pop()
            if isinstance(statement, ast.If):
                test = statement.test
                if not (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"):
                    pending.extend(statement.body + statement.orelse)
            elif isinstance(statement, ast.Try):
                pending.extend(statement.body + statement.orelse + statement.finalbody)
                for handler in statement.handlers:
                    pending.extend(handler.body)
            else:
                nodes.append(statement)
    else:
        nodes = list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names)


async def test_a_redis_hub_without_coredis_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if coredis were not installed: importing it raises ModuleNotFoundError.
    monkeypatch.setitem(sys.modules, "coredis", None)
    monkeypatch.delitem(sys.modules, "triows.hub._redis", raising=False)
    with pytest.raises(ImportError, match=re.escape("pip install 'triows[redis]'")) as missing:
        triows.Hub("redis://127.0.0.1:6379/0")
    assert "Hub('redis://127.0.0.1:6379/0') needs the Redis client coredis" in str(missing.value)
    triows.Hub()  # the in-memory hub needs nothing


def test_the_test_extra_pulls_in_the_runtime_extras_the_suite_uses() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    (self_reference,) = [r for r in extras["test"] if r.startswith("triows[")]
    pulled = set(self_reference[len("triows[") : -1].split(","))
    assert {"redis", "client", "reload"} <= pulled
    dev = {_requirement_name(r) for r in extras["dev"]}
    assert {"ruff", "mypy", "mkdocs"} <= dev
    test = {_requirement_name(r) for r in extras["test"]}
    assert {"ruff", "mypy"}.isdisjoint(test)  # linters are dev tools, not test needs


def test_the_install_instructions_install_from_a_checkout() -> None:
    # triows is not on PyPI: `pip install triows` would install nothing (or someone
    # else's package).  The docs say to install from a checkout or a git URL.
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    wrong = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if re.search(r"pip install (-U |--upgrade )?['\"]?triows\b(?! @)", line)
    ]
    assert wrong == []
    assert "pip install -e" in (ROOT / "docs" / "getting-started.md").read_text()


def test_every_extra_an_error_message_names_exists() -> None:
    # An ImportError that says "pip install 'triows[x]'" must name a real extra.
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    named = {
        (source.relative_to(ROOT).as_posix(), extra)
        for source in (ROOT / "triows").rglob("*.py")
        for extra in re.findall(r"triows\[(\w+)\]", source.read_text())
    }
    assert {extra for _, extra in named} >= {"redis", "reload"}
    assert [(path, extra) for path, extra in sorted(named) if extra not in extras] == []
