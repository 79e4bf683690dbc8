"""One module per server under test, each started as its own process.

Every module is run as ``python -m benchmarks.servers.<module> [options]``: it
binds 127.0.0.1 on a free port, prints ``PORT <n>`` on stdout once it accepts
connections (or ``UNAVAILABLE <reason>`` and exits with status 3 when the
server cannot run here), and serves until killed.  Every server implements the
same WebSocket endpoints:

``/echo``
    echo each text message back.
``/sub``
    a subscriber: sends ``subscribed`` once registered, then waits.
``/pub``
    on ``go N``, sends N copies of :data:`MESSAGE` to every subscriber with a
    plain serial loop (for each message, for each subscriber, await the send;
    ``triows-native-try-send``: ``ws.try_send()`` first, awaiting only when the
    server cannot take it at once), then replies ``done N`` to the publisher.
``/idle``
    accept and wait for the client to leave.
"""

from __future__ import annotations

import attrs

__all__ = ["REFERENCE", "SERVERS", "ServerSpec"]


@attrs.frozen
class ServerSpec:
    """A server under test: its short name, table label and how to start it."""

    name: str
    label: str
    module: str
    args: tuple[str, ...] = ()


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec("raw-asgi", "raw ASGI app, hypercorn -k trio", "benchmarks.servers.raw_asgi"),
    ServerSpec("starlette", "Starlette on hypercorn -k trio", "benchmarks.servers.starlette_app"),
    ServerSpec("quart-trio", "Quart-trio", "benchmarks.servers.quart_trio_app"),
    ServerSpec(
        "trio-websocket", "raw trio-websocket server", "benchmarks.servers.trio_websocket_server"
    ),
    ServerSpec(
        "websockets-asyncio",
        "websockets, asyncio (for reference)",
        "benchmarks.servers.websockets_asyncio",
    ),
    ServerSpec(
        "websockets-uvloop",
        "websockets, asyncio on uvloop (for reference)",
        "benchmarks.servers.websockets_asyncio",
        ("--uvloop",),
    ),
    ServerSpec(
        "websockets-trio", "websockets, trio implementation", "benchmarks.servers.websockets_trio"
    ),
    ServerSpec(
        "triows-plain-hypercorn",
        "triows App on hypercorn -k trio (ASGI adapter)",
        "benchmarks.servers.triows_app",
        ("--backend", "plain-hypercorn"),
    ),
    ServerSpec(
        "triows",
        "triows on hypercorn (triows.serve)",
        "benchmarks.servers.triows_app",
        ("--backend", "hypercorn"),
    ),
    ServerSpec(
        "triows-native",
        'triows native (backend="native")',
        "benchmarks.servers.triows_app",
        ("--backend", "native"),
    ),
    ServerSpec(
        "triows-native-try-send",
        "triows native, serial loop with ws.try_send()",
        "benchmarks.servers.triows_app",
        ("--backend", "native", "--fanout", "try-send"),
    ),
    ServerSpec(
        "triows-native-metrics",
        "triows native, App(metrics=True)",
        "benchmarks.servers.triows_app",
        ("--backend", "native", "--metrics"),
    ),
    ServerSpec(
        "triows-hub",
        "triows on hypercorn, fan-out through triows.Hub",
        "benchmarks.servers.triows_app",
        ("--backend", "hypercorn", "--fanout", "hub"),
    ),
    ServerSpec(
        "triows-native-hub",
        "triows native, fan-out through triows.Hub",
        "benchmarks.servers.triows_app",
        ("--backend", "native", "--fanout", "hub"),
    ),
    ServerSpec(
        "triows-native-hub-metrics",
        "triows native, fan-out through triows.Hub, App(metrics=True)",
        "benchmarks.servers.triows_app",
        ("--backend", "native", "--fanout", "hub", "--metrics"),
    ),
    ServerSpec(
        "triows-hub-redis",
        "triows on hypercorn, fan-out through a Redis hub",
        "benchmarks.servers.triows_app",
        ("--backend", "hypercorn", "--fanout", "redis"),
    ),
)

#: Ratios are computed against this server, paired within each repeat.
REFERENCE = "raw-asgi"
