"""Typed messages: a user type turned, once, into a decoder, an encoder and a JSON Schema.

The one entry point is :func:`codec_for` (used by ``websocket_route(receive_type=T)``,
by JSON-RPC parameters and results, and by the AsyncAPI document through
:func:`json_schemas`).  Supported: msgspec Structs, dataclasses, attrs classes,
TypedDicts and every other type msgspec decodes (``int``, ``list[T]``...),
pydantic models when pydantic is installed, and unions of these that carry a
``type`` field to dispatch on.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Any

from ._builders import (
    from_msgspec,
    from_pydantic,
    from_tagged_union,
    is_pydantic_model,
    uses_pydantic,
)
from ._codec import Components, Schema, TypedCodec, encode_typed, to_builtins

__all__ = [
    "REF_TEMPLATE",
    "Components",
    "Schema",
    "TypedCodec",
    "codec_for",
    "encode_typed",
    "json_schemas",
    "to_builtins",
]

#: Where :func:`json_schemas` points ``$ref``s by default (AsyncAPI's and OpenAPI's place).
REF_TEMPLATE = "#/components/schemas/{name}"

_cache: dict[Any, TypedCodec] = {}


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    """The members of a ``Union``/``|`` (under ``Annotated`` too), or None."""
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _build(tp: Any) -> TypedCodec:
    members = _union_members(tp)
    if uses_pydantic(tp):
        if members is None or all(is_pydantic_model(m) for m in members):
            return from_pydantic(tp)
        return from_tagged_union(tp, members, codec_for)
    try:
        return from_msgspec(tp)
    except TypeError:
        if members is None:
            raise TypeError(
                f"{tp!r} cannot be a message type: neither msgspec nor pydantic can decode "
                "it from JSON; use a msgspec Struct, a dataclass, an attrs class, a "
                "TypedDict, a pydantic model (with pydantic installed), a JSON value type "
                "(int, str, list[...], dict[str, ...]) or a union of classes with a "
                "`type` field"
            ) from None
        return from_tagged_union(tp, members, codec_for)


def codec_for(tp: Any) -> TypedCodec:
    """The :class:`TypedCodec` of ``tp``, built on first use and then shared.

    Raises TypeError naming ``tp`` if it cannot be decoded from JSON (a class
    msgspec does not know, a union without a ``type`` field to dispatch on...).
    """
    if isinstance(tp, str):
        raise TypeError(f"{tp!r} is a string, not a type; pass the type itself")
    try:
        return _cache[tp]
    except KeyError:
        pass
    except TypeError:  # unhashable (an Annotated with unhashable metadata): no cache
        return _build(tp)
    codec = _cache[tp] = _build(tp)
    return codec


def json_schemas(
    types_: Iterable[Any], ref_template: str = REF_TEMPLATE
) -> tuple[list[Schema], Components]:
    """The JSON Schema of each type, and the named schemas their ``$ref``s point to.

    For the AsyncAPI document: ``ref_template`` (with ``{name}``) says where the
    named schemas will live.  Raises TypeError like :func:`codec_for`.
    """
    schemas: list[Schema] = []
    components: Components = {}
    for tp in types_:
        schema, more = codec_for(tp).schema(ref_template)
        schemas.append(schema)
        components.update(more)
    return schemas, components
