"""What a WebSocket knows of its handshake request: URL, headers, query, client, session."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .._datastructures import URL, Headers, QueryParams
from .._types import Scope
from ._transport import Transport

__all__ = ["RequestView"]


class RequestView:
    """The handshake request of a connection, read lazily from its transport."""

    __slots__ = ("_headers", "_query", "_transport")

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._headers: Headers | None = None
        self._query: QueryParams | None = None

    @property
    def scope(self) -> Scope:
        """The connection's ASGI scope (built on first use under the native server)."""
        return self._transport.request.scope

    @property
    def url(self) -> URL:
        """The full URL of the connection request (``str(ws.url)``)."""
        return URL.from_scope(self.scope)

    @property
    def headers(self) -> Headers:
        """The handshake's HTTP headers: immutable and case-insensitive."""
        if self._headers is None:
            self._headers = Headers(self._transport.request.headers)
        return self._headers

    @property
    def query_parameters(self) -> QueryParams:
        """The query string's parameters: an immutable mapping."""
        if self._query is None:
            self._query = QueryParams(self._transport.request.query_string)
        return self._query

    @property
    def client(self) -> tuple[str, int] | None:
        """The client's ``(host, port)``, when the server knows it."""
        return self._transport.request.client

    @property
    def path(self) -> str:
        """The request's path, percent-decoded (``ws.url.path`` includes the root path)."""
        return self._transport.request.path

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        return list(self._transport.request.subprotocols)

    @property
    def session(self) -> Mapping[str, Any]:
        """The session from the signed session cookie: a read-only mapping.

        Raises RuntimeError unless sessions are enabled with
        ``App(session_secret=...)``.  A WebSocket cannot set cookies, so the
        session is read-only here; HTTP routes write it (``request.session``).
        """
        session = self.scope.get("session")
        if session is None:
            raise RuntimeError(
                "ws.session is not available: sessions are not enabled on this App; "
                "pass App(session_secret=...) to enable signed-cookie sessions"
            )
        return MappingProxyType(session)
