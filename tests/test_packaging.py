"""The distribution: a wheel built from this tree holds every package of triows."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(p.parent.relative_to(ROOT) for p in (ROOT / "triows").rglob("__init__.py"))
    assert len(packages) >= 4  # triows, hub, _native, _hypercorn
    for package in packages:
        assert f"{package.as_posix()}/__init__.py" in names, package
    assert "triows/py.typed" in names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "triows").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
