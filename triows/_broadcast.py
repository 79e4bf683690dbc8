"""INTERIM shim, for the native-http branch only: drop it when merging.

The WIP transport-seam commit moved this module to ``_connection._frames`` and
removed the ``triows.send_batch`` extension; the native backend's WebSocket side
is not converted yet and still imports these names.  This keeps
``triows._native`` importable (its HTTP routes work; its WebSocket side does
not, by design) until that conversion lands.
"""

from __future__ import annotations

from typing import Final

from ._connection._frames import Prepared

__all__ = ["BATCH_EVENT", "BATCH_EXTENSION", "Prepared"]

BATCH_EXTENSION: Final = "triows.send_batch"
BATCH_EVENT: Final = "triows.websocket.send_batch"
