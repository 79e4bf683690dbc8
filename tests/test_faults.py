"""A short fault-harness run in CI (issue 12): scripts/faults.py, bounded, on loopback.

Two workers serving the live route on a Redis hub with history, clients of the
shipped trio client (``triows.client``) through the harness's proxy, while it
cuts connections, stalls readers, rolls every worker (1012) and restarts Redis.
Every client must end with every message of its topic exactly once and in
order, or an explicit gap signal.  See scripts/faults.py for the long run.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

import trio

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "faults.py"


def _faults() -> Any:
    spec = importlib.util.spec_from_file_location("faults", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["faults"] = module
    spec.loader.exec_module(module)
    return module


async def test_clients_get_every_message_once_in_order_through_drops_stalls_and_a_rolling_restart() -> (
    None
):
    lines: list[str] = []
    with trio.fail_after(90):
        report = await _faults().run(
            seconds=4.0,
            clients=8,
            topics=2,
            workers=2,
            rate=40.0,
            stall=2.0,
            settle=15.0,
            drain_seconds=1.0,
            faults="drop,stall,roll,redis",
            log=lines.append,
        )
    summary = report.summary()
    assert report.failures == [], summary + "\n" + "\n".join(report.failures)
    assert all(client.delivered > 0 for client in report.clients), summary
    # Every fault happened, and reached the clients.
    assert any(fault.startswith("drop") for fault in report.faults), summary
    assert any(fault.startswith("stall") for fault in report.faults), summary
    assert any(fault.startswith("rolling restart") for fault in report.faults), summary
    assert any(fault.startswith("redis restart") for fault in report.faults), summary
    codes = {code for client in report.clients for code in client.codes}
    assert {1006, 1012} <= codes, summary


async def test_the_harness_redis_takes_a_new_port_when_its_port_is_taken(tmp_path: Path) -> None:
    # A free port can be taken before redis-server binds it: the first start tries
    # another one; a restart keeps its port (the hub under test holds the URL).
    _faults()  # puts scripts/ on sys.path, and imports faults_servers
    servers = sys.modules["faults_servers"]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        taken_port = taken.getsockname()[1]
        with trio.fail_after(60):
            async with servers.RedisProcess.started(tmp_path, taken_port) as redis:
                port = redis.port
                assert port != taken_port
                await redis.restart()
                assert redis.port == port and redis.restarts == 1
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_all(b"PING\r\n")
                    assert (await stream.receive_some(16)).startswith(b"+PONG")
    said = redis.log.read_text()
    assert "Address already in use" in said and said.count("Ready to accept connections") == 2
