"""The three ways a type becomes a :class:`TypedCodec`: msgspec, pydantic, tagged union.

msgspec handles every type it supports (Structs, dataclasses, attrs classes,
TypedDicts, tagged Struct unions, builtins) at C speed; pydantic models go
through pydantic's own ``TypeAdapter``; a union msgspec cannot decode (several
dataclasses, a mix with pydantic models) is dispatched here on its members'
``type`` field, each member then decoded by its own codec.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from .._exceptions import MessageValidationError
from ._codec import (
    Components,
    Schema,
    TypedCodec,
    decode_error,
    msgspec_validation_error,
)

__all__ = [
    "from_msgspec",
    "from_pydantic",
    "from_tagged_union",
    "is_pydantic_model",
    "uses_pydantic",
]


def is_pydantic_model(tp: Any) -> bool:
    """Whether ``tp`` is a pydantic model class (False when pydantic was never imported)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def uses_pydantic(tp: Any) -> bool:
    """Whether ``tp`` is, or contains (``list[Model]``, ``Model | None``...), a pydantic model."""
    if is_pydantic_model(tp):
        return True
    return any(uses_pydantic(arg) for arg in typing.get_args(tp))


def from_msgspec(tp: Any) -> TypedCodec:
    """A codec on msgspec's C decoder; TypeError if msgspec cannot handle ``tp``."""
    # Generating the schema refuses the custom classes the decoder would only
    # refuse per message (msgspec treats unknown classes as needing a dec_hook).
    msgspec.json.schema_components([tp])
    decode_raw = msgspec.json.Decoder(tp).decode

    def decode(data: str | bytes) -> Any:
        try:
            return decode_raw(data)
        except msgspec.ValidationError as exc:
            raise msgspec_validation_error(exc) from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise decode_error(exc) from None

    def convert(value: Any) -> Any:
        try:
            return msgspec.convert(value, tp)
        except msgspec.ValidationError as exc:
            raise msgspec_validation_error(exc) from None

    def schema(ref_template: str) -> tuple[Schema, Components]:
        (one,), components = msgspec.json.schema_components([tp], ref_template=ref_template)
        return one, components

    return TypedCodec(tp, decode, convert, schema)


def _pydantic_error(exc: Any) -> MessageValidationError:
    """pydantic's first error, its ``loc`` written as a JSON path (``$.user.age``)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return MessageValidationError(f"{first['msg']}{more}", path)


def from_pydantic(tp: Any) -> TypedCodec:
    """A codec on pydantic's ``TypeAdapter`` (strict JSON parsing by pydantic itself)."""
    import pydantic

    try:
        adapter = pydantic.TypeAdapter(tp)
    except pydantic.PydanticSchemaGenerationError as exc:
        raise TypeError(f"{tp!r} is not supported by pydantic: {exc}") from None
    validate_json = adapter.validate_json
    validate_python = adapter.validate_python

    def decode(data: str | bytes) -> Any:
        try:
            return validate_json(data)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False)
            if errors and errors[0]["type"] == "json_invalid":
                raise decode_error(ValueError(errors[0]["msg"])) from None
            raise _pydantic_error(exc) from None

    def convert(value: Any) -> Any:
        try:
            return validate_python(value)
        except pydantic.ValidationError as exc:
            raise _pydantic_error(exc) from None

    def schema(ref_template: str) -> tuple[Schema, Components]:
        one = adapter.json_schema(ref_template=ref_template.replace("{name}", "{model}"))
        components: Components = one.pop("$defs", {})
        if is_pydantic_model(tp):
            # A model is a named schema, as msgspec's Structs are: a $ref to it.
            components[tp.__name__] = one
            return {"$ref": ref_template.format(name=tp.__name__)}, components
        return one, components

    return TypedCodec(tp, decode, convert, schema)


def _tags_of(member: Any, field: str) -> tuple[Any, ...]:
    """The values of ``member``'s tag ``field`` (a Struct's tag, or a ``Literal`` field)."""
    config = getattr(member, "__struct_config__", None)
    if config is not None and config.tag_field == field and config.tag is not None:
        return (config.tag,)
    try:
        hints = typing.get_type_hints(member)
    except Exception:
        hints = {}
    hint = hints.get(field)
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    raise TypeError(
        f"cannot dispatch a union on {field!r}: its member {member!r} has no "
        f"`{field}: Literal[...]` field; give every member one (a msgspec Struct may "
        f"use tag_field={field!r}, tag=...)"
    )


def from_tagged_union(
    tp: Any, members: tuple[Any, ...], build: Callable[[Any], TypedCodec], field: str = "type"
) -> TypedCodec:
    """A union decoded by its ``field``: the JSON object's value picks the member."""
    by_tag: dict[Any, TypedCodec] = {}
    for member in members:
        codec = build(member)
        for tag in _tags_of(member, field):
            if tag in by_tag:
                raise TypeError(f"{tp!r}: two members have {field}={tag!r}")
            by_tag[tag] = codec
    expected = ", ".join(repr(tag) for tag in by_tag)
    parse = msgspec.json.Decoder().decode

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            raise MessageValidationError(f"Expected `object`, got `{type(value).__name__}`")
        try:
            codec = by_tag[value[field]]
        except KeyError:
            if field not in value:
                raise MessageValidationError(f"Object missing required field `{field}`") from None
            raise MessageValidationError(
                f"Invalid value {value[field]!r}: expected one of {expected}", f"$.{field}"
            ) from None
        except TypeError:  # an unhashable tag
            raise MessageValidationError(f"Expected one of {expected}", f"$.{field}") from None
        return codec.convert(value)

    def decode(data: str | bytes) -> Any:
        try:
            value = parse(data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise decode_error(exc) from None
        return convert(value)

    def schema(ref_template: str) -> tuple[Schema, Components]:
        components: Components = {}
        choices = []
        for codec in dict.fromkeys(by_tag.values()):
            one, more = codec.schema(ref_template)
            components.update(more)
            choices.append(one)
        return {"anyOf": choices}, components

    return TypedCodec(tp, decode, convert, schema)
