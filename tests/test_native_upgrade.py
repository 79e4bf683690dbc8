"""The native server's upgrade fast path against h11 and websockets.

``parse_upgrade`` reads a plain upgrade request's head without h11, and
``accept_headers`` builds the 101 without websockets' ``accept()``: on many
generated requests, well-formed or not, whatever the fast path takes must be
exactly what h11 parses and websockets answers; what it declines goes to them.
Through a real server, both paths give the same 101 and the same refusals.
"""

from __future__ import annotations

import base64
import random
import re

import h11
import trio
from websockets.protocol import Protocol

import triows
from triows._native._head import UpgradeHead, bad_line_end, parse_upgrade
from triows._native._protocol import COMPRESSION, _ServerProtocol, new_protocol
from triows._native._upgrade import accept_headers, websockets_accept
from triows._serving._handshake import asks_for_websocket, refusal
from triows.testing import live_server

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def _value(rng: random.Random, good: bytes) -> bytes:
    """``good``, or a variation: padded, odd bytes, empty, a list."""
    kind = rng.random()
    if kind < 0.55:
        return good
    if kind < 0.7:
        return rng.choice([b" ", b"\t", b"  "]) + good + rng.choice([b"", b" ", b"\t "])
    if kind < 0.8:
        return good.upper() if rng.random() < 0.5 else good.title()
    if kind < 0.9:
        odd = rng.choice(
            [b"\x00", b"\x7f", b"\x80", b"\xff", b"\x0b", b"\x0c", b"a b", b",", b"\t"]
        )
        return good[: len(good) // 2] + odd + good[len(good) // 2 :]
    return rng.choice([b"", b"keep-alive, " + good, good + b", x"])


_GOOD = {
    b"Host": b"example.com:80",
    b"Upgrade": b"websocket",
    b"Connection": b"Upgrade",
    b"Sec-WebSocket-Key": KEY,
    b"Sec-WebSocket-Version": b"13",
}
_SOMETIMES = {
    b"Origin": b"https://example.com",
    b"Sec-WebSocket-Extensions": b"permessage-deflate; client_max_window_bits",
    b"Sec-WebSocket-Protocol": b"chat, superchat",
    b"Content-Length": b"0",
    b"Transfer-Encoding": b"chunked",
    b"User-Agent": b"gen/1.0",
    b"X-Odd": b"a\x80b",
}


def _request_line(rng: random.Random) -> bytes:
    if rng.random() < 0.8:
        return b"GET /path?q=1 HTTP/1.1"
    return rng.choice(
        [
            b"get /path HTTP/1.1",
            b"POST /path HTTP/1.1",
            b"GET /path HTTP/1.0",
            b"GET /path HTTP/2.0",
            b"GET  /path HTTP/1.1",
            b"GET /pa\x7fth HTTP/1.1",
            b"GET /pa\x80th HTTP/1.1",
            b"GET * HTTP/1.1",
            b"GET /path HTTP/1.1 ",
        ]
    )


def _header_line(rng: random.Random, name: bytes, value: bytes) -> bytes:
    if rng.random() < 0.5:
        name = name.lower()
    kind = rng.random()
    if kind < 0.03:
        return name + b" : " + value  # whitespace before the colon
    if kind < 0.06:
        return b" " + name + b": " + value  # a folded line
    if kind < 0.08:
        return name + b" " + value  # no colon
    if kind < 0.1:
        return b"Bad\x01Name: " + value
    return name + b":" + rng.choice([b"", b" ", b"\t"]) + value


def _generated_head(rng: random.Random) -> bytes:
    headers = [(name, _value(rng, good)) for name, good in _GOOD.items() if rng.random() < 0.93]
    headers += [
        (name, _value(rng, good)) for name, good in _SOMETIMES.items() if rng.random() < 0.15
    ]
    if rng.random() < 0.1 and headers:
        headers.append(rng.choice(headers))  # a repeated header
    rng.shuffle(headers)
    lines = [_request_line(rng)] + [_header_line(rng, n, v) for n, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _h11_request(head: bytes) -> h11.Request | None:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return None
    return event if isinstance(event, h11.Request) else None


def test_parse_upgrade_is_h11() -> None:
    rng = random.Random(1523)
    fast = slow = 0
    for _ in range(5000):
        head = _generated_head(rng)
        parsed = parse_upgrade(bytearray(head), len(head))
        request = _h11_request(head)
        if parsed is None:
            slow += 1
            continue
        fast += 1
        assert request is not None, head
        assert parsed == UpgradeHead.from_h11(request), head
        assert asks_for_websocket(request.headers)
    # Both paths are exercised.
    assert fast > 1000 and slow > 1000


def test_parse_upgrade_declines_what_h11_must_check() -> None:
    base = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    assert parse_upgrade(base + b"\r\n", len(base) + 2) is not None
    for extra in [
        b"Content-Length: 0\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Host: y\r\n",
        b" folded\r\n",
    ]:
        head = base + extra + b"\r\n"
        assert parse_upgrade(head, len(head)) is None, extra
    head = base.replace(b"Host: x\r\n", b"") + b"\r\n"
    assert parse_upgrade(head, len(head)) is None  # h11 answers a missing Host
    plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_upgrade(plain, len(plain)) is None  # plain HTTP is h11's


def _websockets_answer(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]] | None:
    """websockets' answer, from every header it reads (the others: h11 takes control
    characters websockets' Headers refuses, and they change nothing)."""
    accepted = websockets_accept(headers)
    if accepted is None:
        return None
    return [(n.encode(), v.encode("latin-1")) for n, v in accepted[0].headers.raw_items()]


def test_accept_headers_are_websockets() -> None:
    rng = random.Random(6455)
    fast = slow = 0
    for _ in range(8000):
        parsed = _h11_request(_generated_head(rng))
        if parsed is None:
            continue
        headers = list(parsed.headers)
        if refusal(parsed.http_version.decode(), parsed.method, headers) is not None:
            continue
        if rng.random() < 0.5:  # many keys (the accept hash)
            key = base64.b64encode(rng.randbytes(16))
            headers = [(n, key if n == b"sec-websocket-key" else v) for n, v in headers]
        accepted = accept_headers(headers)
        if accepted is None:
            slow += 1
            continue
        fast += 1
        for _ in range(3):  # the same second for both Date headers
            reference = _websockets_answer(headers)
            accepted = accept_headers(headers)
            assert accepted is not None
            if reference is not None and reference[0] == accepted.headers[0]:
                break
        assert accepted.headers == reference, headers
    # Both paths are exercised (repeated headers take websockets').
    assert fast > 300 and slow > 20


# -- through the server -----------------------------------------------------------------

app = triows.App()


@app.websocket_route("/ws", auto_accept=False)
async def ws_view(ws: triows.WebSocket) -> None:
    await ws.accept(headers=[("X-View", "yes")])
    await ws.send("hi")


async def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection: the response head that comes back."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
        return data


def _upgrade(extra: bytes = b"", connection: bytes = b"Upgrade") -> bytes:
    return (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: "
        + connection
        + b"\r\nSec-WebSocket-Key: "
        + KEY
        + b"\r\nSec-WebSocket-Version: 13\r\n"
        + extra
        + b"\r\n"
    )


def _without_date(response: bytes) -> bytes:
    head = response.split(b"\r\n\r\n")[0]
    return b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Date:"))


async def test_fast_and_slow_101_are_the_same_bytes() -> None:
    async with live_server(app, backend="native") as server:
        with trio.fail_after(10):
            fast = await _exchange(server.port, _upgrade())
            # Two Connection lines are valid but unusual: websockets' accept() answers them.
            slow = await _exchange(server.port, _upgrade(b"Connection: keep-alive\r\n"))
            refused = await _exchange(server.port, _upgrade(b"Sec-WebSocket-Version: 13\r\n"))
    assert fast.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nDate: " in fast and b"\r\nx-view: yes\r\n" in fast
    assert _without_date(fast) == _without_date(slow)
    assert refused.startswith(b"HTTP/1.1 400 ")


def test_new_protocol_is_websockets_protocol_at_its_frame_parser() -> None:
    """new_protocol() is websockets' protocol, built by its own __init__, that starts
    at its frame parser: the same state, attribute by attribute (but its own id)."""
    built = new_protocol(1000)
    reference = _ServerProtocol(max_size=1000, extensions=COMPRESSION, logger=built.logger)
    reference.parser = Protocol.parse(reference)
    next(reference.parser)
    ours, theirs = vars(built), vars(reference)
    assert set(ours) == set(theirs)
    for name in ours:
        if name in ("reader", "parser", "id"):
            assert type(ours[name]) is type(theirs[name])
        else:
            assert ours[name] == theirs[name], name
    # Under CPython 3.11's shared-keys limit (see _ServerProtocol.__init__).
    assert len(ours) <= 29


def test_bad_line_end_finds_every_lone_cr_or_lf() -> None:
    # The count-based check against the rule's regular expression, on generated
    # heads rich in CR and LF, over ranges that do not split a CRLF (as the reader scans).
    rule = re.compile(rb"(?<!\r)\n|\r(?!\n)")
    rng = random.Random(9112)
    bad = 0
    for _ in range(5000):
        head = bytes(rng.choice(b"\r\nab: ") for _ in range(rng.randrange(0, 40)))
        start, end = sorted(rng.randrange(0, len(head) + 1) for _ in range(2))
        if head[start - 1 : start + 1] == b"\r\n" or head[end - 1 : end + 1] == b"\r\n":
            continue
        expected = rule.search(head[start:end]) is not None
        assert bad_line_end(head, start, end) == expected, (head, start, end)
        assert bad_line_end(bytearray(head), start, end) == expected
        bad += expected
    assert 1000 < bad < 4000
