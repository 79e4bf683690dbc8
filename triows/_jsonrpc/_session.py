"""One connection's JSON-RPC session: reading requests, running calls, answering.

The session's reader is the view's own task: it parses each message, answers
what it can at once (parse errors, invalid requests, unknown methods, invalid
params) and starts each valid call as a task in the connection's nursery, at
most ``max_concurrent`` at a time; further calls wait in order.  Each call runs
in its own cancel scope (its timeout is that scope's deadline; a
``$/cancelRequest`` cancels it), and its response goes out when it finishes.
When the client leaves, the reader ends and the nursery is cancelled: every
running call is cancelled and its ``finally`` blocks run.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import msgspec
import trio

from .._connection._websocket import WebSocket
from .._exceptions import WebSocketDisconnect
from .._tracing import call_span
from .._typed import encode_typed
from ._errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    REQUEST_TIMED_OUT,
    STANDARD_ERRORS,
    InvalidParams,
    RPCError,
)
from ._plan import MethodPlan

__all__ = ["CANCEL_METHOD", "RPCConnection", "Session"]

logger = logging.getLogger("triows")

#: The notification that cancels a running call: ``{"params": {"id": ID}}``.
CANCEL_METHOD = "$/cancelRequest"
_ABSENT: Any = object()
#: A call's ``with`` when OpenTelemetry is not set up (no span: see triows._tracing).
_NOT_TRACED = contextlib.nullcontext()
_parse = msgspec.json.Decoder().decode


class RPCConnection:
    """One client's JSON-RPC connection, given to methods that take ``connection``.

    ``websocket`` is the underlying :class:`~triows.WebSocket` (its request
    data: headers, query, session...).  ``nursery`` runs background tasks for
    this connection (forwarding a Hub subscription as notifications, say): they
    are cancelled when the client leaves; one that raises ends the connection
    with 1011, as a crashing view does.
    """

    __slots__ = ("nursery", "websocket")

    def __init__(self, websocket: WebSocket, nursery: trio.Nursery) -> None:
        self.websocket = websocket
        self.nursery = nursery

    async def notify(self, method: str, params: Any = None) -> None:
        """Send the client a notification: ``{"jsonrpc": "2.0", "method": ..., "params": ...}``.

        ``params`` (left out when None) is encoded as typed messages are: a dict,
        a list, a Struct, a dataclass...  Raises WebSocketDisconnect if the client
        has gone, TypeError if ``params`` cannot be written as JSON.  Safe to call
        from any task of the connection, concurrently with responses.
        """
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.websocket.send(encode_typed(message))


class _Batch:
    __slots__ = ("admitted", "responses", "waiting")

    def __init__(self) -> None:
        self.responses: list[str] = []
        self.waiting = 0
        self.admitted = False


class _Call:
    __slots__ = ("batch", "cancelled", "id", "kwargs", "plan", "scope", "started")

    def __init__(
        self, plan: MethodPlan, kwargs: dict[str, Any], id: Any, batch: _Batch | None
    ) -> None:
        self.plan = plan
        self.kwargs = kwargs
        self.id = id  # _ABSENT for a notification
        self.batch = batch
        self.scope = trio.CancelScope()
        self.cancelled = False
        self.started = False


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _result(id: Any, result: Any) -> str:
    return encode_typed({"jsonrpc": "2.0", "result": result, "id": id})


def _error(id: Any, code: int, data: Any = None, message: str | None = None) -> str:
    error: dict[str, Any] = {"code": code, "message": message or STANDARD_ERRORS[code]}
    if data is not None:
        error["data"] = data
    return encode_typed({"jsonrpc": "2.0", "error": error, "id": None if id is _ABSENT else id})


def _invalid(id: Any, problem: str) -> str:
    return _error(id, INVALID_REQUEST, {"problem": problem})


class Session:
    """The calls of one connection (see the module's docstring)."""

    def __init__(
        self,
        connection: RPCConnection,
        plans: Mapping[str, MethodPlan],
        values: Mapping[str, Any],
        max_concurrent: int,
    ) -> None:
        self.ws = connection.websocket
        self.nursery = connection.nursery
        self.plans = plans
        self.values = values
        self.max_concurrent = max_concurrent
        #: Past this many waiting calls the reader stops reading until some start.
        self.max_pending = max(256, 4 * max_concurrent)
        self.running: dict[Any, _Call] = {}
        self.pending: collections.deque[_Call] = collections.deque()
        self.active = 0
        self.room: trio.Event | None = None

    async def read(self) -> None:
        """Read and dispatch messages until the client leaves (WebSocketDisconnect)."""
        ws = self.ws
        while True:
            if len(self.pending) >= self.max_pending:
                self.room = trio.Event()
                await self.room.wait()
            data = await ws.receive()
            try:
                message = _parse(data)
            except (msgspec.DecodeError, RecursionError) as exc:
                await self._send(_error(None, PARSE_ERROR, {"problem": str(exc)}))
                continue
            if message.__class__ is not list:
                reply = self._admit(message, None)
                if reply is not None:
                    await self._send(reply)
            elif not message:
                await self._send(_invalid(None, "empty batch"))
            else:
                batch = _Batch()
                for item in message:
                    reply = self._admit(item, batch)
                    if reply is not None:
                        batch.responses.append(reply)
                batch.admitted = True
                if batch.waiting == 0 and batch.responses:
                    await self._send("[" + ",".join(batch.responses) + "]")

    def _admit(self, item: Any, batch: _Batch | None) -> str | None:
        """Start (or queue) one request; return the reply to send at once, if any."""
        if not isinstance(item, dict):
            return _invalid(None, "a request must be a JSON object")
        id = item.get("id", _ABSENT)
        if id is not _ABSENT and not _valid_id(id):
            return _invalid(None, "id must be a string, a number or null")
        if item.get("jsonrpc") != "2.0":
            return _invalid(id, 'jsonrpc must be exactly "2.0"')
        method = item.get("method")
        if not isinstance(method, str):
            return _invalid(id, "method must be a string")
        params = item.get("params", _ABSENT)
        if params is not _ABSENT and params.__class__ not in (dict, list):
            return _invalid(id, "params must be an object or an array")
        notification = id is _ABSENT
        if method == CANCEL_METHOD:
            self._cancel(params)
            return None if notification else _result(id, None)
        plan = self.plans.get(method)
        if plan is None:
            return None if notification else _error(id, METHOD_NOT_FOUND, {"method": method})
        try:
            kwargs = plan.bind(None if params is _ABSENT else params)
        except InvalidParams as exc:
            data = {"field": exc.field, "problem": exc.problem}
            return None if notification else _error(id, INVALID_PARAMS, data)
        if not notification and id in self.running:
            return _invalid(id, "a call with this id is still running; use a new id")
        for name in plan.injected:
            kwargs[name] = self.values[name]
        call = _Call(plan, kwargs, id, batch)
        if not notification:
            self.running[id] = call
            if batch is not None:
                batch.waiting += 1
        if self.active < self.max_concurrent:
            self._start(call)
        else:
            self.pending.append(call)
        return None

    def _cancel(self, params: Any) -> None:
        target = params.get("id", _ABSENT) if isinstance(params, dict) else _ABSENT
        if target is _ABSENT or not _valid_id(target):
            return
        call = self.running.get(target)
        if call is None or call.cancelled:
            return  # finished already, or never known: nothing to do
        call.cancelled = True
        if call.started:
            call.scope.cancel()
        else:
            self.pending.remove(call)
            del self.running[target]
            self.nursery.start_soon(self._finish, call, _error(target, REQUEST_CANCELLED))

    def _start(self, call: _Call) -> None:
        self.active += 1
        call.started = True
        self.nursery.start_soon(self._run, call)

    def _done(self, call: _Call) -> None:
        if call.id is not _ABSENT:
            self.running.pop(call.id, None)
        self.active -= 1
        while self.pending and self.active < self.max_concurrent:
            self._start(self.pending.popleft())
        if self.room is not None and len(self.pending) < self.max_pending:
            self.room.set()

    async def _run(self, call: _Call) -> None:
        """Run one call in its cancel scope and send its response (not for notifications)."""
        method = call.plan.method
        reply = None
        span = call_span(method.name, None if call.id is _ABSENT else call.id)
        try:
            with call.scope, span or _NOT_TRACED:
                if method.timeout is not None:
                    call.scope.deadline = trio.current_time() + method.timeout
                result = await method.function(**call.kwargs)
                if call.id is not _ABSENT:
                    reply = _result(call.id, result)
            if call.scope.cancelled_caught:
                reply = _error(call.id, REQUEST_CANCELLED if call.cancelled else REQUEST_TIMED_OUT)
        except RPCError as exc:
            reply = self._application_error(call, exc)
        except Exception as exc:
            self._log_failure(call, exc)
            reply = _error(call.id, INTERNAL_ERROR)
        finally:
            self._done(call)
        if reply is not None and call.id is not _ABSENT:
            await self._finish(call, reply)

    def _application_error(self, call: _Call, exc: RPCError) -> str:
        try:
            return _error(call.id, exc.code, exc.data, exc.message)
        except TypeError as encoding:
            self._log_failure(call, encoding)
            return _error(call.id, INTERNAL_ERROR)

    def _log_failure(self, call: _Call, exc: Exception) -> None:
        name = call.plan.method.name
        which = "notification" if call.id is _ABSENT else f"call (id {call.id!r})"
        logger.error(
            "JSON-RPC %s: method %s failed in a %s: %s; the client got -32603 Internal error",
            self.ws.path,
            name,
            which,
            type(exc).__name__,
            exc_info=exc,
        )

    async def _finish(self, call: _Call, reply: str) -> None:
        batch = call.batch
        if batch is None:
            await self._send(reply)
            return
        batch.responses.append(reply)
        batch.waiting -= 1
        if batch.waiting == 0 and batch.admitted:
            await self._send("[" + ",".join(batch.responses) + "]")

    async def _send(self, text: str) -> None:
        # The client left: the reader learns it too, and ends the session.
        with contextlib.suppress(WebSocketDisconnect):
            await self.ws.send(text)
