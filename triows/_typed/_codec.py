"""What a user type becomes: a decoder, a converter, an encoder and a JSON Schema.

Every kind of type (msgspec's, pydantic's, a union dispatched on its ``type``
field) builds one :class:`TypedCodec` at decoration time; the per-message path
is then one call into msgspec or pydantic and no Python-level walk of the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import msgspec

from .._exceptions import MessageDecodeError, MessageValidationError

__all__ = [
    "Components",
    "Schema",
    "TypedCodec",
    "decode_error",
    "encode_typed",
    "msgspec_validation_error",
    "to_builtins",
]

#: One JSON Schema, as a dict ready for ``json.dumps``.
Schema = dict[str, Any]
#: Named schemas that others refer to with ``$ref`` (``#/components/schemas/{name}``).
Components = dict[str, Schema]


@attrs.frozen
class TypedCodec:
    """One user type, resolved once: how to read it, write it and describe it.

    ``decode(data)`` turns a message (``str`` or ``bytes`` of JSON) into a validated
    instance, raising :class:`~triows.MessageDecodeError` for invalid JSON and
    :class:`~triows.MessageValidationError` for JSON of the wrong shape.
    ``convert(value)`` does the same from an already parsed JSON value (a dict, a
    list...).  ``schema(ref_template)`` returns the type's JSON Schema and the
    named schemas its ``$ref``s point to.
    """

    type: Any
    decode: Callable[[str | bytes], Any]
    convert: Callable[[Any], Any]
    schema: Callable[[str], tuple[Schema, Components]]


def msgspec_validation_error(exc: msgspec.ValidationError) -> MessageValidationError:
    """msgspec's message (``"Expected `int`, got `str` - at `$.age`"``) as our error."""
    problem, found, path = str(exc).rpartition(" - at `")
    if not found:
        return MessageValidationError(str(exc))
    return MessageValidationError(problem, path.rstrip("`"))


def decode_error(exc: Exception) -> MessageDecodeError:
    """msgspec's (or Python's) complaint about malformed JSON, as MessageDecodeError."""
    if isinstance(exc, RecursionError):
        return MessageDecodeError("the message's JSON is nested too deeply to decode")
    return MessageDecodeError(f"the message is not valid JSON: {exc}")


def _enc_hook(value: Any) -> Any:
    # pydantic models (the only types msgspec cannot encode that triows accepts).
    dump = getattr(value, "model_dump", None)
    if dump is not None and callable(dump):
        return dump(mode="json", by_alias=True)
    raise TypeError(
        f"cannot send a {type(value).__name__} as JSON: send a msgspec Struct, a "
        "dataclass, an attrs class, a pydantic model or a plain JSON value"
    )


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_encode_bytes = _encoder.encode


def encode_typed(value: Any) -> str:
    """A typed route's encoder: any supported instance or JSON value, as JSON text.

    One function for every typed route, so a :class:`~triows.Broadcast` sent to
    routes of different types is still encoded once.  Raises TypeError for a
    value that cannot be written as JSON.
    """
    return _encode_bytes(value).decode()


def to_builtins(value: Any) -> Any:
    """``value`` (a Struct, dataclass, attrs, pydantic instance...) as plain JSON values."""
    return msgspec.to_builtins(value, enc_hook=_enc_hook)
