"""The send and receive paths' cancellation and scheduling rule (``triows._connection._pacing``).

Every send is a cancel point (Cancelled before anything is written) and a
schedule point only when the server has to wait or once the run's slice
(about 1 ms) has passed since the send or receive path last forced a yield;
``receive()`` follows the same rule (a message already buffered is taken
without yielding on the native server).  Each rule is checked
in memory (the TestClient, whose sends always wait on a channel) and on every
real backend (native over plain TCP, where a send the kernel takes at once does
not yield; native over TLS; hypercorn).  No wall-clock speed assertions: the
loops count how many sends happen between another task's wake-ups.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

import triows
from triows import Broadcast, WebSocket
from triows._connection._pacing import SEND_SLICE_NS, Pace, current_pace
from triows.testing import TestClient

from .conftest import Backend
from .raw_client import frame, upgraded

#: The loop's length; the other task must run at least once within it.
LOOP = 10_000

Send = Callable[[WebSocket, str], Awaitable[None]]

#: Every send variant that goes through the send path, by name.
SENDS: dict[str, Send] = {
    "send": lambda ws, text: ws.send(text),
    "send_text": lambda ws, text: ws.send_text(text),
    "send_bytes": lambda ws, text: ws.send_bytes(text.encode()),
    "send_json": lambda ws, text: ws.send_json(text),
    "send_many": lambda ws, text: ws.send_many([text]),
    "send(Broadcast)": lambda ws, text: ws.send(Broadcast(text)),
    "send_event": lambda ws, text: ws.send_event({"type": "websocket.send", "text": text}),
}


def as_text(message: str | bytes) -> str:
    """A message as text, whichever frame type the variant sent (send_bytes: binary)."""
    if isinstance(message, bytes):
        return message.decode()
    return message.strip('"')  # send_json's JSON string


def add_cancelled(app: triows.App, report: dict[str, Any]) -> None:
    @app.websocket_route("/cancelled")
    async def cancelled(ws: WebSocket) -> None:
        raised: dict[str, bool] = {}
        for name, send in SENDS.items():
            with trio.CancelScope() as scope:
                scope.cancel()
                try:
                    await send(ws, f"lost by {name}")
                except trio.Cancelled:
                    raised[name] = True
                    raise
        report["raised"] = raised
        await ws.send("end")


def add_loop(app: triows.App, report: dict[str, Any]) -> None:
    @app.websocket_route("/loop/{variant}")
    async def loop(ws: WebSocket, variant: str) -> None:
        send = SENDS[variant]
        sent = 0
        wakes: list[int] = []  # how many sends had happened at each wake-up of the ticker

        async def ticker(task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            while True:
                await trio.lowlevel.checkpoint()
                wakes.append(sent)

        async with trio.open_nursery() as nursery:
            await nursery.start(ticker)
            start = len(wakes)
            for _ in range(LOOP):
                await send(ws, "x")
                sent += 1
            report["wakes"] = [0, *wakes[start:], sent]
            nursery.cancel_scope.cancel()
        await ws.send("end")


class Ticker:
    """Another task that counts its wake-ups (each one a pass of the scheduler)."""

    def __init__(self) -> None:
        self.woke = 0

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            await trio.lowlevel.checkpoint()
            self.woke += 1


def add_no_yield(app: triows.App, report: dict[str, Any]) -> None:
    @app.websocket_route("/no-yield")
    async def no_yield(ws: WebSocket) -> None:
        pace = current_pace()
        due, pace.due = pace.due, time.perf_counter_ns() + 3600 * 10**9  # no slice ends
        ticker = Ticker()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(ticker.run)
                start = ticker.woke
                for _ in range(100):
                    await ws.send("x")
                report["woke"] = ticker.woke - start
                nursery.cancel_scope.cancel()
        finally:
            pace.due = due
        await ws.send("end")


def add_cancel_mid_loop(app: triows.App, report: dict[str, Any]) -> None:
    @app.websocket_route("/cancel-mid-loop/{by}")
    async def cancel_mid_loop(ws: WebSocket, by: str) -> None:
        sent = 0

        async def canceller() -> None:
            while sent < 100:
                await trio.lowlevel.checkpoint()
            report["cancelled_at"] = sent
            loop_scope.cancel()

        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as loop_scope:
                if by == "another-task":
                    nursery.start_soon(canceller)
                for _ in range(20 * LOOP):  # bounded: the cancellation must stop it
                    if by == "itself" and sent == 100:
                        report["cancelled_at"] = sent
                        loop_scope.cancel()
                    await ws.send(str(sent))
                    sent += 1
        report["loop_ended_at"] = sent
        await ws.send("end")


def add_slow_reader(app: triows.App, report: dict[str, Any]) -> None:
    @app.websocket_route("/slow-reader")
    async def slow_reader(ws: WebSocket) -> None:
        chunk = b"x" * 65536
        report["sending"] = False
        try:
            for count in range(4096):  # 256 MiB at most: far past any socket buffer
                report["sending"], report["sent"] = True, count
                await ws.send_bytes(chunk)
                report["sending"] = False
            report["sent"] = 4096
        except triows.WebSocketDisconnect:
            report["outcome"] = "disconnect"
            raise
        except trio.Cancelled:
            report["outcome"] = "cancelled"
            raise


def add_burst(app: triows.App, report: dict[str, Any]) -> None:
    @app.websocket_route("/burst/{count}")
    async def burst(ws: WebSocket, count: int) -> None:
        received = [await ws.receive()]  # waits for the burst's first bytes
        # That wait parked, which moved the run's stamp a slice (1 ms) ahead.  A test
        # that made the slice endless ("endless" in the report) gets it endless again,
        # or the operating system pausing this process for a millisecond (a busy
        # machine) would end the slice and force a yield.
        pace = current_pace()
        due = pace.due
        if report.get("endless"):
            pace.due = time.perf_counter_ns() + 3600 * 10**9
        wakes: list[int] = []  # how many messages had been received at each wake-up

        async def ticker(task_status: trio.TaskStatus[None]) -> None:
            task_status.started()
            while True:
                await trio.lowlevel.checkpoint()
                wakes.append(len(received))

        async with trio.open_nursery() as nursery:
            await nursery.start(ticker)
            start = len(wakes)
            while len(received) < count:
                received.append(await ws.receive())
            report["wakes"] = [1, *wakes[start:], len(received)]
            nursery.cancel_scope.cancel()
        if report.get("endless"):
            pace.due = due
        report["received"] = received
        await ws.send("end")


def add_stamp(app: triows.App, report: dict[str, Any]) -> None:
    @app.websocket_route("/stamp")
    async def stamp(ws: WebSocket) -> None:
        pace = current_pace()
        await ws.send("ready")
        far = time.perf_counter_ns() + 3600 * 10**9
        pace.due = far  # no slice ends, unless a wait moves the stamp
        await ws.receive()  # the client sends 50 ms after "ready": this waits
        report["moved"] = pace.due < far
        pace.due = 0  # always due: a send forces a yield, where the transport has them
        for _ in range(10):
            await ws.send("x")
        report["forced"] = pace.due != 0
        pace.due = time.perf_counter_ns()
        await ws.send("end")


def pacing_app() -> tuple[triows.App, dict[str, Any]]:
    """The views of every test here, and what they report."""
    app = triows.App()
    report: dict[str, Any] = {}
    for add in (
        add_burst,
        add_cancelled,
        add_loop,
        add_no_yield,
        add_cancel_mid_loop,
        add_slow_reader,
        add_stamp,
    ):
        add(app, report)
    return app, report


def check_cancelled(report: dict[str, Any], first: str | bytes) -> None:
    assert report["raised"] == dict.fromkeys(SENDS, True)
    assert first == "end", f"a cancelled send wrote {first!r}"


def check_loop(report: dict[str, Any], received: list[str]) -> None:
    assert received == ["x"] * LOOP + ["end"]
    gaps = [b - a for a, b in zip(report["wakes"], report["wakes"][1:], strict=False)]
    assert len(report["wakes"]) > 2, "the other task never ran during the loop"
    assert max(gaps) < LOOP, gaps


def check_mid_loop(
    report: dict[str, Any], received: list[str], by: str, *, broken: bool = False
) -> None:
    # A task cancelling the loop runs where a send yields: between two sends (a
    # forced yield, after the write) or inside one that waits, which then finishes
    # its message.  Either way the next send raises, having written nothing.
    at, ended = report["cancelled_at"], report["loop_ended_at"]
    assert ended in ((at,) if by == "itself" else (at, at + 1)), (at, ended)
    sent = [str(n) for n in range(ended)]
    if broken:
        # Native TLS: a send cancelled inside trio's SSLStream.send_all breaks the
        # TLS stream (trio cannot tell how much it sent), so "end" cannot follow.
        assert received in (sent, [*sent, "end"]), received[-3:]
    else:
        assert received == [*sent, "end"], received[-3:]


# -- in memory (TestClient) -------------------------------------------------------------


async def test_a_cancelled_send_writes_nothing_in_memory() -> None:
    app, report = pacing_app()
    async with TestClient(app) as client, client.websocket_connect("/cancelled") as ws:
        check_cancelled(report, await ws.receive())


@pytest.mark.parametrize("variant", ["send", "send_many", "send_bytes"])
async def test_a_send_loop_lets_other_tasks_run_in_memory(variant: str) -> None:
    app, report = pacing_app()
    async with TestClient(app) as client, client.websocket_connect(f"/loop/{variant}") as ws:
        received = [as_text(await ws.receive()) for _ in range(LOOP + 1)]
    check_loop(report, received)


@pytest.mark.parametrize("by", ["itself", "another-task"])
async def test_cancellation_mid_loop_stops_at_the_next_send_in_memory(by: str) -> None:
    app, report = pacing_app()
    async with TestClient(app) as client, client.websocket_connect(f"/cancel-mid-loop/{by}") as ws:
        received: list[str] = []
        while not received or received[-1] != "end":
            received.append(as_text(await ws.receive()))
    check_mid_loop(report, received, by)


# -- real sockets (every backend) -----------------------------------------------------------


@asynccontextmanager
async def served_pacing_app(backend: Backend) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    app, report = pacing_app()
    with trio.fail_after(30):
        async with backend.serve(app) as served:
            yield served, report


async def test_a_cancelled_send_writes_nothing(backend: Backend) -> None:
    async with served_pacing_app(backend) as (served, report), served.connect("/cancelled") as ws:
        check_cancelled(report, await ws.get_message())


@pytest.mark.parametrize("variant", ["send", "send_many", "send_bytes"])
async def test_a_send_loop_lets_other_tasks_run(backend: Backend, variant: str) -> None:
    async with (
        served_pacing_app(backend) as (served, report),
        served.connect(f"/loop/{variant}") as ws,
    ):
        received = [as_text(await ws.get_message()) for _ in range(LOOP + 1)]
    check_loop(report, received)


@pytest.mark.parametrize("by", ["itself", "another-task"])
async def test_cancellation_mid_loop_stops_at_the_next_send(backend: Backend, by: str) -> None:
    async with (
        served_pacing_app(backend) as (served, report),
        served.connect(f"/cancel-mid-loop/{by}") as ws,
    ):
        received: list[str] = []
        with contextlib.suppress(ConnectionClosed):
            while not received or received[-1] != "end":
                received.append(as_text(await ws.get_message()))
    broken = backend.name == "native-tls" and by == "another-task"
    check_mid_loop(report, received, by, broken=broken)


async def test_a_send_the_kernel_takes_at_once_does_not_yield(backend: Backend) -> None:
    # Within the slice, a send on the native server over plain TCP is written by
    # the view's own task without a pass of the scheduler; over TLS and under
    # hypercorn the server's send waits (yields) every time.
    async with served_pacing_app(backend) as (served, report), served.connect("/no-yield") as ws:
        received = [await ws.get_message() for _ in range(101)]
    assert received == ["x"] * 100 + ["end"]
    if backend.name == "native":
        assert report["woke"] == 0
    else:
        assert report["woke"] >= 100


async def test_a_send_to_a_slow_reader_blocks_and_yields(backend: Backend) -> None:
    async with served_pacing_app(backend) as (served, report):
        async with upgraded(served, "/slow-reader"):
            # The client never reads.  Once every task of this run is blocked, the
            # view's send is waiting for room in the socket (it yielded: this task
            # runs), with part of its 256 MiB sent.
            await trio.testing.wait_all_tasks_blocked()
            assert report["sending"] is True, report
            assert 0 < report["sent"] < 4096, report
        with trio.fail_after(5):
            while "outcome" not in report:  # noqa: ASYNC110 (the view reports when it ends)
                await trio.sleep(0.01)
    assert report["outcome"] in ("disconnect", "cancelled")


async def send_burst(served: Any, count: int) -> None:
    """``count`` messages in one write from a raw client, then wait for the view's "end"."""
    burst = b"".join(frame(0x1, str(n).encode()) for n in range(count))
    async with upgraded(served, f"/burst/{count}") as stream:
        await stream.send_all(burst)
        answer = b""
        while b"\x81\x03end" not in answer:
            chunk = await stream.receive_some(65536)
            assert chunk, answer[-50:]
            answer += chunk


async def test_buffered_messages_are_received_without_yielding(backend: Backend) -> None:
    # 100 small messages in one write: the native view reads them in one read and
    # takes the other 99 from its inbox without a pass of the scheduler (within
    # the slice: made endless here); a reader task (TLS) or hypercorn yields.
    async with served_pacing_app(backend) as (served, report):
        pace = current_pace()
        due, pace.due = pace.due, time.perf_counter_ns() + 3600 * 10**9
        report["endless"] = True  # and again in the view, after its first receive
        try:
            await send_burst(served, 100)
        finally:
            pace.due = due
    assert report["received"] == [str(n) for n in range(100)]
    if backend.name == "native":
        assert report["wakes"] == [1, 100], "a buffered message yielded"


async def test_a_receive_loop_lets_other_tasks_run(backend: Backend) -> None:
    # A client that floods: the view's receive loop never has to wait on the
    # native server (64 KiB reads), and still lets another task run.
    async with served_pacing_app(backend) as (served, report):
        await send_burst(served, LOOP)
    assert report["received"] == [str(n) for n in range(LOOP)]
    wakes = report["wakes"]
    gaps = [b - a for a, b in itertools.pairwise(wakes)]
    assert len(wakes) > 2, "the other task never ran during the loop"
    assert max(gaps) < LOOP, gaps


async def test_buffered_messages_keep_their_order_in_memory() -> None:
    app, report = pacing_app()
    async with TestClient(app) as client, client.websocket_connect("/burst/100") as ws:
        for n in range(100):
            await ws.send_text(str(n))
        assert await ws.receive() == "end"
    assert report["received"] == [str(n) for n in range(100)]


# -- the stamp ------------------------------------------------------------------------------


async def test_the_pace_is_one_per_trio_run() -> None:
    pace = current_pace()
    assert current_pace() is pace
    before = time.perf_counter_ns()
    pace.yielded()
    assert pace.due >= before + SEND_SLICE_NS


async def test_a_receive_that_waited_moves_the_stamp(backend: Backend) -> None:
    # Native: a receive that parked until its client sent moves the run's stamp
    # (every other task ran meanwhile), and sends past the slice force yields.
    # Hypercorn: the ASGI adapter's receive and send always yield (the server's
    # own awaitables), so it forces no yield and leaves the stamp alone.
    async with served_pacing_app(backend) as (served, report), served.connect("/stamp") as ws:
        assert await ws.get_message() == "ready"
        await trio.sleep(0.05)
        await ws.send_message("go")
        received = [await ws.get_message() for _ in range(11)]
    assert received == ["x"] * 10 + ["end"]
    native = backend.name.startswith("native")
    assert (report["moved"], report["forced"]) == (native, native), report


async def test_the_asgi_adapter_forces_no_yield_in_memory() -> None:
    app, report = pacing_app()
    async with TestClient(app) as client, client.websocket_connect("/stamp") as ws:
        assert await ws.receive() == "ready"
        await trio.sleep(0.05)
        await ws.send_text("go")
        received = [await ws.receive() for _ in range(11)]
    assert received == ["x"] * 10 + ["end"]
    assert (report["moved"], report["forced"]) == (False, False), report


def test_two_trio_runs_in_two_threads_have_their_own_pace() -> None:
    paces: list[Pace] = []
    both_running = threading.Barrier(2, timeout=10)

    async def main() -> None:
        paces.append(current_pace())
        await trio.to_thread.run_sync(both_running.wait)

    threads = [threading.Thread(target=trio.run, args=(main,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(paces) == 2
    assert paces[0] is not paces[1]


async def test_an_empty_send_many_is_a_cancel_point_only() -> None:
    # Nothing to write: no pass of the scheduler, but Cancelled in a cancelled scope.
    app = triows.App()
    report: dict[str, Any] = {}

    @app.websocket_route("/empty")
    async def empty(ws: WebSocket) -> None:
        ticker = Ticker()
        async with trio.open_nursery() as nursery:
            await nursery.start(ticker.run)
            start = ticker.woke
            for _ in range(100):
                await ws.send_many([])
            report["woke"] = ticker.woke - start
            nursery.cancel_scope.cancel()
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.send_many([])
            report["not cancelled"] = True
        report["cancelled"] = scope.cancelled_caught
        await ws.send("end")

    async with TestClient(app) as client, client.websocket_connect("/empty") as ws:
        assert await ws.receive() == "end"
    assert report == {"woke": 0, "cancelled": True}
