"""``app.jsonrpc_route``: a JSONRPC served as a WebSocket view.

The view is an ordinary WebSocket view (route parameters, the Origin check,
the runner's close codes and shutdown all apply): it resolves the providers
its methods take, opens the connection's nursery and runs the session's
reader in its own task.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AsyncExitStack
from typing import Any

import attrs
import trio

from .._connection._websocket import WebSocket
from .._exceptions import ClientError, WebSocketDisconnect
from .._providers import ProviderRegistry
from ._methods import CONNECTION, JSONRPC
from ._plan import MethodPlan, make_hook_plans, make_plans
from ._session import RPCConnection, Session

__all__ = ["JSONRPCRoute", "jsonrpc_route_of", "jsonrpc_view"]

#: Options websocket_route takes that a JSON-RPC route sets itself.
_FIXED_OPTIONS = ("value_type", "receive_type", "send_type", "auto_accept")


@attrs.frozen
class JSONRPCRoute:
    """What a JSON-RPC route serves: its JSONRPC and its concurrency limit."""

    rpc: JSONRPC
    max_concurrent: int


_routes: weakref.WeakKeyDictionary[Callable[..., Any], JSONRPCRoute] = weakref.WeakKeyDictionary()


def jsonrpc_route_of(view: Callable[..., Any]) -> JSONRPCRoute | None:
    """The JSONRPC a WebSocket route's view serves, or None for an ordinary view."""
    return _routes.get(view)


@attrs.define
class _Plans:
    """A route's plans, remade when a method or a provider is added."""

    rpc: JSONRPC
    registry: ProviderRegistry
    route_names: Collection[str]
    key: tuple[int, int, int] = (-1, -1, -1)
    plans: Mapping[str, MethodPlan] = attrs.field(factory=dict)
    hooks: tuple[MethodPlan, ...] = ()
    providers: tuple[str, ...] = ()

    def current(self) -> Mapping[str, MethodPlan]:
        providers = self.registry.providers
        hooks = self.rpc.connect_hooks
        key = (len(self.rpc.methods), len(hooks), len(providers))
        if key != self.key:
            self.plans = make_plans(self.rpc.methods, providers, self.route_names)
            self.hooks = make_hook_plans(hooks, providers, self.route_names)
            every = (*self.plans.values(), *self.hooks)
            used = dict.fromkeys(n for plan in every for n in plan.injected)
            self.providers = tuple(n for n in used if n in providers and n not in self.route_names)
            self.key = key
        return self.plans


def jsonrpc_view(
    rpc: JSONRPC,
    registry: ProviderRegistry,
    route_names: Collection[str],
    max_concurrent: int,
    options: Mapping[str, Any],
) -> Callable[..., Awaitable[None]]:
    """The WebSocket view serving ``rpc``; raises at registration what it can check."""
    if not isinstance(rpc, JSONRPC):
        raise TypeError(f"jsonrpc_route() serves a triows.JSONRPC, got {type(rpc).__name__}")
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
    fixed = [name for name in _FIXED_OPTIONS if name in options]
    if fixed:
        raise TypeError(
            f"jsonrpc_route() sets {', '.join(fixed)} itself (JSON text, accepted before "
            "the methods run); remove them"
        )
    plans = _Plans(rpc, registry, frozenset(route_names))
    plans.current()  # a parameter that can be neither injected nor JSON: TypeError now

    async def jsonrpc(ws: WebSocket, **route_values: str) -> None:
        current = plans.current()
        error: BaseException | None = None
        async with AsyncExitStack() as stack:
            values: dict[str, Any] = dict(route_values)
            if plans.providers:
                # Before accepting, as for views: a failing provider refuses with 500.
                values.update(await registry.resolve(plans.providers, stack, ws))
            # Accepts; a departure with one of the route's caught codes ends quietly.
            async with ws:
                async with trio.open_nursery() as nursery:
                    connection = RPCConnection(ws, nursery)
                    values[CONNECTION] = connection
                    for hook in plans.hooks:
                        await hook.method.function(**{n: values[n] for n in hook.injected})
                    try:
                        await Session(connection, current, values, max_concurrent).read()
                    except (WebSocketDisconnect, ClientError) as exc:
                        # The client left, broke a rule (a binary frame: 1003; a rate limit): end every call.
                        error = exc
                    nursery.cancel_scope.cancel()
                if error is not None:
                    try:
                        raise error
                    finally:
                        error = None

    _routes[jsonrpc] = JSONRPCRoute(rpc, max_concurrent)
    return jsonrpc
