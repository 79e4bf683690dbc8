"""The JSON-RPC method registry: ``JSONRPC`` and what it knows of each method.

Each method's parameters are read from its signature once, at registration:
every annotation gets its :class:`~triows._typed.TypedCodec` (the typed
messages' machinery), so a call's params are validated by a converter built
in advance.  Which parameters are injected (``connection``, the route's
``{name}`` values, providers) and which come from the call's ``params`` is
settled per route, when it is served (see ``_plan``).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable, Container, Mapping
from typing import Any, TypeVar, overload

import attrs

from .._routing import evaluated_signature
from .._typed import REF_TEMPLATE, Components, Schema, TypedCodec, codec_for
from ._errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    REQUEST_CANCELLED,
    REQUEST_TIMED_OUT,
    STANDARD_ERRORS,
)

__all__ = ["CONNECTION", "JSONRPC", "RPCMethod", "RPCParameter"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

#: The parameter name that gives a method its :class:`~triows.RPCConnection`.
CONNECTION = "connection"
_EMPTY = inspect.Parameter.empty


@attrs.frozen
class RPCParameter:
    """One parameter of a method, as read from its signature.

    ``codec`` converts and validates a JSON value into the annotation (None for
    an unannotated or ``Any`` parameter, taken as it comes); ``unsupported``
    says why the annotation cannot come from JSON (fine for an injected
    parameter, such as a provider's ``hub: Hub``).
    """

    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required
    codec: TypedCodec | None
    unsupported: str | None = None

    @property
    def required(self) -> bool:
        return self.default is _EMPTY


@attrs.frozen
class RPCMethod:
    """A registered method: its name, function, time limit, parameters and result type.

    Read-only; ``JSONRPC.methods`` maps names to these, for tools that describe
    the API (the AsyncAPI document).
    """

    name: str
    function: Callable[..., Awaitable[Any]]
    timeout: float | None
    parameters: tuple[RPCParameter, ...]
    result_type: Any

    @property
    def errors(self) -> dict[int, str]:
        """The errors triows may answer a call of this method with: code -> message."""
        codes = [INVALID_PARAMS, INTERNAL_ERROR, REQUEST_CANCELLED]
        if self.timeout is not None:
            codes.append(REQUEST_TIMED_OUT)
        return {code: STANDARD_ERRORS[code] for code in codes}

    def json_parameters(self, injected: Container[str] = ()) -> tuple[RPCParameter, ...]:
        """The parameters a call's ``params`` give: all but ``connection`` and ``injected``."""
        return tuple(p for p in self.parameters if p.name != CONNECTION and p.name not in injected)

    def params_schema(
        self, injected: Container[str] = (), ref_template: str = REF_TEMPLATE
    ) -> tuple[Schema, Components]:
        """The JSON Schema of ``params`` by name (an object), and its named schemas.

        ``injected``: the names the route fills in (its providers and ``{name}``
        parameters), left out.
        """
        properties: dict[str, Schema] = {}
        components: Components = {}
        required = []
        for param in self.json_parameters(injected):
            schema: Schema = {}
            if param.codec is not None:
                schema, more = param.codec.schema(ref_template)
                components.update(more)
            properties[param.name] = schema
            if param.required:
                required.append(param.name)
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema, components

    def result_schema(self, ref_template: str = REF_TEMPLATE) -> tuple[Schema, Components]:
        """The JSON Schema of the result (``{}`` when the return type is not annotated)."""
        if self.result_type is Any:
            return {}, {}
        return codec_for(self.result_type).schema(ref_template)


def _codec_of(annotation: Any) -> tuple[TypedCodec | None, str | None]:
    if annotation is _EMPTY or annotation is Any:
        return None, None
    try:
        return codec_for(annotation), None
    except TypeError as exc:
        return None, str(exc)


def _read_method(name: str, function: Callable[..., Any], timeout: float | None) -> RPCMethod:
    where = f"JSON-RPC method {name!r} ({getattr(function, '__qualname__', function)})"
    if not inspect.iscoroutinefunction(function):
        raise TypeError(f"{where} must be a coroutine function: define it with 'async def'")
    try:
        signature = evaluated_signature(function)
    except NameError as exc:
        raise ValueError(f"{where}: unknown type name in annotations: {exc}") from None
    parameters = []
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"{where}: *{param.name} is not supported; name every parameter")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"{where}: parameter {param.name!r} must be passable by keyword")
        codec, unsupported = _codec_of(param.annotation)
        parameters.append(
            RPCParameter(param.name, param.annotation, param.default, codec, unsupported)
        )
    result: Any = signature.return_annotation
    if result is _EMPTY or result is None or result is types.NoneType:
        result = Any if result is _EMPTY else types.NoneType
    elif _codec_of(result)[1] is not None:
        raise TypeError(f"{where}: its return type {result!r} cannot be sent as JSON")
    return RPCMethod(name, function, timeout, tuple(parameters), result)


class JSONRPC:
    """A set of JSON-RPC 2.0 methods, served by ``app.jsonrpc_route(pattern, rpc)``.

    Register methods with :meth:`method`.  A method's parameters come from the
    call's ``params`` (by name or by position), converted and validated from
    their annotations as typed messages are; a parameter named ``connection``
    gets the :class:`~triows.RPCConnection`, and parameters named like a
    provider or a ``{name}`` of the route get those values.  The return value
    is sent as the result, encoded as typed messages are.
    """

    def __init__(self) -> None:
        self._methods: dict[str, RPCMethod] = {}
        #: Read-only: every method by name (for describing the API).
        self.methods: Mapping[str, RPCMethod] = types.MappingProxyType(self._methods)
        self._hooks: list[RPCMethod] = []

    @property
    def connect_hooks(self) -> tuple[RPCMethod, ...]:
        """The functions registered with :meth:`on_connect`, in order."""
        return tuple(self._hooks)

    def on_connect(self, function: F) -> F:
        """Run ``async def function(...)`` when a client connects, before its first call.

        It takes only what a method can be given by name (``connection``,
        providers, route parameters): the place to start a connection's
        background tasks, such as forwarding a Hub topic as notifications with
        ``connection.nursery.start(...)``.  Hooks run in registration order and
        are awaited: calls are read once they return.  One that raises ends the
        connection with 1011, as a crashing view does.
        """
        self._hooks.append(_read_method(function.__name__, function, None))
        return function

    @overload
    def method(self, function: F, /) -> F: ...
    @overload
    def method(
        self, name: str | None = None, /, *, timeout: float | None = None
    ) -> Callable[[F], F]: ...

    def method(
        self, name: str | F | None = None, /, *, timeout: float | None = None
    ) -> F | Callable[[F], F]:
        """Register an ``async def`` as a method: ``@rpc.method`` under its own name,
        ``@rpc.method("ns.name", timeout=5.0)`` under another, with a time limit.

        ``timeout`` (seconds, counted from when the call starts running): past
        it the call is cancelled and answered with -32001 "request timed out".
        Raises TypeError for a function that is not ``async def`` or takes
        ``*args``/``**kwargs``, ValueError for a name taken or reserved (``rpc.``
        and ``$/`` prefixes) or a timeout that is not positive.
        """
        if callable(name):
            return self._register(name.__name__, name, None)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")

        def register(function: F) -> F:
            return self._register(name or function.__name__, function, timeout)

        return register

    def _register(self, name: str, function: F, timeout: float | None) -> F:
        if name.startswith(("rpc.", "$/")):
            raise ValueError(
                f"JSON-RPC method name {name!r} is reserved (names starting with 'rpc.' "
                "belong to the specification, '$/' to protocol messages); choose another"
            )
        if name in self._methods:
            raise ValueError(f"JSON-RPC method {name!r} is already registered")
        self._methods[name] = _read_method(name, function, timeout)
        return function

    def __repr__(self) -> str:
        return f"<JSONRPC methods={sorted(self._methods)}>"
