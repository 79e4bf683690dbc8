"""How one route calls each method: which arguments are injected, and binding params.

A plan is made per route when it is first served (providers may be registered
after the methods and the route) and kept until a method or provider is added.
Binding a call's ``params`` is a loop over the method's parameters with the
converters built at registration: no signature inspection per call.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs

from .._exceptions import MessageValidationError
from ._errors import InvalidParams
from ._methods import CONNECTION, RPCMethod, RPCParameter

__all__ = ["MethodPlan", "make_hook_plans", "make_plans", "plan_for"]

_EMPTY = inspect.Parameter.empty


@attrs.frozen
class MethodPlan:
    """One method as one route calls it."""

    method: RPCMethod
    #: The parameters the call's params give, in order.
    json_parameters: tuple[RPCParameter, ...]
    by_name: Mapping[str, RPCParameter]
    #: The injected names this method takes (providers, route values, ``connection``).
    injected: tuple[str, ...]

    def bind(self, params: Any) -> dict[str, Any]:
        """The keyword arguments for ``params`` (a dict, a list, or None when absent).

        Raises InvalidParams naming the field (``params.user.age``, ``params[1]``).
        """
        if params is None:
            params = {}
        kwargs: dict[str, Any] = {}
        if isinstance(params, dict):
            for name in params:
                if name not in self.by_name:
                    raise InvalidParams(f"params.{name}", "unexpected parameter")
            for param in self.json_parameters:
                if param.name in params:
                    kwargs[param.name] = _convert(param, params[param.name], f"params.{param.name}")
                elif param.required:
                    raise InvalidParams(f"params.{param.name}", "missing required parameter")
            return kwargs
        count = len(self.json_parameters)
        if len(params) > count:
            raise InvalidParams(
                "params", f"{self.method.name} takes at most {count} parameters, got {len(params)}"
            )
        for index, param in enumerate(self.json_parameters):
            if index < len(params):
                kwargs[param.name] = _convert(param, params[index], f"params[{index}]")
            elif param.required:
                raise InvalidParams(
                    f"params[{index}]", f"missing required parameter {param.name!r}"
                )
        return kwargs


def _convert(param: RPCParameter, value: Any, field: str) -> Any:
    codec = param.codec
    if codec is None:
        return value
    try:
        return codec.convert(value)
    except MessageValidationError as exc:
        raise InvalidParams(field + exc.path[1:], exc.problem) from None


def plan_for(
    method: RPCMethod, providers: Collection[str], route_names: Collection[str]
) -> MethodPlan:
    """``method``'s plan for a route with these ``{name}`` values, given the providers.

    Raises TypeError for a parameter that neither is injected nor can come from
    JSON, and for a route parameter annotated with another type than ``str``.
    """
    where = f"JSON-RPC method {method.name!r}"
    injected = []
    json_parameters = []
    for param in method.parameters:
        if param.name == CONNECTION:
            injected.append(param.name)
        elif param.name in route_names:
            if param.annotation not in (_EMPTY, str, Any, "str"):
                raise TypeError(
                    f"{where}: route parameter {param.name!r} arrives as a str; annotate "
                    f"it `str` (it is annotated {param.annotation!r})"
                )
            injected.append(param.name)
        elif param.name in providers:
            injected.append(param.name)
        elif param.unsupported is not None:
            raise TypeError(
                f"{where}: parameter {param.name!r} is neither a provider nor a route "
                f"parameter, and its type cannot come from JSON: {param.unsupported}"
            )
        else:
            json_parameters.append(param)
    return MethodPlan(
        method, tuple(json_parameters), {p.name: p for p in json_parameters}, tuple(injected)
    )


def make_plans(
    methods: Mapping[str, RPCMethod], providers: Collection[str], route_names: Collection[str]
) -> dict[str, MethodPlan]:
    """Every method's plan (see :func:`plan_for`)."""
    return {name: plan_for(m, providers, route_names) for name, m in methods.items()}


def make_hook_plans(
    hooks: Iterable[RPCMethod], providers: Collection[str], route_names: Collection[str]
) -> tuple[MethodPlan, ...]:
    """The on_connect hooks' plans: every parameter must be injected (TypeError if not)."""
    plans = []
    for hook in hooks:
        plan = plan_for(hook, providers, route_names)
        if plan.json_parameters:
            raise TypeError(
                f"JSON-RPC on_connect hook {hook.name}(): parameter "
                f"{plan.json_parameters[0].name!r} is not {CONNECTION!r}, a provider or a "
                "route parameter; a hook gets nothing from the client"
            )
        plans.append(plan)
    return tuple(plans)
