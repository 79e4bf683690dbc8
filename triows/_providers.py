"""Providers: dependency injection by parameter name.

A provider is an ``async def`` that returns a value, or an async generator that
yields exactly one (the code after ``yield`` is its teardown).  Scope ``"connection"``
makes one value per connection (or HTTP request); scope ``"app"`` one per App
lifetime, created at startup and torn down at shutdown.  Providers may depend on
other providers through their own parameters, and a connection-scoped one may take
the parameter :data:`CONNECTION`: the WebSocket or Request it is created for.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Literal

import attrs
import trio

__all__ = ["CONNECTION", "Provider", "ProviderError", "ProviderRegistry", "ProviderScope"]

ProviderScope = Literal["connection", "app"]

#: The parameter name that gives a connection-scoped provider its WebSocket or Request.
CONNECTION = "connection"

#: How long a provider's teardown may run, shielded from cancellation.
TEARDOWN_TIMEOUT = 5.0


class ProviderError(Exception):
    """A provider graph is invalid: a cycle, a missing dependency, a scope mismatch."""


@attrs.frozen
class Provider:
    """A registered provider."""

    name: str
    func: Callable[..., Any]
    scope: ProviderScope
    dependencies: tuple[str, ...]
    is_generator: bool

    @classmethod
    def of(cls, func: Callable[..., Any], scope: ProviderScope) -> Provider:
        name = getattr(func, "__name__", repr(func))
        is_generator = inspect.isasyncgenfunction(func)
        if not (is_generator or inspect.iscoroutinefunction(func)):
            raise TypeError(
                f"provider {name}() must be 'async def' (returning a value) or an async "
                "generator (yielding one)"
            )
        if scope not in ("connection", "app"):
            raise ValueError(f"provider {name}(): scope={scope!r}; use 'connection' or 'app'")
        dependencies = tuple(inspect.signature(func).parameters)
        return cls(name, func, scope, dependencies, is_generator)


async def _finish(generator: AsyncGenerator[Any, None], name: str) -> None:
    # Resume the generator rather than throw into it, so that code after `yield`
    # runs even when the view failed; shielded and bounded so a cancelled
    # connection still releases what its providers hold.
    with trio.move_on_after(TEARDOWN_TIMEOUT) as scope:
        scope.shield = True
        try:
            await generator.__anext__()
        except StopAsyncIteration:
            return
        raise RuntimeError(f"provider {name}() yielded more than once; yield exactly one value")
    if scope.cancelled_caught:
        raise TimeoutError(f"provider {name}() teardown took longer than {TEARDOWN_TIMEOUT} s")


class ProviderRegistry:
    """The providers of one App, and the values of its app-scoped ones."""

    def __init__(self) -> None:
        self.providers: dict[str, Provider] = {}
        self._app_values: dict[str, Any] | None = None

    def __contains__(self, name: object) -> bool:
        return name in self.providers

    def register(self, func: Callable[..., Any], scope: ProviderScope) -> Provider:
        provider = Provider.of(func, scope)
        if provider.name == CONNECTION:
            raise ProviderError(
                f"a provider cannot be named {CONNECTION!r}: providers take that parameter "
                "to receive their WebSocket or Request; rename the function"
            )
        if provider.scope == "app" and CONNECTION in provider.dependencies:
            raise ProviderError(
                f"app-scoped provider {provider.name}() takes {CONNECTION!r}, which exists "
                "only per connection; make it connection-scoped"
            )
        if provider.name in self.providers:
            raise ProviderError(f"a provider named {provider.name!r} is already registered")
        self.providers[provider.name] = provider
        try:
            self._check_cycles(provider.name)
        except ProviderError:
            del self.providers[provider.name]
            raise
        return provider

    def _check_cycles(self, start: str) -> None:
        path: list[str] = []

        def visit(name: str) -> None:
            if name in path:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise ProviderError(f"providers depend on each other in a cycle: {cycle}")
            provider = self.providers.get(name)
            if provider is None:
                return
            path.append(name)
            for dependency in provider.dependencies:
                visit(dependency)
            path.pop()

        visit(start)

    def check(self) -> None:
        """Validate the whole graph (run at startup): dependencies exist, scopes fit."""
        for provider in self.providers.values():
            self._check_cycles(provider.name)
            for dependency in provider.dependencies:
                if dependency == CONNECTION:
                    continue  # given by resolve(); register() refused it on app scope
                found = self.providers.get(dependency)
                if found is None:
                    raise ProviderError(
                        f"provider {provider.name}() depends on {dependency!r}, "
                        "which is not a registered provider"
                    )
                if provider.scope == "app" and found.scope == "connection":
                    raise ProviderError(
                        f"app-scoped provider {provider.name}() depends on connection-scoped "
                        f"provider {dependency}(); make {dependency}() app-scoped too"
                    )

    def _order(self, names: Iterable[str]) -> list[Provider]:
        ordered: list[Provider] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            if name == CONNECTION:
                return
            provider = self.providers.get(name)
            if provider is None:
                raise ProviderError(f"{name!r} is not a registered provider")
            for dependency in provider.dependencies:
                visit(dependency)
            ordered.append(provider)

        for name in names:
            visit(name)
        return ordered

    async def _create(
        self, provider: Provider, values: Mapping[str, Any], stack: AsyncExitStack
    ) -> Any:
        kwargs = {name: values[name] for name in provider.dependencies}
        if not provider.is_generator:
            return await provider.func(**kwargs)
        generator = provider.func(**kwargs)
        try:
            value = await generator.__anext__()
        except StopAsyncIteration:
            raise RuntimeError(f"provider {provider.name}() did not yield a value") from None
        stack.push_async_callback(_finish, generator, provider.name)
        return value

    async def start_app(self, stack: AsyncExitStack) -> None:
        """Create every app-scoped value; teardown is pushed onto ``stack``."""
        self.check()
        values: dict[str, Any] = {}
        app_scoped = [p.name for p in self.providers.values() if p.scope == "app"]
        for provider in self._order(app_scoped):
            values[provider.name] = await self._create(provider, values, stack)
        self._app_values = values
        stack.callback(self._stop_app)

    def _stop_app(self) -> None:
        self._app_values = None

    def shared(self, names: Iterable[str]) -> dict[str, Any] | None:
        """The values of ``names`` if every one is app-scoped and the lifespan runs.

        Nothing to create and nothing to tear down: a connection taking only such
        values needs no exit stack (about 1.5 KB per connection).  None otherwise
        (:meth:`resolve` then gives them, or raises what there is to raise).
        """
        app_values = self._app_values
        if app_values is None:
            return None
        values: dict[str, Any] = {}
        for name in names:
            provider = self.providers.get(name)
            if provider is None or provider.scope != "app":
                return None
            values[name] = app_values[name]
        return values

    async def resolve(
        self, names: Iterable[str], stack: AsyncExitStack, connection: object
    ) -> dict[str, Any]:
        """Values for ``names``: app-scoped ones shared, connection-scoped ones created.

        ``connection`` (the WebSocket or Request) is passed to the providers that
        take :data:`CONNECTION`.  Connection-scoped teardowns are pushed onto ``stack``.
        """
        wanted = list(names)
        if not wanted:
            return {}
        values: dict[str, Any] = {CONNECTION: connection}
        for provider in self._order(wanted):
            if provider.scope == "app":
                if self._app_values is None:
                    raise RuntimeError(
                        f"app-scoped provider {provider.name}() has no value: the App's "
                        "lifespan has not started (serve it with triows.serve, hypercorn, "
                        "or `async with TestClient(app)`)"
                    )
                values[provider.name] = self._app_values[provider.name]
            else:
                values[provider.name] = await self._create(provider, values, stack)
        return {name: values[name] for name in wanted}
