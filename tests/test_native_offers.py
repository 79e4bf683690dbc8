"""The native server's fast 101 for browsers' offers, against websockets' ``accept()``.

Browsers offer permessage-deflate (Chromium: ``permessage-deflate;
client_max_window_bits``, Firefox: ``permessage-deflate`` with ``Connection:
keep-alive, Upgrade``).  ``accept_headers`` answers such requests with the
negotiation websockets did once for the same offers: on thousands of generated
offers (extensions, ``Connection`` lists, subprotocols, well-formed or not),
whatever it answers must be websockets' answer, byte for byte, with the same
negotiated parameters; what it declines goes to websockets.  Through a real
server, Chromium's and Firefox's heads take the fast path
(``UPGRADES.fast`` counts it) and compressed messages round-trip.
"""

from __future__ import annotations

import base64
import random
import zlib

import trio
from websockets.extensions.base import Extension

import triows
from benchmarks.raw_load import HEADS
from triows._native._upgrade import UPGRADES, Accepted, accept_headers, websockets_accept
from triows._serving._handshake import refusal
from triows.testing import live_server

from .raw_client import frame

_NAMES = [b"permessage-deflate"] * 8 + [b"PerMessage-Deflate", b"x-webkit-deflate-frame", b"pmd"]
_PARAMS = [
    b"server_no_context_takeover",
    b"client_no_context_takeover",
    b"server_max_window_bits",
    b"client_max_window_bits",
    b"unknown_param",
]
_VALUES = [b"8", b"9", b"10", b"11", b"12", b"15", b"16", b"0", b"x", b'"10"', b'"1 0"', b""]
_CONNECTIONS = [
    b"Upgrade",
    b"upgrade",
    b"UPGRADE",
    b"keep-alive, Upgrade",
    b"keep-alive,Upgrade",
    b"Upgrade, keep-alive",
    b"Upgrade,",
    b", Upgrade",
    b"Upgrade;x",
    b"Upgrade , close",
    b"keep-alive, Upgrade, \x80",
]
_SUBPROTOCOLS = [b"chat", b"chat, superchat", b"chat,superchat", b"a b", b"chat,", b'x"y', b""]
_JUNK = [b"", b",", b";", b"permessage-deflate;", b"permessage-deflate,,x", b"a=b", b"\x7f"]


def _one_offer(rng: random.Random) -> bytes:
    params = []
    for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
        value = rng.choice(_VALUES) if rng.random() < 0.4 else None
        params.append(rng.choice(_PARAMS) + (b"" if value is None else b"=" + value))
    separator = rng.choice([b"; ", b";", b" ; ", b";\t"])
    return separator.join([rng.choice(_NAMES), *params])


def _offers(rng: random.Random) -> bytes:
    if rng.random() < 0.05:
        return rng.choice(_JUNK)
    offers = [_one_offer(rng) for _ in range(rng.choice([1, 1, 1, 1, 2, 3]))]
    return rng.choice([b", ", b",", b" , "]).join(offers)


def _generated_headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    """An upgrade request's headers as h11 gives them, with generated offers."""
    headers = [
        (b"host", b"example.com"),
        (b"upgrade", b"websocket"),
        (b"connection", rng.choice(_CONNECTIONS)),
        (b"sec-websocket-key", base64.b64encode(rng.randbytes(16))),
        (b"sec-websocket-version", b"13"),
    ]
    if rng.random() < 0.9:
        headers.append((b"sec-websocket-extensions", _offers(rng)))
    if rng.random() < 0.3:
        headers.append((b"sec-websocket-protocol", rng.choice(_SUBPROTOCOLS)))
    if rng.random() < 0.5:
        headers.append((b"origin", b"https://example.com"))
    if rng.random() < 0.05:
        headers.append(rng.choice(headers[2:]))  # a repeated header
    rng.shuffle(headers)
    return headers


def _negotiated(extensions: list[Extension]) -> list[tuple[str, dict[str, object]]]:
    """What an extension list negotiated: each one's type and parameters."""
    return [(type(e).__name__, dict(vars(e))) for e in extensions]


def _websockets_accept(
    headers: list[tuple[bytes, bytes]],
) -> tuple[list[tuple[bytes, bytes]], list[Extension]] | None:
    """websockets' 101 and negotiated extensions for ``headers``, None if it refuses."""
    accepted = websockets_accept(headers)
    if accepted is None:
        return None
    response, protocol = accepted
    answer = [(n.encode(), v.encode("latin-1")) for n, v in response.headers.raw_items()]
    return answer, protocol.extensions


def _same_second(
    headers: list[tuple[bytes, bytes]],
) -> tuple[Accepted | None, tuple[list[tuple[bytes, bytes]], list[Extension]] | None]:
    """Both answers, from the same second (their Date headers match)."""
    for _ in range(3):
        ours, theirs = accept_headers(headers), _websockets_accept(headers)
        if ours is None or theirs is None or ours.headers[0] == theirs[0][0]:
            break
    return ours, theirs


def test_fast_answers_to_generated_offers_are_websockets() -> None:
    rng = random.Random(7692)
    fast = slow = compressed = 0
    for _ in range(6000):
        headers = _generated_headers(rng)
        if refusal("1.1", b"GET", headers) is not None:
            continue  # triows' rule answers it before either path
        ours, theirs = _same_second(headers)
        if ours is None:
            slow += 1
            continue
        fast += 1
        assert theirs is not None, headers
        assert ours.headers == theirs[0], headers
        assert _negotiated(ours.extensions) == _negotiated(theirs[1]), headers
        compressed += bool(ours.extensions)
    # Both paths, and many negotiations, are exercised.
    assert fast > 3000 and slow > 1000 and compressed > 1200


def test_each_connection_gets_its_own_extension() -> None:
    headers = [
        (b"connection", b"keep-alive, Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", base64.b64encode(bytes(16))),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    ]
    first, second = accept_headers(headers), accept_headers(headers)
    assert first is not None and second is not None
    assert first.extensions[0] is not second.extensions[0]
    assert _negotiated(first.extensions) == _negotiated(second.extensions)


def test_long_or_repeated_offers_take_websockets_path() -> None:
    headers = [
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", base64.b64encode(bytes(16))),
        (b"sec-websocket-version", b"13"),
    ]
    long_offer = b", ".join([b"permessage-deflate; client_max_window_bits"] * 20)
    assert accept_headers([*headers, (b"sec-websocket-extensions", long_offer)]) is None
    repeated = [(b"sec-websocket-extensions", b"permessage-deflate")] * 2
    assert accept_headers(headers + repeated) is None
    assert accept_headers([*headers, (b"connection", b"keep-alive")]) is None


# -- through the server -----------------------------------------------------------------

app = triows.App()


@app.websocket_route("/idle")
async def echo(ws: triows.WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@app.websocket_route("/proto", auto_accept=False)
async def proto(ws: triows.WebSocket) -> None:
    await ws.accept(subprotocol=ws.subprotocols[-1])
    async for message in ws:
        await ws.send(message)


async def _round_trip(port: int, head: bytes, message: bytes) -> tuple[bytes, bytes]:
    """The 101's head for ``head``, and the echo of ``message`` sent compressed."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            assert chunk, data
            data += chunk
        answer, _, data = data.partition(b"\r\n\r\n")
        compressor = zlib.compressobj(wbits=-12)
        deflated = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        await stream.send_all(frame(0x1, deflated[:-4], rsv=4))
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            chunk = await stream.receive_some(4096)
            assert chunk, data
            data += chunk
        assert data[0] == 0xC1 and data[1] < 126  # FIN, RSV1 (compressed), text
        payload = data[2 : 2 + data[1]]
        return answer, zlib.decompressobj(wbits=-12).decompress(payload + b"\x00\x00\xff\xff")


async def test_browser_heads_take_the_fast_path_and_round_trip_compressed() -> None:
    async with live_server(app, backend="native") as server:
        for kind, offer in (("chromium", "client_max_window_bits=12"), ("firefox", "")):
            head = HEADS[kind].format(path="/idle", host=f"127.0.0.1:{server.port}").encode()
            before = UPGRADES.fast
            with trio.fail_after(10):
                answer, echoed = await _round_trip(server.port, head, b"hello " * 20)
            assert UPGRADES.fast == before + 1, kind
            assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert (
                b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                b"server_max_window_bits=12" + (b"; " + offer.encode() if offer else b"") + b"\r\n"
            ) in answer + b"\r\n", answer
            assert echoed == b"hello " * 20


async def test_an_offered_subprotocol_takes_the_fast_path() -> None:
    async with live_server(app, backend="native") as server:
        head = HEADS["chromium"].format(path="/proto", host=f"127.0.0.1:{server.port}")
        head = head.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n")
        before = UPGRADES.fast
        with trio.fail_after(10):
            answer, echoed = await _round_trip(server.port, head.encode(), b"hello")
        assert UPGRADES.fast == before + 1
        assert b"\r\nSec-WebSocket-Protocol: superchat" in answer
        assert echoed == b"hello"
