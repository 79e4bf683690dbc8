"""The Message Objects of a route's message types.

An untyped route's messages are described by their frame and content type:
``"text"`` a string (``text/plain``), ``"bytes"`` binary data
(``application/octet-stream``), ``"json"`` any JSON value (``application/json``).

A typed route's messages are JSON (``application/json``) with the type's JSON
Schema, from :func:`triows._typed.json_schemas`.  A union whose members are named
schemas (a tagged union of classes) is one message per member, so each kind of
message has its own name for documentation and code generators.
"""

from __future__ import annotations

import re
from typing import Any

from .._typed import json_schemas
from ._schemas import LOCAL_REF_TEMPLATE, Components

__all__ = ["route_messages", "type_name"]

_UNTYPED: dict[str, dict[str, Any]] = {
    "text": {
        "name": "text",
        "title": "Text message",
        "contentType": "text/plain",
        "payload": {"type": "string"},
    },
    "bytes": {
        "name": "bytes",
        "title": "Binary message",
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "format": "binary"},
    },
    "json": {
        "name": "json",
        "title": "JSON message",
        "summary": "any JSON value, in a text message",
        "contentType": "application/json",
        "payload": {},
    },
}
_COMPONENT = "#/components/schemas/"
_MODULE_PATH = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")
_INVALID = re.compile(r"[^A-Za-z0-9_.\-]+")


def type_name(tp: Any) -> str:
    """A short, id-safe name for a type: ``Point``, ``list_Point`` (``list[Point]``), ``int``."""
    name = getattr(tp, "__name__", None)
    if isinstance(tp, type) and name:
        return str(name)
    text = _MODULE_PATH.sub(r"\1", repr(tp))
    return _INVALID.sub("_", text).strip("_") or "message"


def route_messages(spec: object, components: Components) -> dict[str, dict[str, Any]]:
    """The messages of one direction of a route (``spec``: a message type's name or a
    type), by key: unique in the document for named schemas, else the type's name."""
    if isinstance(spec, str):
        return {spec: dict(_UNTYPED[spec])}
    [raw], named = json_schemas([spec], LOCAL_REF_TEMPLATE)
    schema = components.add(raw, named)
    choices = schema.get("anyOf")
    if isinstance(choices, list) and choices and all(_component_of(c) for c in choices):
        return dict(_json_message(components, choice) for choice in choices)
    if _component_of(schema):
        return dict([_json_message(components, schema)])
    name = type_name(spec)
    return {name: {"name": name, "contentType": "application/json", "payload": schema}}


def _component_of(schema: Any) -> str | None:
    """The component name a schema is nothing but a ``$ref`` to, else None."""
    if isinstance(schema, dict) and len(schema) == 1:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(_COMPONENT):
            return ref[len(_COMPONENT) :]
    return None


def _json_message(components: Components, ref: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A message whose payload is the named schema ``ref`` points to, keyed by its name."""
    name = _component_of(ref)
    assert name is not None
    message: dict[str, Any] = {"name": name, "contentType": "application/json", "payload": ref}
    title = components.schemas[name].get("title")
    if isinstance(title, str):
        message["title"] = title
    description = components.schemas[name].get("description")
    if isinstance(description, str):
        message["summary"] = description.split("\n\n")[0]
    return name, message
