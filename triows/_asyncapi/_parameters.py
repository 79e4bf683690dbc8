"""A route's parameters in AsyncAPI: ``{name}`` segments and the query string.

Route parameters become the channel's ``parameters`` (AsyncAPI 3.0 gives them no
schema: they are strings in the address; the description names the type the
view converts them to).  Query parameters become the channel's WebSocket
binding: ``bindings.ws.query``, a JSON Schema object with one property per
parameter, required unless the view gives it a default (other query parameters
are ignored by the server, so the schema does not forbid them).  Providers and the
connection itself are not parameters of the channel.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Container
from typing import Any

from .._routing import Parameter, Pattern, ViewSignature, convert_bool

__all__ = ["WS_BINDING_VERSION", "address_parameters", "query_bindings"]

#: The version of AsyncAPI's WebSocket bindings this module writes.
WS_BINDING_VERSION = "0.1.0"

_SCHEMAS: dict[Callable[..., Any], dict[str, Any]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    convert_bool: {"type": "boolean"},
    uuid.UUID: {"type": "string", "format": "uuid"},
}
_WORDS = {"integer": "an integer", "number": "a number", "boolean": "a boolean"}
_JSON_SCALARS = (str, int, float, bool)


def _schema_of(parameter: Parameter) -> dict[str, Any]:
    """The JSON Schema of a parameter's value, read from its converter."""
    schema = dict(_SCHEMAS.get(parameter.convert, {"type": "string"}))
    if parameter.convert is convert_bool:
        schema["description"] = "true/false, 1/0, yes/no or on/off, in any case"
    return schema


def _is_json_scalar(value: object) -> bool:
    """Whether ``value`` can be a JSON Schema ``default`` as it is (None is left out:
    an absent parameter is not a null one)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, _JSON_SCALARS)


def address_parameters(pattern: Pattern, signature: ViewSignature) -> dict[str, Any]:
    """The channel's ``parameters``: one per ``{name}`` segment of the pattern."""
    by_name = {p.name: p for p in signature.parameters}
    parameters: dict[str, Any] = {}
    for name in pattern.names:
        found = by_name.get(name)
        kind = "string" if found is None else _schema_of(found)["type"]
        word = _WORDS.get(kind, "a string")
        parameters[name] = {"description": f"a path segment ({word}; no '/')"}
    return parameters


def query_bindings(signature: ViewSignature, providers: Container[str]) -> dict[str, Any]:
    """The channel's ``bindings``: the query parameters as ``ws.query``, or nothing."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in signature.parameters:
        name = parameter.name
        if name in signature.route_names or name in providers:
            continue
        schema = _schema_of(parameter)
        if parameter.required:
            required.append(name)
        elif _is_json_scalar(parameter.default):
            schema["default"] = parameter.default
        properties[name] = schema
    if not properties:
        return {}
    query: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        query["required"] = required
    return {"ws": {"query": query, "bindingVersion": WS_BINDING_VERSION}}
