"""Draining (``App.drain``, SIGHUP of ``triows run``): 503 for new handshakes,
1012 for open WebSockets in jittered batches spread over the drain's seconds.
Real sockets on every backend, the schedule in memory, the CLI as a process."""

from __future__ import annotations

import signal

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

import triows
import triows.testing
from triows._serving._drain import TICK, close_in_batches

from .conftest import Backend
from .workers import TIMEOUT, supervised, wait_gone

CLIENTS = 20
DRAIN = 1.0


def waiting_app() -> triows.App:
    app = triows.App()

    @app.websocket_route("/ws")
    async def ws_view(ws: triows.WebSocket) -> None:
        await ws.send("hello")
        async for _ in ws:
            pass

    return app


async def test_drain_closes_every_client_with_1012_spread_over_time_and_refuses_new_ones(
    backend: Backend,
) -> None:
    app = waiting_app()
    closes: list[tuple[float, int, str]] = []
    async with backend.serve(app) as served:

        async def client(task_status: trio.TaskStatus[None]) -> None:
            async with served.connect("/ws") as ws:
                assert await ws.get_message() == "hello"
                task_status.started()
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
            assert closed.value.reason is not None
            closes.append(
                (trio.current_time(), closed.value.reason.code, closed.value.reason.reason or "")
            )

        with trio.fail_after(TIMEOUT + DRAIN):
            async with trio.open_nursery() as nursery:
                for _ in range(CLIENTS):
                    await nursery.start(client)
                began = trio.current_time()
                nursery.start_soon(app.drain, DRAIN)
                await trio.lowlevel.checkpoint()
                with pytest.raises(ConnectionRejected) as refused:
                    async with served.connect("/ws"):
                        pass
                assert refused.value.status_code == 503
                assert (b"retry-after", b"1") in refused.value.headers
        ended = trio.current_time()
    assert [code for _, code, _ in closes] == [1012] * CLIENTS
    assert {reason for _, _, reason in closes} == {"service restart"}
    times = sorted(at - began for at, _, _ in closes)
    # Spread over the drain's second (generous bounds for a loaded machine): not all
    # at once, none before the drain, the last within the drain and some slack.
    assert times[-1] - times[0] >= 0.4 * DRAIN
    assert times[0] >= 0
    assert times[-1] <= DRAIN + 1.0
    assert ended - began <= DRAIN + 2.0


async def test_drain_with_no_client_returns_at_once_and_a_second_drain_is_an_error() -> None:
    app = waiting_app()
    async with triows.testing.live_server(app):
        with trio.fail_after(1):
            await app.drain(10.0)
        with pytest.raises(RuntimeError, match="drain\\(\\) called while a drain is under way"):
            await app.drain(10.0)


async def test_batches_are_jittered_ordered_and_within_the_period() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    times: list[float] = []

    async def run() -> int:
        start = trio.current_time()
        batches = await close_in_batches(
            range(1000), 2.0, lambda _: times.append(trio.current_time() - start)
        )
        return batches

    # (A nested run with a mock clock: the schedule, without real sleeping.)
    batches = await trio.to_thread.run_sync(lambda: trio.run(run, clock=clock))
    assert batches == int(2.0 / TICK)
    assert len(times) == 1000
    assert times == sorted(times)
    assert times[0] >= 0 and times[-1] < 2.0
    moments = sorted(set(times))
    assert len(moments) == batches
    slot = 2.0 / batches
    # Each batch within its own slot, at a random place in it.
    assert all(index * slot <= at < (index + 1) * slot for index, at in enumerate(moments))
    assert len({round((at % slot) / slot, 2) for at in moments}) > batches // 4


async def test_triows_run_drains_on_sighup_then_exits_cleanly() -> None:
    async with supervised("tests.worker_app:app", "--drain-seconds", "0.5") as server:
        url = f"ws://127.0.0.1:{server.port}/who"
        with trio.fail_after(TIMEOUT):
            async with open_websocket_url(url) as ws:
                await ws.get_message()
                server.process.send_signal(signal.SIGHUP)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1012
        await server.wait_for_line("SIGHUP, draining")
        assert await server.exit_status() == 0
        assert not await wait_gone([server.process.pid])
