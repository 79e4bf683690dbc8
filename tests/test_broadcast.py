"""Broadcast, WebSocket.send_many and Subscription.forward: in memory and over real sockets.

A Broadcast is encoded once per encoder and framed once (triows._connection._frames);
every transport takes batches of Prepared messages.  These tests check the bytes
that reach real clients on every backend (native, native over TLS, hypercorn),
permessage-deflate clients, departures during a batch, the one-event-per-message
path under an ASGI server, and which sends are written without blocking
(``Transport.send_now``: the native server over plain TCP only).
"""

from __future__ import annotations

import base64
import functools
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import trio
import websockets.trio.client
from trio_websocket import ConnectionClosed

import triows
from triows import Broadcast, WebSocket
from triows._asgi._adapter import ASGITransport
from triows._codecs import ENCODERS
from triows._connection._frames import Prepared, encode_frame
from triows._native._connection import NativeConnection
from triows._types import Message
from triows.testing import TestClient

from .conftest import Backend, Served
from .raw_client import handshake, open_stream


def test_broadcast_encodes_once_per_encoder() -> None:
    calls: list[object] = []

    def counting(value: Any) -> str | bytes:
        calls.append(value)
        return ENCODERS["json"](value)

    message = Broadcast({"a": 1})
    first = message.prepare(counting)
    assert message.prepare(counting) is first
    assert calls == [{"a": 1}]
    assert first.data == '{"a":1}'
    assert first.frame() is first.frame()
    assert first.frame() == b"\x81\x07" + b'{"a":1}'
    # Another encoder: a new encoding (the message is not JSON text for a text route).
    with pytest.raises(TypeError, match="send_text"):
        message.prepare(ENCODERS["text"])
    assert message.prepare(counting) is first
    text = Broadcast("x" * 200).prepare(ENCODERS["text"])
    assert text.frame() == b"\x81\x7e\x00\xc8" + b"x" * 200
    assert Prepared(b"\x00").frame() == b"\x82\x01\x00"
    assert encode_frame(b"") == b"\x82\x00"
    assert repr(Broadcast("hi")) == "Broadcast('hi')"


async def test_send_many_and_broadcast_in_memory() -> None:
    app = triows.App()
    shared = Broadcast({"n": 0})
    errors: list[str] = []

    @app.websocket_route("/j", send_type="json")
    async def view(ws: WebSocket) -> None:
        await ws.send_many([{"n": 1}, shared, [2]])
        await ws.send_many([])  # nothing to send: a checkpoint, no event
        await ws.send(shared)
        try:
            await ws.send_many(["ok", object()])
        except TypeError as exc:
            errors.append(str(exc))
        await ws.send("last")

    async with TestClient(app) as client, client.websocket_connect("/j") as ws:
        assert [await ws.receive_json() for _ in range(5)] == [
            {"n": 1},
            {"n": 0},
            [2],
            {"n": 0},
            "last",  # the failed batch sent nothing, not even "ok"
        ]
    assert errors and "not JSON serializable" in errors[0]


async def test_send_many_checks_the_state() -> None:
    app = triows.App()
    seen: list[str] = []

    @app.websocket_route("/s", auto_accept=False)
    async def view(ws: WebSocket) -> None:
        for call in (ws.send_many(["a"]), ws.send(Broadcast("a"))):
            try:
                await call
            except RuntimeError as exc:
                seen.append(str(exc))
        await ws.accept()
        await ws.close()
        try:
            await ws.send_many(["a"])
        except RuntimeError as exc:
            seen.append(str(exc))

    async with TestClient(app) as client, client.websocket_connect("/s") as ws:
        assert await ws.wait_closed() == 1000
    assert len(seen) == 3
    assert "send_many()" in seen[0] and "accept" in seen[0]
    assert "send()" in seen[1]
    assert "send_many()" in seen[2]


async def test_under_an_asgi_server_messages_go_one_by_one() -> None:
    # Any ASGI server (the App called directly): a batch is one websocket.send per message.
    app = triows.App()

    @app.websocket_route("/b")
    async def view(ws: WebSocket) -> None:
        await ws.send_many(["a", Broadcast("b")])
        await ws.send(Broadcast("c"))

    sent: list[Message] = []
    inbox: list[Message] = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        if inbox:
            return inbox.pop()
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/b", "query_string": b"", "headers": []}
    with trio.fail_after(5):
        await app(scope, receive, send)
    assert [m["type"] for m in sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.send",
        "websocket.send",
        "websocket.close",
    ]
    assert [m["text"] for m in sent[1:4]] == ["a", "b", "c"]


class _Recorder:
    """Stands in for a WebSocket: records each batch forward() sends."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    async def send_many(self, batch: list[Broadcast]) -> None:
        self.batches.append([item.message for item in batch])
        await trio.lowlevel.checkpoint()

    def try_send(self, message: Broadcast) -> bool:
        return False  # like a server without send_now: every message goes through forward()

    async def idle(self) -> bool:
        return False  # like an ASGI server: forward() parks its task until a message comes

    def wake(self) -> None:
        raise AssertionError("wake() without a pending idle()")


async def test_forward_sends_what_is_buffered_as_one_batch() -> None:
    async with triows.Hub() as hub, trio.open_nursery() as nursery:
        recorders = [_Recorder(), _Recorder()]
        async with hub.subscribe("t") as first, hub.subscribe("t") as second:
            for n in range(10):  # before the forwarders run: all buffered
                await hub.publish("t", n)
            nursery.start_soon(first.forward, cast(WebSocket, recorders[0]))
            nursery.start_soon(second.forward, cast(WebSocket, recorders[1]))
            with trio.fail_after(5):
                while not all(r.batches for r in recorders):  # noqa: ASYNC110
                    await trio.sleep(0.001)
            await hub.publish("t", "late")
            with trio.fail_after(5):
                while not all(len(r.batches) == 2 for r in recorders):  # noqa: ASYNC110
                    await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
        for recorder in recorders:
            assert recorder.batches == [list(range(10)), ["late"]]


async def test_forward_raises_slow_consumer() -> None:
    hub = triows.Hub(max_buffer=2, on_overflow="disconnect")
    async with hub, hub.subscribe("t") as subscription:
        for n in range(3):
            await hub.publish("t", n)
        with pytest.raises(triows.SlowConsumer, match="fell 2 messages behind"):
            await subscription.forward(cast(WebSocket, _Recorder()))


# -- over real sockets: every test runs on every backend (native, native-tls, hypercorn) --


def _fanout_app() -> tuple[triows.App, triows.Hub]:
    """/sub forwards the hub topic "t"; /batch sends a batch with a Broadcast in it."""
    hub = triows.Hub(max_buffer=1000)
    app = triows.App(hub=hub)

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages:
            await ws.send("subscribed")
            await messages.forward(ws)

    @app.websocket_route("/batch")
    async def batch(ws: WebSocket) -> None:
        shared = Broadcast("shared")
        await ws.send_many(["one", "two", shared, "x" * 70_000])
        await ws.send(shared)
        await ws.receive()

    return app, hub


def _websockets_connect(
    served: Served, path: str, **options: Any
) -> websockets.trio.client.connect:
    """A websockets (not trio-websocket) client of ``path``, over TLS when served so."""
    return websockets.trio.client.connect(served.url(path), ssl=served.ssl_context, **options)


async def test_batches_and_forward_over_real_sockets(backend: Backend) -> None:
    app, hub = _fanout_app()
    with trio.fail_after(10):
        async with backend.serve(app) as served:
            async with served.connect("/batch") as ws:
                got = [await ws.get_message() for _ in range(5)]
                assert got == ["one", "two", "shared", "x" * 70_000, "shared"]
            async with served.connect("/sub") as a, served.connect("/sub") as b:
                assert await a.get_message() == "subscribed"
                assert await b.get_message() == "subscribed"
                for n in range(300):
                    await hub.publish("t", f"m{n}")
                for client in (a, b):
                    assert [await client.get_message() for _ in range(300)] == [
                        f"m{n}" for n in range(300)
                    ]


async def test_permessage_deflate_clients(backend: Backend) -> None:
    # websockets' client offers permessage-deflate and the native backend accepts
    # it, so the shared frames cannot be used: each message is compressed per
    # connection (next to an uncompressed client of the same topic).  The
    # hypercorn backend declines it (docs/deployment.md: wsproto would inflate a
    # deflate bomb): the offering client gets plain frames.
    app, hub = _fanout_app()
    negotiated = [] if backend.name == "hypercorn" else ["permessage-deflate"]
    with trio.fail_after(10):
        async with backend.serve(app) as served:
            connect = functools.partial(_websockets_connect, served, compression="deflate")
            async with connect("/batch") as ws:
                extensions = ws.protocol.extensions
                assert [e.name for e in extensions] == negotiated
                got = [await ws.recv() for _ in range(5)]
                assert got == ["one", "two", "shared", "x" * 70_000, "shared"]
            async with connect("/sub") as deflated, connect("/sub", compression=None) as plain:
                assert await deflated.recv() == await plain.recv() == "subscribed"
                for n in range(50):
                    await hub.publish("t", f"n{n}")
                for client in (deflated, plain):
                    assert [await client.recv() for _ in range(50)] == [f"n{n}" for n in range(50)]


async def test_forward_ends_when_the_client_leaves(backend: Backend) -> None:
    hub = triows.Hub()
    app = triows.App(hub=hub)
    ended: list[BaseException] = []
    gone = trio.Event()

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages:
            await ws.send("subscribed")
            try:
                await messages.forward(ws)
            except BaseException as exc:
                ended.append(exc)
                raise
            finally:
                gone.set()

    with trio.fail_after(10):
        async with backend.serve(app) as served:
            async with served.connect("/sub") as ws:
                assert await ws.get_message() == "subscribed"
                await hub.publish("t", "one")
                assert await ws.get_message() == "one"
            await gone.wait()
            assert not hub.has_subscribers("t")
            # The server is healthy: a new subscriber gets new messages.
            async with served.connect("/sub") as ws:
                assert await ws.get_message() == "subscribed"
                await hub.publish("t", "two")
                assert await ws.get_message() == "two"
    assert len(ended) >= 1
    assert isinstance(ended[0], triows.WebSocketDisconnect | trio.Cancelled)


async def _open_stalled(served: Served, path: str) -> trio.abc.Stream:
    """A raw client that completes the handshake request and then never reads."""
    stream = await open_stream(served)
    await stream.send_all(handshake(path))
    return stream


async def test_a_client_that_never_reads_costs_a_bounded_buffer(backend: Backend) -> None:
    # broadcast.md: one slow client never slows the publisher or the other
    # subscribers, and its memory is bounded by max_buffer messages.  Over real
    # sockets: 2,000 messages of 16 KiB (32 MiB, more than the kernel buffers hold)
    # to a raw client that never reads and to one that reads everything.
    hub = triows.Hub(max_buffer=50)
    app = triows.App(hub=hub)
    subscriptions: list[triows.Subscription] = []

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages:
            subscriptions.append(messages)
            await ws.send("subscribed")
            await messages.forward(ws)

    payload = "x" * 16_384
    with trio.fail_after(30):
        async with backend.serve(app) as served:
            stalled = await _open_stalled(served, "/sub")
            async with stalled, served.connect("/sub", max_message_size=32_768) as reader:
                assert await reader.get_message() == "subscribed"
                while len(subscriptions) < 2:  # noqa: ASYNC110 - bounded by fail_after
                    await trio.sleep(0.001)
                # Bursts of 25 (within max_buffer): the reader keeps up, the
                # stalled client falls behind, and nobody waits for it.
                for burst in range(0, 2000, 25):
                    for n in range(burst, burst + 25):
                        await hub.publish("t", f"{n:05d}{payload}")
                    for n in range(burst, burst + 25):
                        assert (await reader.get_message())[:5] == f"{n:05d}"
                slow = next(s for s in subscriptions if s.dropped)
                assert len(slow) <= 50
                assert slow.dropped > 1000
                fast = next(s for s in subscriptions if s is not slow)
                assert fast.dropped == 0


# -- send_now: writes that never block, on the native server over plain TCP -------------


@asynccontextmanager
async def _lagging_client(
    app: triows.App, path: str, backend: Backend, compression: str | None
) -> AsyncIterator[websockets.trio.client.ClientConnection]:
    """A websockets client of ``app`` that reads from its socket only as it is
    asked for messages (one queued at most), so the server's writes back up."""
    async with (
        backend.serve(app) as served,
        _websockets_connect(
            served, path, compression=compression, max_size=2**20, max_queue=1
        ) as ws,
    ):
        yield ws


def _counting_send_many(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the batches that go through WebSocket.send_many (the forward task's path)."""
    calls: list[int] = []
    original = WebSocket.send_many

    async def send_many(self: WebSocket, messages: Any) -> None:
        calls.append(1)
        await original(self, messages)

    monkeypatch.setattr(WebSocket, "send_many", send_many)
    return calls


def _counting_transport_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the batches written by a transport's (blocking) ``send``, on every transport:
    the native server's connection and the ASGI adapter (hypercorn)."""
    calls: list[int] = []
    for cls in (NativeConnection, ASGITransport):
        original = cls.send

        async def send(self: Any, messages: Sequence[Prepared], original: Any = original) -> None:
            calls.append(len(messages))
            await original(self, messages)

        monkeypatch.setattr(cls, "send", send)
    return calls


async def test_hub_hands_messages_to_idle_subscribers_without_waking_them(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the native server over plain TCP each message is written by the
    # publishing task (try_send -> send_now): the forwarding task never wakes.
    # Over TLS only the SSL object may write, and an ASGI server frames each
    # message itself, so there every message takes the forward task's path.
    calls = _counting_send_many(monkeypatch)
    app, hub = _fanout_app()
    with trio.fail_after(10):
        async with backend.serve(app) as served, served.connect("/sub") as ws:
            assert await ws.get_message() == "subscribed"
            for n in range(20):
                await hub.publish("t", f"m{n}")
                assert await ws.get_message() == f"m{n}"
    assert len(calls) == (0 if backend.name == "native" else 20)


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_direct_writes_and_the_views_own_sends_never_interleave(
    backend: Backend, compression: str | None
) -> None:
    # A client that stops reading while the hub publishes 13 MiB: on plain
    # native TCP the first messages are written by the publishing task until the
    # kernel buffers are full, one leaves a tail (written first by the
    # connection's next writer), and the rest queue in the subscription.  Then
    # the view sends 3 MiB of its own.  Once the client reads, every frame must
    # be whole and in order.
    hub = triows.Hub(max_buffer=1000)
    app = triows.App(hub=hub)
    subscribed, own_turn = trio.Event(), trio.Event()

    @app.websocket_route("/mixed")
    async def mixed(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages, trio.open_nursery() as nursery:
            nursery.start_soon(messages.forward, ws)
            subscribed.set()
            await own_turn.wait()
            for n in range(50):
                await ws.send(f"own{n:03d}" + own_payload)
            await trio.sleep_forever()

    # Incompressible enough that permessage-deflate does not shrink it away.
    own_payload = base64.b64encode(random.Random(1).randbytes(49_152)).decode()
    hub_payload = base64.b64encode(random.Random(2).randbytes(49_152)).decode()
    with trio.fail_after(30):
        async with _lagging_client(app, "/mixed", backend, compression) as ws:
            await subscribed.wait()
            for n in range(200):
                await hub.publish("t", f"hub{n:03d}" + hub_payload)
            own_turn.set()
            own: list[str] = []
            published: list[str] = []
            while len(own) < 50 or len(published) < 200:
                message = await ws.recv()
                assert isinstance(message, str)
                if message.startswith("own"):
                    assert message[6:] == own_payload
                    own.append(message[:6])
                else:
                    assert message[6:] == hub_payload
                    published.append(message[:6])
            assert own == [f"own{n:03d}" for n in range(50)]
            assert published == [f"hub{n:03d}" for n in range(200)]


async def test_sends_write_directly_unless_the_server_cannot(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # send(), send_text() and send_many() to an idle connection go through
    # send_now on the native server over plain TCP: Transport.send is never
    # called.  Over TLS (NativeConnection.send) and under hypercorn (the ASGI
    # adapter's send) every one of them goes through send, a batch per call.
    calls = _counting_transport_sends(monkeypatch)
    app = triows.App()

    @app.websocket_route("/talk")
    async def talk(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(f"send:{message}")
            await ws.send_text(f"text:{message}")
            await ws.send_many([f"many:{message}", Broadcast("shared")])

    with trio.fail_after(10):
        async with backend.serve(app) as served, served.connect("/talk") as ws:
            for n in range(10):
                await ws.send_message(str(n))
                assert [await ws.get_message() for _ in range(4)] == [
                    f"send:{n}",
                    f"text:{n}",
                    f"many:{n}",
                    "shared",
                ]
    if backend.name == "native":
        assert calls == []
    else:
        assert calls == [1, 1, 2] * 10


async def test_a_message_one_subscriber_cannot_encode_fails_only_that_view(
    backend: Backend,
) -> None:
    # The publisher writes to idle subscribers itself; an encoding error must
    # still surface in the subscriber's own view (1011), not in publish().
    hub = triows.Hub()
    app = triows.App(hub=hub)
    errors: list[BaseException] = []

    @app.websocket_route("/text")
    async def text(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages:
            await ws.send("subscribed")
            await messages.forward(ws)

    @app.websocket_route("/bytes", send_type="bytes")
    async def binary(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages:
            await ws.send(b"subscribed")
            try:
                await messages.forward(ws)
            except TypeError as exc:
                errors.append(exc)
                raise

    with trio.fail_after(10):
        async with (
            backend.serve(app) as served,
            served.connect("/text") as reader,
            served.connect("/bytes") as strict,
        ):
            assert await reader.get_message() == "subscribed"
            assert await strict.get_message() == b"subscribed"
            await hub.publish("t", "a str, not bytes")  # does not raise here
            assert await reader.get_message() == "a str, not bytes"
            with pytest.raises(ConnectionClosed) as closed:
                await strict.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1011
            await hub.publish("t", "still served")
            assert await reader.get_message() == "still served"
    assert len(errors) == 1


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_concurrent_senders_of_mixed_sizes_keep_every_frame_whole(
    backend: Backend, compression: str | None
) -> None:
    # Four tasks of one view send 150 messages each, from 1 byte to 96 KiB, to a
    # client that reads in bursts: direct writes, tails, lock waits and ordinary
    # writes all interleave.  Each task's messages arrive whole and in its order.
    app = triows.App()
    rng = random.Random(7)
    sizes = [rng.choice([1, 100, 4_000, 30_000, 98_304]) for _ in range(150)]
    blob = base64.b64encode(random.Random(3).randbytes(98_304)).decode()

    @app.websocket_route("/many")
    async def many(ws: WebSocket) -> None:
        async def sender(task: int) -> None:
            for n, size in enumerate(sizes):
                await ws.send(f"{task}:{n:03d}:" + blob[:size])

        async with trio.open_nursery() as nursery:
            for task in range(4):
                nursery.start_soon(sender, task)
        await ws.receive()

    with trio.fail_after(30):
        async with _lagging_client(app, "/many", backend, compression) as ws:
            seen: dict[int, list[int]] = {task: [] for task in range(4)}
            for count in range(4 * len(sizes)):
                if count % 100 == 0:
                    await trio.sleep(0.02)  # fall behind now and then
                message = await ws.recv()
                assert isinstance(message, str)
                task, n, payload = message.split(":", 2)
                assert payload == blob[: sizes[int(n)]]
                seen[int(task)].append(int(n))
            await ws.send("done")
            assert all(numbers == list(range(len(sizes))) for numbers in seen.values())
