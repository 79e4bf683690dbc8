"""The shipped JS client under Node 20: reconnects, resumes, publishes once."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

import triows
from triows._live import client_script

from .conftest import Backend
from .live_apps import live_app
from .tcp_proxy import TCPProxy, tcp_proxy

NODE_SCRIPT = __file__.rsplit("/", 1)[0] + "/live_node.js"


class Lines:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise EOFError(f"node exited; unread output: {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        event: dict[str, Any] = json.loads(line)
        return event

    async def until(self, key: str) -> dict[str, Any]:
        while True:
            event = await self.next()
            if key in event:
                return event


def node_and_client(tmp_path: Path) -> tuple[str, Path]:
    """Node's path and a copy of the shipped JS client (fails loudly without Node)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: scripts/test installs Debian's nodejs (Node 20)")
    client = tmp_path / "triows-live.js"
    client.write_text(client_script())
    return node, client


def live_url_for_node(backend: Backend, port: int) -> tuple[str, dict[str, str]]:
    """The live route's URL on ``port``, and Node's environment (trusting the
    native-tls backend's self-signed certificate)."""
    env = dict(os.environ)
    scheme = "ws"
    if backend.certificate is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(backend.certificate[0])
        scheme = "wss"
    return f"{scheme}://127.0.0.1:{port}/live", env


async def publish_with_drops(
    hub: triows.Hub, topic: str, numbers: range, proxy: TCPProxy, lines: Lines
) -> None:
    """Publish ``numbers`` to ``topic``, cutting the connection after each one that
    ends in 5; the client must have resumed (recovered) before the next publish."""
    for n in numbers:
        await hub.publish(topic, n)
        if n % 10 == 5:
            proxy.drop()
            assert (await lines.until("subscribed"))["subscribed"] is True


async def test_js_client_under_node_resumes_across_drops(backend: Backend, tmp_path: Any) -> None:
    node, client = node_and_client(tmp_path)
    app = live_app()
    hub = app.hub
    assert hub is not None
    count = 40
    async with (
        backend.serve(app) as served,
        tcp_proxy(served.port) as proxy,
        hub.subscribe("from-node") as from_node,
    ):
        url, env = live_url_for_node(backend, proxy.port)
        process = await trio.lowlevel.open_process(
            [node, "--experimental-websocket", NODE_SCRIPT, str(client), url, str(count)],
            stdout=-1,
            env=env,
        )
        try:
            assert process.stdout is not None
            lines = Lines(process.stdout)
            with trio.fail_after(20):
                assert (await lines.until("subscribed"))["subscribed"] is None
                assert await from_node.receive() == {"hello": "node"}
                await publish_with_drops(hub, "seq", range(count), proxy, lines)
                done = await lines.until("done")
                assert await process.wait() == 0
        finally:
            process.kill()
            await process.wait()
    assert done == {"done": list(range(count)), "gaps": []}
    with trio.move_on_after(0.2):
        pytest.fail(f"the node client's publish was published twice: {await from_node.receive()}")
