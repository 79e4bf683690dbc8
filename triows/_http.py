"""Minimal HTTP: enough to serve a page and a little JSON next to WebSocket routes.

For a full HTTP framework, mount one with ``App.mount()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._datastructures import URL, Headers, QueryParams
from ._types import Receive, Scope, Send

__all__ = ["Request", "Response", "read_body", "send_response", "to_response"]

#: Request bodies larger than this are refused with 413.
MAX_BODY_SIZE = 1024 * 1024


@attrs.frozen
class Request:
    """An HTTP request, with its body already read (at most 1 MiB)."""

    scope: Scope = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def url(self) -> URL:
        return URL.from_scope(self.scope)

    @property
    def headers(self) -> Headers:
        return Headers(self.scope.get("headers", ()))

    @property
    def query_parameters(self) -> QueryParams:
        return QueryParams(self.scope.get("query_string", b""))

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not JSON, or nested
        past Python's recursion limit)."""
        try:
            return json.loads(self.body)
        except RecursionError:
            raise ValueError("the request body's JSON is nested too deeply to decode") from None

    @property
    def session(self) -> dict[str, Any]:
        """The session: a dict the view may change; changes are saved in the cookie.

        Raises RuntimeError unless sessions are enabled with ``App(session_secret=...)``.
        """
        session = self.scope.get("session")
        if session is None:
            raise RuntimeError(
                "request.session is not available: sessions are not enabled on this App; "
                "pass App(session_secret=...) to enable signed-cookie sessions"
            )
        return session  # type: ignore[no-any-return]


@attrs.frozen
class Response:
    """An HTTP response.  ``body`` may be ``str`` (encoded as UTF-8) or ``bytes``."""

    body: bytes | str = b""
    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    media_type: str = "text/plain; charset=utf-8"

    @classmethod
    def html(cls, body: str, status: int = 200) -> Response:
        return cls(body, status, media_type="text/html; charset=utf-8")

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(json.dumps(data), status, media_type="application/json")

    def raw_headers(self, content: bytes) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", self.media_type.encode("latin-1")),
            (b"content-length", str(len(content)).encode()),
        ]
        headers.extend(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.headers.items()
        )
        return headers


def to_response(value: Any) -> Response:
    """Turn what an HTTP view returned into a Response."""
    if isinstance(value, Response):
        return value
    if isinstance(value, str):
        return Response.html(value)
    if isinstance(value, bytes):
        return Response(value, media_type="application/octet-stream")
    if isinstance(value, dict | list):
        return Response.json(value)
    raise TypeError(
        f"an HTTP view returned {type(value).__name__}; return str (HTML), bytes, "
        "a dict or list (JSON), or a triows.Response"
    )


class BodyTooLarge(Exception):
    pass


class BodyIncomplete(Exception):
    """The client left before its request body was complete: there is nobody to answer."""


async def read_body(receive: Receive) -> bytes:
    """Read the whole request body.

    Raises BodyTooLarge past MAX_BODY_SIZE, and BodyIncomplete if the client
    leaves before the body's end (a view never runs on a truncated body).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyIncomplete
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_SIZE:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_response(
    send: Send,
    response: Response,
    *,
    head: bool = False,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    content = response.body.encode() if isinstance(response.body, str) else response.body
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [*response.raw_headers(content), *extra_headers],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else content})


def allow_header(methods: Sequence[str]) -> dict[str, str]:
    return {"allow": ", ".join(methods)}
