"""The App that scripts/faults.py serves with ``triows run --workers N``.

The live route (``App.live_route``, docs/protocol.md) at ``/live`` on a Redis
hub with history: the harness's clients are the shipped trio client
(``triows.client``), which resumes each topic from its last position after any
disconnection.  Settings come from the environment: ``TRIOWS_FAULTS_REDIS``
(the Redis URL), ``TRIOWS_FAULTS_HISTORY`` (messages kept per topic) and
``TRIOWS_FAULTS_BUFFER`` (a subscription's buffer).
"""

from __future__ import annotations

import os

import triows

hub = triows.Hub(
    os.environ.get("TRIOWS_FAULTS_REDIS", "redis://127.0.0.1:6379/0"),
    history=int(os.environ.get("TRIOWS_FAULTS_HISTORY", "5000")),
    max_buffer=int(os.environ.get("TRIOWS_FAULTS_BUFFER", "64")),
)
app = triows.App(hub=hub)
app.live_route("/live")
