"""ASGI apps under a Transport: how the native server serves a mounted ASGI app.

The App mounts ASGI apps (Starlette, another App) at path prefixes; under the
native server their WebSockets arrive as a Transport.  :func:`serve_asgi_websocket`
gives such an app the ASGI ``receive``/``send`` pair it expects, on top of the
transport, for that connection only (the App's own routes never go through here).
"""

from __future__ import annotations

from typing import Any

from .._connection._frames import Prepared
from .._connection._transport import ClientGone, Transport
from .._types import ASGIApp, Message, Scope

__all__ = ["serve_asgi_websocket"]


class _Bridge:
    __slots__ = ("accepted", "connected", "refusal", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.connected = False
        self.accepted = False
        self.refusal: tuple[int, list[Any]] | None = None

    async def receive(self) -> Message:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        try:
            data = await self.transport.receive()
        except ClientGone as gone:
            return {"type": "websocket.disconnect", "code": gone.code, "reason": gone.reason}
        key = "text" if data.__class__ is str else "bytes"
        return {"type": "websocket.receive", key: data}

    async def send(self, event: Message) -> None:
        kind = event["type"]
        transport = self.transport
        if kind == "websocket.send":
            text = event.get("text")
            await transport.send([Prepared(text if text is not None else event["bytes"])])
        elif kind == "websocket.accept":
            self.accepted = True
            await transport.accept(event.get("subprotocol"), event.get("headers") or ())
        elif kind == "websocket.close":
            if not self.accepted:
                await transport.refuse(403, (), b"")
            else:
                await transport.close(int(event.get("code") or 1000), event.get("reason") or "")
        elif kind == "websocket.http.response.start":
            self.refusal = (int(event["status"]), list(event.get("headers") or ()))
        elif kind == "websocket.http.response.body":
            if self.refusal is None:
                raise RuntimeError(f"{kind} before websocket.http.response.start")
            status, headers = self.refusal
            await transport.refuse(status, headers, bytes(event.get("body", b"")))
        else:
            raise ValueError(f"a WebSocket app cannot send an ASGI {kind!r} event")


async def serve_asgi_websocket(app: ASGIApp, scope: Scope, transport: Transport) -> None:
    """Run the ASGI ``app`` for one WebSocket connection carried by ``transport``."""
    bridge = _Bridge(transport)
    await app(scope, bridge.receive, bridge.send)
