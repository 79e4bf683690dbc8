"""The view runner: one cancel scope per view, and its outcome applied in order.

For each connection the runner enforces the protocol's order whatever the
view does:

* before the view: providers are created, and with ``auto_accept`` the
  handshake is accepted;
* the view runs in its own cancel scope, which the connection's
  :class:`~triows._connection._state.Lifecycle` cancels when the client leaves
  while nobody receives, and at shutdown;
* after the view: providers are torn down (even on error), then the
  lifecycle's :class:`~triows._connection._state.Outcome` is applied: the close
  frame (1000 after a normal return, 1001 at shutdown, 1012 when draining, 1011
  after a crash, a ClientError's own code) or, before accept, the refusal (403, 503, 500); one
  WARNING for what a client caused.

:func:`run_view` returns, rather than raises, the view's crash, for the server
to log once (the native server) or to receive (an ASGI server, as the guide
asks: the exception is re-raised for server-side processing).  Cancellation
from outside (the server) cancels the view.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import trio

from ._connection._state import Outcome
from ._connection._websocket import Rejected, WebSocket
from ._serving._logs import ClientWarnings, client_address, logger

__all__ = ["refuse", "run_view"]

Resolver = Callable[[AsyncExitStack], Awaitable[dict[str, Any]]]


async def refuse(
    ws: WebSocket,
    status_code: int,
    payload: dict[str, Any],
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    """Refuse the handshake with an HTTP status, a JSON body and extra ``headers``."""
    body = json.dumps(payload).encode()
    await ws.reject(
        status_code, headers=[("content-type", "application/json"), *headers], body=body
    )


async def run_view(
    ws: WebSocket,
    view: Callable[..., Awaitable[Any]],
    kwargs: dict[str, Any],
    resolve_providers: Resolver | None,
    warnings: ClientWarnings,
    ended: Callable[[WebSocket], None],
) -> BaseException | None:
    """Run the view in its cancel scope, then apply its outcome; return a crash to raise.

    What a client caused is logged through ``warnings`` (rate limited).
    ``ended(ws)`` is called last, whatever happened (cancelled from outside too).
    """
    lifecycle = ws.lifecycle
    auto_accept = ws.options.auto_accept
    error: Exception | None = None
    try:
        with trio.CancelScope() as view_scope:
            lifecycle.view_scope = view_scope
            try:
                if resolve_providers is None:
                    if auto_accept:
                        await ws.accept()
                    await view(ws, **kwargs)
                else:
                    async with AsyncExitStack() as stack:
                        kwargs.update(await resolve_providers(stack))
                        if auto_accept:
                            await ws.accept()
                        await view(ws, **kwargs)
            except Rejected:
                pass
            except Exception as exc:
                error = exc
        lifecycle.view_scope = None
        try:
            outcome = lifecycle.outcome(error, view_scope.cancelled_caught)
        finally:
            # The error's traceback holds this frame: drop the frame's reference to
            # it, or the two form a cycle that keeps the connection alive until the
            # garbage collector runs (a normal close raises through here).
            error = None
        try:
            if outcome.log is not None:
                _log(ws, outcome, warnings)
            if outcome.close_code is not None or outcome.http_status is not None:
                await apply(ws, outcome)
            return outcome.error if outcome.reraise else None
        finally:
            outcome = None  # type: ignore[assignment]  # the same cycle, through the outcome
    finally:
        ended(ws)


async def apply(ws: WebSocket, outcome: Outcome) -> None:
    """Send the outcome's close frame or refusal."""
    if outcome.close_code is not None:
        await ws.close(outcome.close_code, outcome.close_reason)
    elif outcome.http_status is not None:
        if outcome.detail:
            await refuse(ws, outcome.http_status, {"detail": outcome.detail})
        else:
            await ws.reject(outcome.http_status)


def _log(ws: WebSocket, outcome: Outcome, warnings: ClientWarnings) -> None:
    if not warnings.allows(outcome.log or ""):
        return  # that kind floods the log: counted, and nothing formatted
    path = ws.path
    who = client_address(ws.client)
    code = ws.client_close_code
    reason = f" ({ws.client_close_reason})" if ws.client_close_reason else ""
    if outcome.log == "client-left":
        logger.warning(
            "WebSocket %s from %s: the client left with close code %s%s, which the route "
            "does not catch; to catch it, add %s to caught_close_codes in "
            "@app.websocket_route(%r, ...)",
            path,
            who,
            code,
            reason,
            code,
            path,
        )
    elif outcome.log == "limit":
        logger.warning(
            "WebSocket %s from %s: %s: %s",
            path,
            who,
            f"refused with {outcome.http_status}"
            if outcome.http_status
            else f"closed with {outcome.close_code or ws.close_code}",
            outcome.detail,
        )
    elif outcome.log == "protocol":
        logger.warning(
            "WebSocket %s from %s: closed with %s: the client broke the protocol%s",
            path,
            who,
            code,
            reason,
        )
    else:
        logger.warning(
            "WebSocket %s from %s: closing with %s: client error: %s",
            path,
            who,
            outcome.close_code,
            outcome.error,
        )
