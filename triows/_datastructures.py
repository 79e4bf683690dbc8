"""Immutable views of a connection request: URL, headers, query parameters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import parse_qsl, quote

import attrs

from ._types import Scope

__all__ = ["URL", "Headers", "QueryParams"]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


@attrs.frozen
class URL:
    """The full URL of a request, built from its ASGI scope.

    ``str(url)`` is the complete URL, e.g. ``ws://example.com:8000/chat?x=1``.
    """

    scheme: str
    hostname: str
    port: int | None
    path: str
    query: str

    @classmethod
    def from_scope(cls, scope: Scope) -> URL:
        scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
        server = scope.get("server")
        host_header = None
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host_header = value.decode("latin-1")
                break
        hostname: str
        port: int | None
        if host_header:
            hostname, sep, port_text = host_header.rpartition(":")
            if not sep or "]" in port_text or not port_text.isdigit():
                hostname, port = host_header, None
            else:
                port = int(port_text)
        elif server:
            hostname, port = str(server[0]), int(server[1])
        else:
            hostname, port = "localhost", None
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
        path = scope.get("root_path", "") + scope.get("path", "/")
        return cls(
            scheme=scheme,
            hostname=hostname,
            port=port,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
        )

    @property
    def netloc(self) -> str:
        return self.hostname if self.port is None else f"{self.hostname}:{self.port}"

    def __str__(self) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{self.netloc}{quote(self.path)}{query}"


class _MultiMapping(Mapping[str, str]):
    """A read-only mapping that keeps every value of repeated keys.

    ``m[key]`` is the last value (what a form or a proxy chain usually means);
    ``m.getlist(key)`` is every value in order.
    """

    __slots__ = ("_items", "_last")

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = tuple(items)
        self._last = {key: value for key, value in self._items}

    def _key(self, key: str) -> str:
        return key

    def __getitem__(self, key: str) -> str:
        return self._last[self._key(key)]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._key(key) in self._last

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def getlist(self, key: str) -> list[str]:
        """Every value of ``key``, in the order they were sent (empty if absent)."""
        wanted = self._key(key)
        return [value for name, value in self._items if name == wanted]

    def multi_items(self) -> list[tuple[str, str]]:
        """All ``(key, value)`` pairs, repeated keys included."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._items)!r})"


class Headers(_MultiMapping):
    """HTTP headers: immutable, case-insensitive (``ws.headers["User-Agent"]``)."""

    __slots__ = ()

    def __init__(self, raw: Iterable[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(
            (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw
        )

    def _key(self, key: str) -> str:
        return key.lower()


class QueryParams(_MultiMapping):
    """Query string parameters: an immutable mapping (``ws.query_parameters["page"]``)."""

    __slots__ = ()

    def __init__(self, query_string: str | bytes = "") -> None:
        if isinstance(query_string, bytes):
            query_string = query_string.decode("latin-1")
        super().__init__(parse_qsl(query_string, keep_blank_values=True))
