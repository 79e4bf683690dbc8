"""The document's shared JSON Schemas: ``components.schemas``.

Each type's schema comes from :func:`triows._typed.json_schemas` with its named
definitions apart and references written ``#/$defs/Name``
(:data:`LOCAL_REF_TEMPLATE`).  In an AsyncAPI document a ``$ref`` resolves
against the whole document, so the definitions move to ``#/components/schemas/``
and every reference follows them.  Two different definitions with one name (two
``Message`` classes from two modules) get distinct names; an identical
definition is stored once.

JSON Schema generators write OpenAPI's ``discriminator`` (an object with
``propertyName`` and a ``mapping`` of local references); an AsyncAPI Schema
Object's ``discriminator`` is the property's name alone, so it becomes that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["LOCAL_REF_TEMPLATE", "Components"]

#: How the schemas handed to :meth:`Components.add` refer to their definitions.
LOCAL_REF_TEMPLATE = "#/$defs/{name}"
_LOCAL_REF = "#/$defs/"
_COMPONENT_REF = "#/components/schemas/"
#: What AsyncAPI allows in a component's name.
_INVALID = re.compile(r"[^A-Za-z0-9.\-_]")


@attrs.define
class Components:
    """The ``components.schemas`` of one document, filled as messages are described."""

    schemas: dict[str, Any] = attrs.field(factory=dict)

    def add(self, schema: dict[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
        """``schema`` with its ``definitions`` moved here and its references rewritten.

        The result is a new dict; neither argument is modified.
        """
        renames: dict[str, str] = {}
        for name, definition in definitions.items():
            renames[name] = self._free_name(name, definition, set(renames.values()))
        for name, definition in definitions.items():
            self.schemas.setdefault(renames[name], _rewrite(definition, renames))
        return _rewrite(schema, renames)  # type: ignore[no-any-return]

    def _free_name(self, name: str, definition: Any, reserved: set[str]) -> str:
        """A component name for ``definition``: its own name (made valid) unless a
        different schema holds it, then the first free ``Name_2``, ``Name_3``..."""
        base = _INVALID.sub("_", name) or "Schema"
        candidate, number = base, 1
        while candidate in self.schemas or candidate in reserved:
            # The same definition (its references unrenamed) is stored once.
            if candidate not in reserved and self.schemas[candidate] == _rewrite(definition, {}):
                return candidate
            number += 1
            candidate = f"{base}_{number}"
        return candidate


def _rewrite(value: Any, renames: dict[str, str]) -> Any:
    """A copy of ``value`` with every ``#/$defs/Name`` reference pointing into
    components, and OpenAPI's discriminator objects as AsyncAPI's property names."""
    if isinstance(value, dict):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith(_LOCAL_REF):
                name = item[len(_LOCAL_REF) :]
                copied[key] = _COMPONENT_REF + renames.get(name, name)
            elif key == "discriminator" and isinstance(item, dict) and "propertyName" in item:
                copied[key] = item["propertyName"]
            else:
                copied[key] = _rewrite(item, renames)
        return copied
    if isinstance(value, list):
        return [_rewrite(item, renames) for item in value]
    return value
