"""``triows run --workers N``: real processes on loopback, every wait bounded.

Each test runs the supervisor through ``tests.workers.supervised``, which
kills it and every worker it saw on the way out and checks that none is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from .raw_client import http_get
from .workers import ROOT, STARTUP_TIMEOUT, TIMEOUT, Supervised, supervised, wait_gone

TARGET = "tests.worker_app:app"


async def who(server: Supervised) -> int:
    """Open a WebSocket, read the pid of the worker serving it, close it."""
    with trio.fail_after(TIMEOUT):
        url = f"ws://127.0.0.1:{server.port}/who"
        async with open_websocket_url(url, connect_timeout=TIMEOUT) as ws:
            return int(await ws.get_message())


async def pids_serving(server: Supervised, expected: set[int], attempts: int = 300) -> set[int]:
    """Connect until every pid of ``expected`` has served a connection (bounded)."""
    seen: set[int] = set()
    for _ in range(attempts):
        seen.add(await who(server))
        if expected <= seen:
            break
    return seen


async def test_n_workers_serve_one_port_and_stop_cleanly(tmp_path: Path) -> None:
    async with supervised(TARGET, "--workers", "3") as server:
        await server.wait_for(lambda: len(server.workers) == 3)
        workers = set(server.workers)
        assert await pids_serving(server, workers) == workers
        # HTTP too; each worker has the supervisor's metrics directory.
        answer = (await http_get(server.port, "/pid")).split(b"\r\n\r\n", 1)[1].decode()
        pid, metrics_dir = answer.split(" ")
        assert int(pid) in workers
        assert metrics_dir and await trio.Path(metrics_dir).is_dir()
        url = f"ws://127.0.0.1:{server.port}/who"
        with trio.fail_after(TIMEOUT):
            async with open_websocket_url(url) as ws:
                await ws.get_message()
                server.process.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1001
        assert await server.exit_status() == 0
        assert not await wait_gone(list(workers))
        assert not await trio.Path(metrics_dir).exists()


async def test_a_killed_worker_is_restarted() -> None:
    async with supervised(TARGET, "--workers", "2") as server:
        await server.wait_for(lambda: len(server.workers) == 2)
        victim = server.workers[0]
        # A live gauge of the victim (prometheus-client's multiprocess file naming):
        # the supervisor drops it when the worker dies.
        answer = (await http_get(server.port, "/pid")).split(b"\r\n\r\n", 1)[1].decode()
        gauge = trio.Path(answer.split(" ")[1]) / f"gauge_livesum_{victim}.db"
        await gauge.write_bytes(b"")
        os.kill(victim, signal.SIGKILL)
        await server.wait_for_line(f"(pid {victim}) exited with status -9: restarting it")
        assert not await gauge.exists()
        await server.wait_for(lambda: len(server.workers) == 3)
        replacement = server.workers[2]
        expected = {server.workers[1], replacement}
        assert await pids_serving(server, expected) == expected
        server.process.send_signal(signal.SIGINT)
        assert await server.exit_status() == 0


async def test_a_crash_loop_backs_off_and_recovers(tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    os.environ["TRIOWS_TEST_FAIL_FILE"] = str(flag)
    try:
        async with supervised(TARGET, "--workers", "1") as server:
            await server.wait_for(lambda: len(server.workers) == 1)
            flag.touch()
            os.kill(server.workers[0], signal.SIGKILL)
            await server.wait_for_line("restarting it in 0.5 s")
            # Each failed start doubles the delay.
            await server.wait_for_line("trying again in 1.0 s")
            await server.wait_for_line("trying again in 2.0 s")
            flag.unlink()
            await server.wait_for(lambda: len(server.workers) == 2, timeout=20)
            assert await who(server) == server.workers[1]
            server.process.send_signal(signal.SIGTERM)
            assert await server.exit_status() == 0
    finally:
        del os.environ["TRIOWS_TEST_FAIL_FILE"]


async def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    argv = [sys.executable, "-m", "triows", "run", TARGET, "--port", "0", "--workers", "2"]
    with trio.fail_after(STARTUP_TIMEOUT):
        result = await trio.run_process(
            argv, cwd=ROOT, env={**os.environ, "TRIOWS_TEST_FAIL_FILE": str(flag)},
            stdin=subprocess.DEVNULL, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 1, output
    assert re.search(r"worker \d \(pid \d+\) did not start: it exited with status 1", output)
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)]
    assert pids and not await wait_gone(pids)


class Reconnecting:
    """A client of ``/who`` that reconnects as soon as the server closes it, and
    records every close code and every failed connection attempt."""

    def __init__(self, port: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/who"
        self.codes: list[int] = []
        self.failures: list[str] = []
        self.pids: list[int] = []
        self.connected = trio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with open_websocket_url(self.url, connect_timeout=TIMEOUT) as ws:
                    await self.serve(ws)
            except ConnectionClosed as closed:
                assert closed.reason is not None
                self.codes.append(closed.reason.code)
            except OSError as exc:  # refused, reset, or a refused handshake (503)
                self.failures.append(repr(exc))
                await trio.sleep(0.1)

    async def wait_on(self, pids: set[int]) -> None:
        """Wait until this client is connected to one of ``pids``."""
        while self.pids[-1] not in pids:
            self.connected = trio.Event()
            await self.connected.wait()

    async def serve(self, ws: WebSocketConnection) -> None:
        self.pids.append(int(await ws.get_message()))
        self.connected.set()
        while True:
            await ws.get_message()


async def test_sighup_rolls_every_worker_without_refusing_a_reconnecting_client() -> None:
    async with supervised(TARGET, "--workers", "2", "--drain-seconds", "1") as server:
        await server.wait_for(lambda: len(server.workers) == 2)
        old = set(server.workers)
        clients = [Reconnecting(server.port) for _ in range(8)]
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(client.run)
            with trio.fail_after(TIMEOUT):
                for client in clients:
                    await client.connected.wait()
            server.process.send_signal(signal.SIGHUP)
            await server.wait_for_line("rolling restart done", timeout=30)
            assert not await wait_gone(list(old))
            new = set(server.workers) - old
            assert len(new) == 2
            # Every client is back, on a new worker.
            with trio.fail_after(TIMEOUT):
                for client in clients:
                    await client.wait_on(new)
            nursery.cancel_scope.cancel()
        for client in clients:
            assert client.failures == []
            assert client.codes and set(client.codes) == {1012}
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0


async def test_the_hypercorn_backend_runs_workers_and_rolls_them_too() -> None:
    options = ("--workers", "2", "--backend", "hypercorn", "--drain-seconds", "0.5")
    async with supervised(TARGET, *options) as server:
        await server.wait_for(lambda: len(server.workers) == 2)
        old = set(server.workers)
        assert await pids_serving(server, old) == old
        client = Reconnecting(server.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            with trio.fail_after(TIMEOUT):
                await client.connected.wait()
            server.process.send_signal(signal.SIGHUP)
            await server.wait_for_line("rolling restart done", timeout=30)
            new = set(server.workers) - old
            with trio.fail_after(TIMEOUT):
                await client.wait_on(new)
            nursery.cancel_scope.cancel()
        assert client.failures == []
        assert client.codes and set(client.codes) == {1012}
        assert not await wait_gone(list(old))
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_status() == 0


async def test_workers_do_not_outlive_a_killed_supervisor() -> None:
    async with supervised(TARGET, "--workers", "2") as server:
        await server.wait_for(lambda: len(server.workers) == 2)
        workers = list(server.workers)
        server.process.kill()  # no forwarding: PR_SET_PDEATHSIG sends them SIGTERM
        assert await server.exit_status() == -signal.SIGKILL
        # Each shuts down as on SIGTERM (no client: at once), well within its bound.
        assert not await wait_gone(workers, timeout=TIMEOUT)
