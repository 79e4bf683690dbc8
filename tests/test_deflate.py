"""permessage-deflate on real sockets: shared compression, negotiation, round trips.

The native server answers every permessage-deflate offer with
``server_no_context_takeover`` (RFC 7692 7.1.1.1), so a message compresses to
the same bytes for every client with the same server window: a Broadcast, a
hub delivery or a live-route frame is compressed once per window size,
however many compressed clients get it (``triows_deflate_messages_total``
counts it).  The hypercorn backend does not negotiate the extension at all.
Clients: websockets' (which inflates and checks what it gets), raw sockets
(which see the frames' bytes) and Chromium (which must accept the answer it did
not ask for).
"""

from __future__ import annotations

import functools
import json
import random
import threading
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import websockets.trio.client
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

import triows
from triows import Broadcast, WebSocket
from triows._connection._frames import Prepared

from .browser import chromium
from .conftest import Backend, Served
from .live_apps import Frames
from .raw_client import frame, handshake, http_get, open_stream
from .test_metrics import samples

#: Text and binary messages, short and long, compressible and not; a message
#: repeated, which the client (context takeover) compresses against the first.
TEXTS = ["", "a", "hi there", "é" * 3000, "x" * 70_000, "chat line " * 20_000]
TEXTS += ["the same words again " * 50] * 3
BINARIES = [b"", b"\x00", random.Random(7).randbytes(100_000), bytes(range(256)) * 400]


def compression_app() -> tuple[triows.App, triows.Hub]:
    """/echo and /bytes echo; /sub forwards hub topic "t"; /batch sends a batch."""
    hub = triows.Hub(max_buffer=1000)
    app = triows.App(hub=hub, metrics=True, max_message_size=2 * 1024 * 1024)

    @app.websocket_route("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/bytes", value_type="bytes")
    async def echo_bytes(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket_route("/sub")
    async def sub(ws: WebSocket, hub: triows.Hub) -> None:
        async with hub.subscribe("t") as messages:
            await ws.send("subscribed")
            await messages.forward(ws)

    @app.websocket_route("/batch")
    async def batch(ws: WebSocket) -> None:
        shared = Broadcast("shared " * 100)
        await ws.send_many(["one", shared, "x" * 70_000])
        await ws.send(shared)
        await ws.receive()

    return app, hub


def connect(served: Served, path: str, **options: Any) -> websockets.trio.client.connect:
    """A websockets client offering permessage-deflate (its default)."""
    options.setdefault("max_size", 4 * 1024 * 1024)
    return websockets.trio.client.connect(served.url(path), ssl=served.ssl_context, **options)


async def compressions(served: Served) -> float:
    """The server's ``triows_deflate_messages_total``, scraped from /metrics."""
    response = await http_get(served, "/metrics")
    return samples(response.decode())["triows_deflate_messages_total"]


async def test_messages_round_trip_compressed(backend: Backend) -> None:
    app, _ = compression_app()
    with trio.fail_after(30):
        async with backend.serve(app) as served:
            for path, messages in (("/echo", TEXTS), ("/bytes", BINARIES)):
                async with connect(served, path) as ws:
                    assert ws.response is not None
                    answer = ws.response.headers.get("Sec-WebSocket-Extensions")
                    if backend.name == "hypercorn":
                        # Not negotiated (docs/deployment.md): plain frames both ways.
                        assert answer is None and ws.protocol.extensions == []
                    else:
                        assert answer == (
                            "permessage-deflate; server_no_context_takeover; "
                            "server_max_window_bits=12; client_max_window_bits=12"
                        )
                        (extension,) = ws.protocol.extensions
                        assert extension.remote_no_context_takeover  # type: ignore[attr-defined]
                    for message in messages:
                        await ws.send(message)
                        assert await ws.recv() == message
            # A batch with a Broadcast in it, sent twice (once in the batch).
            async with connect(served, "/batch") as ws:
                got = [await ws.recv() for _ in range(4)]
                assert got == ["one", "shared " * 100, "x" * 70_000, "shared " * 100]


@pytest.mark.parametrize(
    "offer",
    [
        # What Chromium offers, and the RFC's other forms.
        [("client_max_window_bits", None)],
        [],
        [("server_no_context_takeover", None), ("client_no_context_takeover", None)],
        [("server_max_window_bits", "10"), ("client_max_window_bits", "9")],
        [("server_max_window_bits", "15")],
    ],
)
async def test_every_offer_gets_server_no_context_takeover(
    backend: Backend, offer: list[tuple[str, str | None]]
) -> None:
    # A raw client reads the answer and the frames' bytes: RSV1 set, no context
    # (each message inflates with a fresh inflater of the negotiated window).
    app, _ = compression_app()
    params = "".join(f"; {name}" + (f"={value}" if value else "") for name, value in offer)
    with trio.fail_after(15):
        async with backend.serve(app) as served, _raw(served, "permessage-deflate" + params) as raw:
            if backend.name == "hypercorn":
                assert "sec-websocket-extensions" not in raw.answer
                return
            assert "server_no_context_takeover" in raw.answer
            bits = min(int(dict(offer).get("server_max_window_bits") or 12), 12)
            assert f"server_max_window_bits={bits}" in raw.answer
            for n in range(3):
                message = f"message {n}: " + "the same words again " * 50
                await raw.stream.send_all(_compressed(0x1, message.encode()))
                first, payload = await raw.read_frame()
                assert first == 0xC1  # FIN, RSV1 (compressed), text
                assert len(payload) < len(message)
                inflater = zlib.decompressobj(wbits=-bits)
                assert inflater.decompress(payload + b"\x00\x00\xff\xff").decode() == message


async def test_a_broadcast_is_compressed_once_for_every_client(backend: Backend) -> None:
    # 30 compressed subscribers of one topic (10 of them with a smaller server
    # window: a second parameter set) and 5 plain ones: each publish is
    # compressed once per window size, not once per subscriber.
    app, hub = compression_app()
    small_window = [ClientPerMessageDeflateFactory(server_max_window_bits=10)]
    published = [f"update {n}: " + "lorem ipsum dolor sit amet " * (n + 1) for n in range(20)]
    with trio.fail_after(30):
        async with backend.serve(app) as served, _clients(served, small_window) as clients:
            before = await compressions(served)
            for message in published:
                await hub.publish("t", message)
            for client in clients:
                assert [await client.recv() for _ in published] == published
            done = await compressions(served) - before
    assert done == (0 if backend.name == "hypercorn" else 2 * len(published))


async def test_a_compressed_client_cannot_inflate_past_the_limit(backend: Backend) -> None:
    # Inflation is bounded by max_message_size (1009), the server stays healthy.
    if backend.name == "hypercorn":
        return  # not negotiated there: test_hypercorn's deflate bomb covers it
    app, _ = compression_app()
    bomb = zlib.compressobj(wbits=-12)
    payload = bomb.compress(b"\x00" * (16 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    with trio.fail_after(15):
        async with backend.serve(app) as served:
            async with _raw(served, "permessage-deflate; client_max_window_bits") as raw:
                await raw.stream.send_all(frame(0x2, payload[:-4], rsv=4))
                first, body = await raw.read_frame()
                assert first & 0x0F == 0x8  # close
                assert int.from_bytes(body[:2], "big") == 1009
            async with connect(served, "/echo") as ws:
                await ws.send("still here " * 10)
                assert await ws.recv() == "still here " * 10


async def test_the_live_route_compresses_each_message_once(backend: Backend) -> None:
    # Five compressed live clients of one topic: the live route's message frame
    # is one Broadcast per position, so one compression per publish.
    hub = triows.Hub(history=100)
    app = triows.App(hub=hub, metrics=True)
    app.live_route("/live", hub)
    data = [{"n": n, "text": "the live route's frame " * 10} for n in range(10)]
    with trio.fail_after(30):
        async with backend.serve(app) as served, trio.open_nursery() as nursery:
            received: list[list[Any]] = []
            subscribed, all_received = trio.Semaphore(0), trio.Event()

            async def client() -> None:
                async with connect(served, "/live") as ws:
                    frames = Frames(ws.recv)
                    await ws.send(json.dumps({"type": "subscribe", "topic": "room"}))
                    await frames.until(type="subscribed")
                    subscribed.release()
                    received.append([m["data"] for m in await frames.messages("room", 10)])
                    if len(received) == 5:
                        all_received.set()

            for _ in range(5):
                nursery.start_soon(client)
            for _ in range(5):
                await subscribed.acquire()
            before = await compressions(served)
            for message in data:
                await hub.publish("room", message)
            await all_received.wait()
            done = await compressions(served) - before
    assert received == [data] * 5
    assert done == (0 if backend.name == "hypercorn" else len(data))


PAGE = """<!DOCTYPE html>
<html><head><title>deflate</title></head><body><script>
window.got = [];
window.extensions = null;
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/sub");
ws.onopen = () => { window.extensions = ws.extensions; };
ws.onmessage = (event) => { window.got.push(event.data); };
</script></body></html>"""

#: What the hub publishes to the page: short, long and compressible, non-ASCII.
PAGE_MESSAGES = ["hi", "ping " * 20_000, "é" * 5_000, '{"n": 1}', "incompressible" + "x" * 200]


def _page_in_chromium(url: str, hub: triows.Hub) -> tuple[str, list[str]]:
    """Open the page, publish PAGE_MESSAGES once it is subscribed; what it negotiated and got."""
    with chromium(ignore_https_errors=url.startswith("https:")) as browser:
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(url)
        page.wait_for_function("() => window.got.length === 1")  # "subscribed"
        for message in PAGE_MESSAGES:
            trio.from_thread.run(hub.publish, "t", message)
        page.wait_for_function(f"() => window.got.length === {1 + len(PAGE_MESSAGES)}")
        return str(page.evaluate("() => window.extensions")), list(
            page.evaluate("() => window.got")
        )


async def test_chromium_accepts_server_no_context_takeover(backend: Backend) -> None:
    # Chromium offers "permessage-deflate; client_max_window_bits" and must accept
    # server_no_context_takeover in the answer, which it did not offer; then every
    # hub message reaches the page intact (compressed on the native server).
    app, hub = compression_app()

    @app.route("/")
    async def index(request: triows.Request) -> str:
        return PAGE

    with trio.fail_after(90):
        async with backend.serve(app) as served:
            url = "http" + served.url("/").removeprefix("ws")
            extensions, got = await trio.to_thread.run_sync(_page_in_chromium, url, hub)
    if backend.name == "hypercorn":
        assert extensions == ""
    else:
        assert extensions == (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=12"
        )
    assert got == ["subscribed", *PAGE_MESSAGES]


# -- helpers ------------------------------------------------------------------------


@asynccontextmanager
async def _clients(served: Served, small_window: list[Any]) -> AsyncIterator[list[Any]]:
    """35 subscribers of /sub: 20 default, 10 with a 1 KiB server window, 5 plain."""
    async with trio.open_nursery() as nursery:
        clients: list[Any] = []
        done = trio.Event()

        async def one(**options: Any) -> None:
            async with connect(served, "/sub", **options) as ws:
                assert await ws.recv() == "subscribed"
                clients.append(ws)
                if len(clients) == 35:
                    done.set()
                await trio.sleep_forever()

        for n in range(35):
            options: dict[str, Any] = {}
            if n >= 30:
                options["compression"] = None
            elif n >= 20:
                options["extensions"] = small_window
                options["compression"] = None
            nursery.start_soon(functools.partial(one, **options))
        await done.wait()
        yield clients
        nursery.cancel_scope.cancel()


class _Raw:
    """A raw connection after the handshake: its answer (lower case) and its frames."""

    def __init__(self, answer: str, stream: trio.abc.Stream, early: bytes) -> None:
        self.answer = answer
        self.stream = stream
        self.buffer = bytearray(early)

    async def _need(self, n: int) -> None:
        while len(self.buffer) < n:
            chunk = await self.stream.receive_some(65536)
            assert chunk, "the server hung up"
            self.buffer.extend(chunk)

    async def read_frame(self) -> tuple[int, bytes]:
        """One server frame: (its first byte, its payload)."""
        await self._need(2)
        first, size = self.buffer[0], self.buffer[1] & 0x7F
        head = 2
        if size == 126:
            await self._need(4)
            size, head = int.from_bytes(self.buffer[2:4], "big"), 4
        elif size == 127:
            await self._need(10)
            size, head = int.from_bytes(self.buffer[2:10], "big"), 10
        await self._need(head + size)
        payload = bytes(self.buffer[head : head + size])
        del self.buffer[: head + size]
        return first, payload


@asynccontextmanager
async def _raw(served: Served, offer: str) -> AsyncIterator[_Raw]:
    """A raw connection to /echo offering ``offer``."""
    stream = await open_stream(served)
    async with stream:
        await stream.send_all(handshake("/echo", Sec_WebSocket_Extensions=offer.encode()))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(4096)
            assert chunk, head
            head += chunk
        text, _, rest = head.partition(b"\r\n\r\n")
        assert text.startswith(b"HTTP/1.1 101"), text
        yield _Raw(text.decode().lower(), stream, rest)


def _compressed(opcode: int, payload: bytes) -> bytes:
    """A masked client frame: ``payload`` compressed (RSV1 set), as RFC 7692 7.2.1 says."""
    compressor = zlib.compressobj(wbits=-12)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return frame(opcode, data[:-4], rsv=4)


def test_event_loops_in_threads_never_share_a_compressor() -> None:
    # zlib releases the GIL while it compresses: two threads (two event loops in
    # one process) compressing at once into one compressor would mix their
    # messages.  Each thread has its own, so every frame inflates to its message.
    failures: list[tuple[int, int]] = []

    def compress_many(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(100):
            data = rng.randbytes(64) * 4_000
            deflated = Prepared(data).deflated(12)
            size, head = deflated[1] & 0x7F, 2
            if size == 126:
                head = 4
            elif size == 127:
                head = 10
            try:
                inflated = zlib.decompressobj(wbits=-12).decompress(
                    deflated[head:] + b"\x00\x00\xff\xff"
                )
            except zlib.error:
                inflated = b""
            if deflated[0] != 0xC2 or inflated != data:
                failures.append((seed, n))

    threads = [threading.Thread(target=compress_many, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
