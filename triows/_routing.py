"""Routes: URL patterns, view signatures, and parameter conversion.

A view's parameters come from three places, decided by name:

1. ``{name}`` segments of the route pattern;
2. providers registered on the App (never from the query string);
3. everything else from the query string (required unless it has a default).

Each parameter's annotation is its converter: ``int``, ``float``, ``str``, ``bool``
(true/false/1/0/yes/no/on/off, any case), or any callable taking a string.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._datastructures import QueryParams

__all__ = ["ParameterError", "Pattern", "ViewSignature", "convert_bool", "evaluated_signature"]

_SEGMENT = re.compile(r"{([^{}]*)}")
#: What a ``{name}`` segment matches: one or more characters, none of them ``/`` or
#: an ASCII control character (a percent-decoded ``%0a`` must not reach ``int()``,
#: which would strip it).
_SEGMENT_VALUE = r"[^/\x00-\x1f\x7f]+"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def convert_bool(value: str) -> bool:
    """Convert a route or query value to bool: true/false/1/0/yes/no/on/off, any case."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean; use true/false, 1/0, yes/no or on/off")


class ParameterError(Exception):
    """A route or query value is missing or does not convert; refuses the handshake."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"parameter {parameter!r}: {detail}")
        self.parameter = parameter
        self.detail = detail


@attrs.frozen
class Pattern:
    """A compiled route pattern such as ``/chat/{channel}``.

    It matches a whole path exactly (``re.fullmatch``: no ``$``, which would also
    match before a final newline).
    """

    text: str
    regex: re.Pattern[str]
    names: tuple[str, ...]

    @classmethod
    def compile(cls, text: str) -> Pattern:
        if not text.startswith("/"):
            raise ValueError(f"route pattern {text!r} must start with '/'")
        names: list[str] = []
        parts: list[str] = []
        position = 0
        for match in _SEGMENT.finditer(text):
            name = match.group(1)
            if not name.isidentifier():
                raise ValueError(
                    f"route pattern {text!r}: {{{name}}} is not a valid parameter name"
                )
            if name in names:
                raise ValueError(f"route pattern {text!r} repeats the parameter {{{name}}}")
            names.append(name)
            parts.append(re.escape(text[position : match.start()]))
            parts.append(f"(?P<{name}>{_SEGMENT_VALUE})")
            position = match.end()
        parts.append(re.escape(text[position:]))
        return cls(text=text, regex=re.compile("".join(parts)), names=tuple(names))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)
        return None if found is None else found.groupdict()


def _identity(value: str) -> str:
    return value


def _converter_for(annotation: Any, where: str) -> Callable[[str], Any]:
    if annotation is inspect.Parameter.empty or annotation is str or annotation is Any:
        return _identity
    if annotation is bool:
        return convert_bool
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _converter_for(typing.get_args(annotation)[0], where)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _converter_for(members[0], where)
        raise ValueError(f"{where}: cannot convert to {annotation}; annotate one type")
    if callable(annotation) and origin is None:
        return annotation  # type: ignore[no-any-return]
    raise ValueError(f"{where}: cannot convert a string to {annotation!r}")


@attrs.frozen
class _Unconvertible:
    """The converter of a parameter whose annotation cannot convert a string."""

    message: str

    def __call__(self, value: str) -> Any:
        raise RuntimeError(
            f"{self.message} (it is not a provider, so it would bind from the query string)"
        )


@attrs.frozen
class Parameter:
    """One keyword parameter of a view."""

    name: str
    convert: Callable[[str], Any]
    default: Any  # inspect.Parameter.empty when required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def evaluated_signature(view: Callable[..., Any]) -> inspect.Signature:
    """The view's signature with its annotations evaluated (they are strings under
    ``from __future__ import annotations``).

    A name the view's module does not define (a converter class defined inside a
    function, next to the view) is looked up in the locals of the code that is
    registering the view: the innermost calling frame outside triows that
    resolves every annotation.  Raises NameError if none does.
    """
    try:
        return inspect.signature(view, eval_str=True)
    except NameError as exc:
        error = exc
    frame = inspect.currentframe()  # this function's own frame is triows': skipped
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "triows" and not module.startswith("triows."):
            try:
                return inspect.signature(view, eval_str=True, locals=frame.f_locals)
            except NameError:
                pass
        frame = frame.f_back
    raise error


@attrs.frozen
class ViewSignature:
    """What a view needs, read from its signature once, at decoration time."""

    view_name: str
    parameters: tuple[Parameter, ...]
    route_names: frozenset[str]
    accepts_extra: bool  # the view takes **kwargs
    #: The annotation of the view's first parameter (the connection), if any.
    connection_type: Any = None

    @classmethod
    def of(cls, view: Callable[..., Any], pattern: Pattern, kind: str) -> ViewSignature:
        name = getattr(view, "__qualname__", repr(view))
        if not inspect.iscoroutinefunction(view):
            raise TypeError(
                f"{kind} view {name}() must be a coroutine function: define it with 'async def'"
            )
        try:
            signature = evaluated_signature(view)
        except NameError as exc:
            raise ValueError(
                f"{kind} view {name}(): unknown type name in annotations: {exc}"
            ) from None
        positional = list(signature.parameters.values())
        if not positional or positional[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(f"{kind} view {name}() must take the connection as its first argument")
        parameters: list[Parameter] = []
        accepts_extra = False
        for param in positional[1:]:
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                accepts_extra = True
                continue
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
                raise TypeError(
                    f"{kind} view {name}(): parameter {param.name!r} must be passable by keyword"
                )
            where = f"{kind} view {name}(), parameter {param.name!r}"
            try:
                convert = _converter_for(param.annotation, where)
            except ValueError as exc:
                # A provider's parameter may carry any annotation (``clients: set[X]``),
                # and providers may be registered after the route: only a route
                # parameter is known to need conversion now.  A query parameter
                # with such an annotation fails when it is bound (a server error).
                if param.name in pattern.names:
                    raise
                convert = _Unconvertible(str(exc))
            parameters.append(Parameter(param.name, convert, param.default))
        known = {p.name for p in parameters}
        missing = [n for n in pattern.names if n not in known]
        if missing and not accepts_extra:
            raise TypeError(
                f"route {pattern.text!r}: the route parameter(s) {', '.join(missing)} "
                f"are not parameters of {kind} view {name}(); add them to its signature"
            )
        return cls(
            view_name=name,
            parameters=tuple(parameters),
            route_names=frozenset(pattern.names),
            accepts_extra=accepts_extra,
            connection_type=(
                None
                if positional[0].annotation is inspect.Parameter.empty
                else positional[0].annotation
            ),
        )

    def takes(self, cls: type) -> bool:
        """Whether the view's first parameter is annotated as ``cls`` (or a subclass)."""
        annotation = self.connection_type
        return isinstance(annotation, type) and issubclass(annotation, cls)

    def provider_names(self, providers: Mapping[str, object]) -> list[str]:
        return [
            p.name
            for p in self.parameters
            if p.name in providers and p.name not in self.route_names
        ]

    def bind(
        self,
        path_values: Mapping[str, str],
        query: QueryParams,
        providers: Mapping[str, object],
    ) -> dict[str, Any]:
        """Convert route and query values into keyword arguments.

        Raises ParameterError naming the first parameter that is missing or bad.
        """
        kwargs: dict[str, Any] = {}
        for param in self.parameters:
            name = param.name
            if name in self.route_names:
                raw = path_values[name]
            elif name in providers:
                continue
            elif name in query:
                raw = query[name]
            elif param.required:
                raise ParameterError(name, "missing required query parameter")
            else:
                continue
            try:
                kwargs[name] = param.convert(raw)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise ParameterError(name, f"invalid value {raw!r}: {exc}") from None
        if self.accepts_extra:
            for name, raw in path_values.items():
                kwargs.setdefault(name, raw)
        return kwargs
