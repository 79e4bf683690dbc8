"""The documents are valid for the official AsyncAPI parser (npm ``@asyncapi/parser``).

Every example's App and a test App with every kind of route are parsed in one
node process per session (tests/asyncapi_parser.py installs the pinned parser on
first use); a document passes only with no diagnostic at all besides the note
that AsyncAPI 3.1.0 exists.  A deliberately broken document proves the check fails.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import pytest

import triows

from .asyncapi_apps import every_route_app
from .asyncapi_parser import ParseResult, parse_documents

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for path in (ROOT / "examples").rglob("*.py")
    if "__pycache__" not in path.parts and path.name != "__init__.py"
)


def example_documents() -> dict[str, dict[str, Any]]:
    """The document of every App named ``app`` in a module under examples/."""
    documents: dict[str, dict[str, Any]] = {}
    for name in EXAMPLE_MODULES:
        app = getattr(importlib.import_module(name), "app", None)
        if isinstance(app, triows.App):
            documents[name] = app.asyncapi(server="ws://127.0.0.1:8000")
    return documents


def broken_documents() -> dict[str, dict[str, Any]]:
    """Documents the parser must refuse (it finds an error in each)."""
    good = every_route_app().asyncapi()
    missing_channel = copy.deepcopy(good)
    missing_channel["operations"]["text.receive"]["channel"] = {"$ref": "#/channels/nowhere"}
    bad_action = copy.deepcopy(good)
    bad_action["operations"]["text.send"]["action"] = "publish"  # AsyncAPI 2's word
    version_2_channel = copy.deepcopy(good)
    version_2_channel["channels"]["text"]["subscribe"] = {"message": {"payload": {}}}
    return {
        "broken: missing channel": missing_channel,
        "broken: bad action": bad_action,
        "broken: AsyncAPI 2 channel": version_2_channel,
    }


@pytest.fixture(scope="session")
def parsed() -> dict[str, ParseResult]:
    """Every document of this module, parsed once per session."""
    documents = example_documents()
    documents["every route"] = every_route_app().asyncapi(server="wss://example.com")
    documents.update(broken_documents())
    return parse_documents(documents)


def assert_valid(result: ParseResult) -> None:
    assert result.parsed and not result.problems, "\n".join(str(p) for p in result.problems)


def test_examples_have_documents() -> None:
    expected = {"examples.echo", "examples.ticker", "examples.chat.app", "examples.rpc"}
    assert expected <= set(example_documents())


@pytest.mark.parametrize("module", EXAMPLE_MODULES)
def test_example_documents_are_valid(module: str, parsed: dict[str, ParseResult]) -> None:
    if module not in parsed:
        app = getattr(importlib.import_module(module), "app", None)
        assert not isinstance(app, triows.App)
        return  # a helper module of an example, without an App
    assert_valid(parsed[module])


def test_every_kind_of_route_gives_a_valid_document(parsed: dict[str, ParseResult]) -> None:
    assert_valid(parsed["every route"])


@pytest.mark.parametrize("name", sorted(broken_documents()))
def test_the_parser_refuses_a_broken_document(name: str, parsed: dict[str, ParseResult]) -> None:
    result = parsed[name]
    errors = [d for d in result.problems if d.severity == 0]
    assert errors, f"{name}: the parser found nothing wrong"
    assert not result.parsed
