"""The view runner: one nursery per connection, cancel scopes in protocol order.

For each connection the runner runs the view inside its own cancel scope (next
to the receive pump, in a nursery, when the transport needs one: see
``_websocket``).  It enforces the protocol's order whatever the view does:

* before the view: providers are created, and with ``auto_accept`` the handshake
  is accepted;
* the view runs; it is cancelled if the client leaves while nobody receives,
  and at shutdown;
* after the view: providers are torn down (even on error), the connection is
  closed (1000 after a normal return, 1001 at shutdown, 1011 after an error,
  1003/1007 after an uncaught bad message) or, if never accepted, refused (HTTP
  403, or 500 after an error);
* the pump, if any, is cancelled, so no task outlives the connection.

:func:`run_view` (direct mode) and :func:`run_pumped` (pump mode) return, rather
than raise, what reaches the server: the view's unhandled exception (after
closing with 1011, or refusing with HTTP 500 before accept), or
WebSocketDisconnect for close codes the route does not catch.  The App raises
it, so the traceback does not keep the runner's frames alive.  Cancellation from
outside (the server) cancels the view and the pump.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import trio

from . import status
from ._exceptions import ClientError, WebSocketDisconnect, disconnects_in, leaves_of
from ._state import CONNECTED, CONNECTING
from ._websocket import WebSocket, _Rejected

__all__ = ["run_pumped", "run_view"]

logger = logging.getLogger("triows")

Resolver = Callable[[AsyncExitStack], Awaitable[dict[str, Any]]]


async def refuse(ws: WebSocket, status_code: int, payload: dict[str, Any]) -> None:
    """Refuse the handshake with an HTTP status and a JSON body (403 without the extension)."""
    body = json.dumps(payload).encode()
    await ws.reject(status_code, headers=[("content-type", "application/json")], body=body)


async def run_pumped(
    ws: WebSocket,
    view: Callable[..., Awaitable[Any]],
    kwargs: dict[str, Any],
    resolve_providers: Resolver | None,
) -> Exception | None:
    """Pump mode: :func:`run_view` next to the receive pump, in a nursery.

    Returns what to raise, like :func:`run_view`; the pump is cancelled when the
    view has finished, so no task outlives the connection.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws._pump)
        error = await run_view(ws, view, kwargs, resolve_providers)
        nursery.cancel_scope.cancel()
    return error


async def run_view(
    ws: WebSocket,
    view: Callable[..., Awaitable[Any]],
    kwargs: dict[str, Any],
    resolve_providers: Resolver | None,
) -> Exception | None:
    """Run the view in its cancel scope, then close the connection; return what to raise.

    Direct mode (the transport reports departures itself): no pump, no nursery.
    """
    options = ws._options
    error: Exception | None = None
    with trio.CancelScope() as view_scope:
        ws._view_scope = view_scope
        try:
            if resolve_providers is None:
                if options.auto_accept:
                    await ws.accept()
                await view(ws, **kwargs)
            else:
                async with AsyncExitStack() as stack:
                    kwargs.update(await resolve_providers(stack))
                    if options.auto_accept:
                        await ws.accept()
                    await view(ws, **kwargs)
        except _Rejected:
            pass
        except Exception as exc:
            error = exc
    ws._view_scope = None
    try:
        if (
            type(error) is WebSocketDisconnect
            and not view_scope.cancelled_caught
            and ws._catching > 0
            and error.code in options.caught_close_codes
        ):
            # The usual end, as _finish_with_error would see it: the client left
            # while the view was receiving, with a code the route catches.
            return None
        return await _after_view(ws, view_scope, error)
    finally:
        # The error's traceback holds this frame: drop the frame's reference to the
        # error, or the two form a cycle that keeps the whole connection alive
        # until the garbage collector runs (a normal close raises
        # WebSocketDisconnect through here).
        error = None


async def _after_view(
    ws: WebSocket, view_scope: trio.CancelScope, error: Exception | None
) -> Exception | None:
    """Close the connection after the view ended; return what to raise."""
    if view_scope.cancelled_caught and ws._ended_by == "disconnect":
        if ws._disconnect_caught:
            return None
        return _uncaught_departure(ws, ws._machine.disconnect_error())
    if view_scope.cancelled_caught and ws._ended_by == "shutdown":
        if ws.state is CONNECTED:
            await ws.close(status.WS_1001_GOING_AWAY, "server shutting down")
        elif ws.state is CONNECTING:
            await refuse(ws, 503, {"detail": "server shutting down"})
        return error
    if error is None:
        await ws.ensure_closed()
        return None
    return await _finish_with_error(ws, error)


#: Codes the server itself closes with when the client broke the protocol (bad
#: frame, invalid UTF-8, message too big): the client's fault, not a crash.
PROTOCOL_FAILURES = frozenset({1002, 1007, 1009})


def _uncaught_departure(ws: WebSocket, error: Exception) -> Exception | None:
    """What to re-raise for a departure the route does not catch.

    A connection failed for a protocol error is logged as a client error and not
    re-raised; any other uncaught code reaches the server, as documented.
    """
    if ws._machine.disconnect_code in PROTOCOL_FAILURES:
        logger.warning("%r ended: the client broke the protocol (%s)", ws, error)
        return None
    return error


async def _finish_with_error(ws: WebSocket, error: Exception) -> Exception | None:
    """Close the connection after the view raised; return what to re-raise."""
    disconnects = disconnects_in(error)
    if disconnects is not None:
        caught = ws._options.caught_close_codes
        silenced = ws._catching > 0 and all(d.code in caught for d in disconnects)
        return None if silenced else _uncaught_departure(ws, error)
    client_errors = leaves_of(error, ClientError)
    if client_errors is not None:
        # The client's fault, not the server's: close with the precise code and log
        # it as a client error.
        error = client_errors[0]
        logger.warning("closing %r: client error: %s", ws, error)
        if ws.state is CONNECTED:
            reason = str(error).encode()[:120].decode(errors="ignore")
            await ws.close(error.close_code, reason)
        else:
            await ws.ensure_closed()
        return None
    if ws.state is CONNECTED:
        await ws.close(status.WS_1011_INTERNAL_ERROR)
    elif ws.state is CONNECTING:
        await refuse(ws, 500, {"detail": "internal server error"})
    return error
