"""What ``triows run TARGET`` names: ``module:attribute``, or ``path/to/file.py:attribute``."""

from __future__ import annotations

from pathlib import PurePath

__all__ = ["module_name"]


def module_name(text: str) -> str:
    """The module to import for the module part of a target.

    ``echo`` and ``examples.chat.app`` are module names already.  A file path
    relative to the current directory, ``echo.py`` or ``examples/echo.py``, names the
    module ``echo`` or ``examples.echo``.  Raises SystemExit for a file outside the
    current directory (it cannot be imported by module name from here), saying what
    to write instead.
    """
    if not text.endswith(".py") and "/" not in text:
        return text
    path = PurePath(text)
    if path.is_absolute() or ".." in path.parts or path.suffix != ".py":
        raise SystemExit(
            f"triows: cannot import {text!r}: give the module, not a file path, e.g. "
            f"'triows run {path.stem}:app' from the directory that holds {path.name}"
        )
    parts = path.with_suffix("").parts
    if not all(part.isidentifier() for part in parts):
        raise SystemExit(
            f"triows: {text!r} is not an importable module path: every directory and the "
            "file name must be Python identifiers (e.g. my_app.py, not my-app.py)"
        )
    return ".".join(parts)
