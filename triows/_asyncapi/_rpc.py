"""A JSON-RPC route as an AsyncAPI channel: each method a request and its replies.

Every method is an operation the App receives (its request message) with a
``reply``: the result message or the error message.  A request's ``params`` are
described by name (an object) or by position (an array, in the method's order);
without ``id`` a request is a notification and gets no reply.  The channel also
has the ``$/cancelRequest`` notification, batches (an array of requests, answered
by an array of replies: the request and reply schemas are shared through
``components.schemas``, named by their titles) and the notifications the server
may send at any time (their method and params are the application's).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Container
from typing import Any

from .._endpoints import WebSocketRoute
from .._jsonrpc import CANCEL_METHOD, STANDARD_ERRORS, JSONRPCRoute, RPCMethod
from ._model import Channel, Operation, Reply, name_of_address
from ._parameters import address_parameters
from ._schemas import LOCAL_REF_TEMPLATE, Components

__all__ = ["jsonrpc_channel"]

_VERSION = {"const": "2.0"}
_ID = {"type": ["string", "number"], "description": "chosen by the client; echoed in the reply"}
_REPLY_ID = {"type": ["string", "number", "null"], "description": "the request's id"}
_INVALID = re.compile(r"[^A-Za-z0-9_.\-]+")
_DESCRIPTION = (
    "JSON-RPC 2.0 over one WebSocket: each request is a JSON text message; a request "
    "without `id` is a notification and gets no reply. A batch (a JSON array of requests) "
    "is answered by an array of the replies. Calls run concurrently; replies come as "
    "each call finishes, matched by `id`. The `$/cancelRequest` notification cancels a "
    "running call (error -32800)."
)
_ERROR_SCHEMA = {
    "title": "ErrorReply",
    "type": "object",
    "properties": {
        "jsonrpc": _VERSION,
        "id": _REPLY_ID,
        "error": {
            "title": "ErrorObject",
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "data": {"description": "details (for -32602: the field and the problem)"},
            },
            "required": ["code", "message"],
        },
    },
    "required": ["jsonrpc", "id", "error"],
}


def jsonrpc_channel(
    route: WebSocketRoute, served: JSONRPCRoute, providers: Container[str], components: Components
) -> Channel:
    """The channel of a JSON-RPC route: one request/reply operation per method."""
    messages: dict[str, dict[str, Any]] = {"error": _error_message()}
    operations: list[Operation] = []
    injected = _Injected(route.pattern.names, providers)
    for method in served.rpc.methods.values():
        key = _INVALID.sub("_", method.name)
        messages[f"{key}.request"] = _request_message(method, key, injected, components)
        messages[f"{key}.result"] = _result_message(method, key, components)
        operations.append(
            Operation(
                name=key,
                action="receive",
                messages=(f"{key}.request",),
                summary=f"Call {method.name}",
                description=_method_description(method),
                reply=Reply((f"{key}.result", "error")),
            )
        )
    messages["cancelRequest"] = _cancel_message()
    messages["batch"] = _batch(messages, "Batch", ".request", "cancelRequest", components)
    messages["batchReply"] = _batch(messages, "BatchReply", ".result", "error", components)
    operations.append(
        Operation(
            name="batch",
            action="receive",
            messages=("batch",),
            summary="Several requests in one message",
            description="Answered by an array of the requests' replies, in any order (none "
            "for notifications: a batch of notifications only gets no reply); an empty "
            "array gets one error.",
            reply=Reply(("batchReply", "error")),
        )
    )
    operations.append(
        Operation(
            name="cancelRequest",
            action="receive",
            messages=("cancelRequest",),
            summary="Cancel a running call",
        )
    )
    messages["notification"] = _notification_message()
    operations.append(
        Operation(
            name="notifications",
            action="send",
            messages=("notification",),
            summary="Notifications the server sends at any time",
        )
    )
    return Channel(
        name=name_of_address(route.pattern.text, "jsonrpc"),
        address=route.pattern.text,
        messages=messages,
        operations=tuple(operations),
        parameters=address_parameters(route.pattern, route.signature),
        description=_DESCRIPTION,
    )


def _batch(
    messages: dict[str, dict[str, Any]],
    title: str,
    suffix: str,
    other: str,
    components: Components,
) -> dict[str, Any]:
    """A batch message: an array of the messages whose key ends with ``suffix``, or
    ``other``, their payloads shared through components."""
    items = []
    for key, message in messages.items():
        if key.endswith(suffix) or key == other:
            items.append(_shared(message, components))
    return {
        "name": title[0].lower() + title[1:],
        "title": title,
        "contentType": "application/json",
        "payload": {"title": title, "type": "array", "minItems": 1, "items": {"anyOf": items}},
    }


def _shared(message: dict[str, Any], components: Components) -> dict[str, Any]:
    """Move a message's payload into components (named by its title); the ``$ref``,
    which the message now holds too."""
    payload = message["payload"]
    if "$ref" not in payload:
        ref = components.add({"$ref": f"#/$defs/{payload['title']}"}, {payload["title"]: payload})
        message["payload"] = ref
    return dict(message["payload"])


class _Injected(Container[str]):
    """The names a route fills in: its ``{name}`` values and the App's providers."""

    def __init__(self, route_names: Container[str], providers: Container[str]) -> None:
        self.route_names = route_names
        self.providers = providers

    def __contains__(self, name: object) -> bool:
        return name in self.route_names or name in self.providers


def _camel(name: str) -> str:
    """``geo.move_to`` -> ``GeoMoveTo``: a method's name as a type's name."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


def _method_description(method: RPCMethod) -> str:
    doc = inspect.getdoc(method.function)
    errors = ", ".join(f"{code} {message!r}" for code, message in method.errors.items())
    timeout = "" if method.timeout is None else f" Time limit: {method.timeout:g} s."
    text = f"Errors triows may answer with: {errors}; and any the method raises as RPCError."
    return "\n\n".join(part for part in (doc, text + timeout) if part)


def _request_message(
    method: RPCMethod, key: str, injected: Container[str], components: Components
) -> dict[str, Any]:
    raw, named = method.params_schema(injected, LOCAL_REF_TEMPLATE)
    # triows answers -32602 for a name the method does not take.
    by_name = {**components.add(raw, named), "additionalProperties": False}
    properties: dict[str, Any] = by_name["properties"]
    required = by_name.get("required", [])
    by_position: dict[str, Any] = {"type": "array", "maxItems": len(properties)}
    if properties:
        by_position["items"] = list(properties.values())
        by_position["additionalItems"] = False
        by_position["description"] = "by position: " + ", ".join(properties)
    if required:
        # Positional params may leave out trailing optional parameters only.
        last_required = max(list(properties).index(name) for name in required)
        by_position["minItems"] = last_required + 1
    payload: dict[str, Any] = {
        "title": _camel(method.name) + "Request",
        "type": "object",
        "properties": {
            "jsonrpc": _VERSION,
            "id": _ID,
            "method": {"const": method.name},
            "params": {"oneOf": [by_name, by_position]},
        },
        "required": ["jsonrpc", "method", "params"] if required else ["jsonrpc", "method"],
    }
    return {
        "name": f"{key}.request",
        "title": f"{method.name} request",
        "contentType": "application/json",
        "payload": payload,
    }


def _result_message(method: RPCMethod, key: str, components: Components) -> dict[str, Any]:
    raw, named = method.result_schema(LOCAL_REF_TEMPLATE)
    payload = {
        "title": _camel(method.name) + "Result",
        "type": "object",
        "properties": {"jsonrpc": _VERSION, "id": _REPLY_ID, "result": components.add(raw, named)},
        "required": ["jsonrpc", "id", "result"],
    }
    return {
        "name": f"{key}.result",
        "title": f"{method.name} result",
        "contentType": "application/json",
        "payload": payload,
    }


def _error_message() -> dict[str, Any]:
    codes = "; ".join(f"{code}: {message}" for code, message in STANDARD_ERRORS.items())
    return {
        "name": "error",
        "title": "Error reply",
        "summary": "A call failed, or a message was not a valid request",
        "description": f"triows' codes: {codes}. Methods may raise others (RPCError).",
        "contentType": "application/json",
        "payload": _ERROR_SCHEMA,
    }


def _cancel_message() -> dict[str, Any]:
    return {
        "name": CANCEL_METHOD,
        "title": "Cancel a call",
        "summary": "The call with this id is cancelled and answered with error -32800",
        "contentType": "application/json",
        "payload": {
            "title": "CancelRequest",
            "type": "object",
            "properties": {
                "jsonrpc": _VERSION,
                "method": {"const": CANCEL_METHOD},
                "params": {
                    "type": "object",
                    "properties": {"id": _ID},
                    "required": ["id"],
                },
            },
            "required": ["jsonrpc", "method", "params"],
        },
    }


def _notification_message() -> dict[str, Any]:
    return {
        "name": "notification",
        "title": "Server notification",
        "summary": "Sent by the application at any time; never answered",
        "contentType": "application/json",
        "payload": {
            "title": "Notification",
            "type": "object",
            "properties": {"jsonrpc": _VERSION, "method": {"type": "string"}, "params": {}},
            "required": ["jsonrpc", "method"],
        },
    }
