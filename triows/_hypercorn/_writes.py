"""Writing to a hypercorn WebSocket: batches, and direct non-blocking writes."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import trio
from hypercorn.events import RawData
from hypercorn.protocol import ws_stream
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.tcp_server import TCPServer
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, TextMessage

from .._broadcast import BATCH_EVENT, Prepared
from ._config import ours

__all__ = ["SEND_NOW_OFFER", "batch_bytes"]


def batch_bytes(stream: Any, messages: list[Prepared]) -> bytes:
    """The frames of ``messages`` for ``stream`` (the app checked: accepted, not closed).

    A plain function, not a coroutine: nothing extra stays alive per subscriber
    while its write is suspended (see serve()'s gc_freeze for why that counts).
    """
    if stream.state != ws_stream.ASGIWebsocketState.CONNECTED:
        raise RuntimeError(f"{BATCH_EVENT} in hypercorn state {stream.state.name}")
    connection = stream.connection
    if connection._proto.extensions:
        # permessage-deflate keeps per-connection state: wsproto frames each one.
        return b"".join(
            [
                connection.send(
                    TextMessage(data=m.event["text"])
                    if m.event.get("text") is not None
                    else BytesMessage(data=bytes(m.event["bytes"]))
                )
                for m in messages
            ]
        )
    if len(messages) == 1:
        return messages[0].frame()
    return b"".join([m.frame() for m in messages])


def _send_now(send: Any, messages: list[Prepared]) -> bool:
    """The ``send_now`` of the batch extension: write ``messages`` without yielding.

    False (nothing done) unless ``send`` is a triows-served hypercorn WebSocket
    over plain HTTP/1.1 whose connection is open, is not being written to, and
    has no tail pending.  True once the frames are the connection's: written,
    or their unwritten tail left in ``_triows_pending`` for the next write,
    with a flushing task spawned so that it goes out even if nothing else does.
    """
    stream = getattr(send, "__self__", None)
    if (
        stream.__class__ is not ws_stream.WSStream
        or stream.closed
        or not ours(stream)
        or stream.state != ws_stream.ASGIWebsocketState.CONNECTED
        or stream.connection.state is not ConnectionState.OPEN
    ):
        return False
    protocol = getattr(stream.send, "__self__", None)
    if protocol.__class__ is not H11Protocol:
        return False  # HTTP/2 multiplexes streams over one socket
    server = getattr(protocol.send, "__self__", None)
    if (
        server.__class__ is not TCPServer
        or server.send_lock.locked()
        or "_triows_pending" in server.__dict__
    ):
        return False
    transport: Any = server.stream
    if transport.__class__ is not trio.SocketStream:
        return False  # TLS: only the SSL object may write
    data = batch_bytes(stream, messages)
    try:
        sent = os.write(transport.socket.fileno(), data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Gone: the normal path (the subscriber's next send) reports it.
        return False
    if sent < len(data):
        server._triows_pending = data[sent:]  # type: ignore[attr-defined]
        # Its task group is closing or gone, and so is the connection.
        with contextlib.suppress(AttributeError, RuntimeError):
            stream.task_group.spawn(server.protocol_send, RawData(data=b""))
    return True


#: The batch extension as hypercorn offers it (shared by every connection).
SEND_NOW_OFFER: dict[str, object] = {"send_now": _send_now}
