"""Wire-level fuzzing of a real ``triows run`` process, on both backends (hardening issue).

hypothesis writes raw byte streams to a server process (``tests.fuzz_app:app``,
started once per backend for the module, on 127.0.0.1, killed at teardown):

* WebSocket handshakes, valid and mutated (headers dropped, duplicated, renamed or
  garbled; bad keys and versions; odd methods, targets and HTTP versions; bodies;
  bare LF line ends; pipelined requests; bytes after the head), and plain random bytes;
* plain HTTP requests (methods, Content-Length and chunked bodies, conflicting
  framing, 100-continue, pipelining, truncation);
* after a valid handshake (with or without a permessage-deflate offer): frames of
  every opcode, masked or not, reserved bits, 7/16/64-bit length encodings, lengths
  up to 70000 (past the App's 64 KiB limit), fragments with control frames between
  them, compressed frames (valid, without negotiation, garbage), truncated frames.

Every stream is cut at random read boundaries and sent with tiny random delays; the
client then closes, half-closes (EOF) or lingers.  After every example: the
process is alive, a fresh client gets an echo and an HTTP page within
:data:`HEALTH_TIMEOUT`, its RSS stays under its start plus :data:`RSS_SLACK`, and
its stderr holds no ERROR line (the server logs ERROR only for its own bugs).  The
server's own replies are checked too: HTTP responses start with a status line, and
after a handshake its frames parse (websockets' client protocol) and it never
closes with 1011 unless the client sent 1011 first.

The example counts here keep the module under a minute for both backends; the long
run is ``scripts/fuzz_wire.py --examples N --backend native|hypercorn``, which
uses the strategies and checks below.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url
from websockets.client import ClientProtocol
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Response as WSResponse
from websockets.protocol import State
from websockets.uri import parse_uri
from websockets.utils import apply_mask

from .fuzz_app import MAX_MESSAGE_SIZE

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: native and hypercorn only, not the backend fixture's native-tls: the fuzzing client
#: works at the TCP level (streams cut at random read boundaries, half-closes with EOF,
#: which TLS does not have, bytes after a reset), and the server is a ``triows run``
#: process shared by the module (scripts/fuzz_wire.py runs the same).
BACKENDS = ("native", "hypercorn")

STARTUP_TIMEOUT = 30.0  # a cold interpreter importing hypercorn on a slow machine
#: A fresh, well-behaved client must be served within this many seconds after each example.
HEALTH_TIMEOUT = 2.0
#: The bound on any one socket operation of the fuzzing client.
IO_TIMEOUT = 5.0
#: How much the server's RSS may grow over its value after startup.
RSS_SLACK = 150 * 1024 * 1024
#: How long an example reads the server's replies after sending: idle gap, then total.
LINGER_IDLE = 0.1
LINGER_TOTAL = 0.5
#: Time the server gets to finish with an example's connection before the checks.
SETTLE = 0.02

SERVING = re.compile(rb"^triows: serving \S+ on http://127\.0\.0\.1:(\d+) ")
#: An error the server logged: triows' format, hypercorn's own, or a bare traceback.
ERROR_LINE = re.compile(
    r"^(?:ERROR|CRITICAL)\b|^\[[^\]]*\] \[\d+\] \[(?:ERROR|CRITICAL)\]|^Traceback \(most recent"
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="

# -- the server process -----------------------------------------------------------------


class ServerProcess:
    """``python -m triows run tests.fuzz_app:app`` on 127.0.0.1, with its output collected.

    Two daemon threads read stdout (for the port) and stderr (for ERROR lines).
    :meth:`ensure_running` restarts a server that died, hung or grew, so that
    hypothesis can replay and shrink the example that broke it.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.rss_start = 0
        self.stderr: list[str] = []
        self.checked = 0  # stderr lines already checked for errors
        self.broken = False  # set by a failed check: restart before the next example
        self.restarts = 0
        self.recent: deque[str] = deque(maxlen=5)  # what the last examples sent
        self._lock = threading.Lock()

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "triows", "run", "tests.fuzz_app:app",
            "--host", HOST, "--port", "0", "--backend", self.backend,
            "--handshake-timeout", "2", "--ping-interval", "1", "--ping-timeout", "2",
        ]  # fmt: skip
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.process = process
        self.stderr = []
        self.checked = 0
        self.broken = False
        serving = threading.Event()
        stdout: list[bytes] = []

        def read_stdout() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                stdout.append(line)
                found = SERVING.match(line)
                if found:
                    self.port = int(found.group(1))
                    serving.set()

        def read_stderr() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                with self._lock:
                    self.stderr.append(line.decode(errors="replace").rstrip("\r\n"))

        self.port = 0
        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not serving.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = b"".join(stdout).decode(errors="replace")
                raise RuntimeError(
                    f"{argv} did not serve:\n{output}\n" + "\n".join(self.stderr[-50:])
                )
        self.rss_start = self.rss()

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
        if process is not None:
            process.wait(timeout=IO_TIMEOUT)

    def ensure_running(self) -> None:
        assert self.process is not None
        if self.broken or self.process.poll() is not None:
            self.stop()
            self.restarts += 1
            self.start()

    def rss(self) -> int:
        """The process's resident set size, in bytes (0 once it is gone)."""
        assert self.process is not None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) * 1024 if found else 0

    def new_errors(self) -> list[str]:
        """The error lines (with what follows them) logged since the last call."""
        with self._lock:
            lines = self.stderr[self.checked :]
            self.checked = len(self.stderr)
        for index, line in enumerate(lines):
            if ERROR_LINE.search(line):
                return lines[index : index + 40]
        return []

    def describe(self) -> str:
        recent = "\n".join(self.recent)
        tail = "\n".join(self.stderr[-40:])
        return f"backend={self.backend}; last examples:\n{recent}\nstderr tail:\n{tail}"


@contextmanager
def running_server(backend: str) -> Iterator[ServerProcess]:
    """A started :class:`ServerProcess`, killed (and reaped) on the way out."""
    server = ServerProcess(backend)
    server.start()
    try:
        yield server
        # Errors logged after the last example's checks (a connection that ended late).
        time.sleep(0.3)
        errors = server.new_errors()
        assert not errors, "\n".join(["the server logged an error:", *errors, server.describe()])
    finally:
        server.stop()


# -- what gets sent ---------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """``seed`` repeated up to ``length`` bytes; ``whole`` keeps whole seeds (valid UTF-8)."""

    seed: bytes
    length: int
    whole: bool = False

    def data(self) -> bytes:
        if not self.seed or self.length <= 0:
            return b""
        if self.whole:
            return self.seed * max(1, self.length // len(self.seed))
        return (self.seed * (self.length // len(self.seed) + 1))[: self.length]


def raw(data: bytes) -> Payload:
    return Payload(data, len(data), whole=True)


@dataclass(frozen=True)
class Plan:
    """How a stream goes out: chunk sizes (the rest in one piece), delays, then the end.

    ``close``: close right after sending (an RST if replies are unread); ``eof``:
    half-close and read until the server closes; ``linger``: read a while, then close.
    """

    chunks: tuple[int, ...] = ()
    delays: tuple[float, ...] = ()
    ending: Literal["close", "eof", "linger"] = "linger"

    def split(self, data: bytes) -> list[bytes]:
        pieces = []
        for size in self.chunks:
            if not data:
                break
            pieces.append(data[:size])
            data = data[size:]
        if data:
            pieces.append(data)
        return pieces


@dataclass(frozen=True)
class HTTPRequest:
    """One HTTP/1 request head and body, every part of which may be wrong."""

    method: bytes = b"GET"
    target: bytes = b"/text"
    version: bytes = b"HTTP/1.1"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: Payload = Payload(b"", 0)
    #: ``none``: the body as is; ``chunked``: the body in chunks of ``chunk_size``
    #: (``bad-chunks``: with a wrong size line and no last chunk).
    framing: Literal["none", "chunked", "bad-chunks"] = "none"
    chunk_size: int = 16
    eol: bytes = b"\r\n"

    def encode(self) -> bytes:
        eol = self.eol
        head = [b" ".join(part for part in (self.method, self.target, self.version) if part)]
        head += [name + b": " + value for name, value in self.headers]
        body = self.body.data()
        if self.framing != "none":
            size = max(1, self.chunk_size)
            chunks = [body[i : i + size] for i in range(0, len(body), size)]
            if self.framing == "chunked":
                body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
                body += b"0\r\nX-Trailer: 1\r\n\r\n"
            else:
                body = b"".join(b"%x\r\n%s\r\n" % (len(c) + 3, c) for c in chunks) + b"zz\r\n"
        return eol.join(head) + eol + eol + body


@dataclass(frozen=True)
class StreamCase:
    """Requests (handshakes or HTTP) back to back, maybe trailing bytes, maybe cut short."""

    requests: tuple[HTTPRequest, ...]
    trailing: bytes = b""
    cut: int | None = None
    plan: Plan = field(default_factory=Plan)

    def encode(self) -> bytes:
        data = b"".join(request.encode() for request in self.requests) + self.trailing
        return data if self.cut is None else data[: self.cut]


@dataclass(frozen=True)
class FrameSpec:
    """One client frame, every detail of which may break the rules.

    ``encoding``: ``min`` uses the shortest length field, ``16``/``64`` force that
    one (RFC 6455 requires the shortest).  ``compress``: ``deflate`` compresses the
    payload with the connection's permessage-deflate (or a stray compressor when it
    was not negotiated), ``garbage`` sets RSV1 on an uncompressed payload.
    ``truncate`` sends only that many payload bytes and ends the stream there.
    """

    opcode: int
    payload: Payload = Payload(b"", 0)
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    encoding: Literal["min", "16", "64"] = "min"
    compress: Literal["no", "deflate", "garbage"] = "no"
    truncate: int | None = None
    key: int = 0x37FA213D

    def serialize(self, deflate: Extension) -> bytes:
        data = self.payload.data()
        rsv1 = bool(self.rsv & 4)
        if self.compress == "deflate" and self.opcode in (0, 1, 2):
            if self.opcode == 0 and not hasattr(deflate, "encoder"):
                # Under client_no_context_takeover websockets holds no compressor
                # between messages and makes one for a message's first frame only:
                # a continuation there (out of place anyway) gets a stray one.
                deflate = PerMessageDeflate(False, False, 15, 15)
            encoded = deflate.encode(Frame(Opcode(self.opcode), data, self.fin))
            data, rsv1 = bytes(encoded.data), rsv1 or encoded.rsv1
        elif self.compress == "garbage":
            rsv1 = True
        rsv2, rsv3 = bool(self.rsv & 2), bool(self.rsv & 1)
        standard = self.masked and self.encoding == "min" and self.truncate is None
        if standard and self.opcode in {op.value for op in Opcode}:
            try:  # what a conforming client sends (random mask key)
                return Frame(Opcode(self.opcode), data, self.fin, rsv1, rsv2, rsv3).serialize(
                    mask=True
                )
            except Exception:
                pass  # reserved bits, a long or fragmented control frame: built by hand
        head = bytes([(0x80 * self.fin) | (rsv1 << 6) | (rsv2 << 5) | (rsv3 << 4) | self.opcode])
        mask_bit = 0x80 if self.masked else 0
        length = len(data)
        if self.encoding == "min" and length < 126:
            head += bytes([mask_bit | length])
        elif self.encoding != "64" and length < 65536:
            head += bytes([mask_bit | 126]) + struct.pack("!H", length)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
        if self.masked:
            key = struct.pack("!I", self.key)
            head, data = head + key, apply_mask(data, key)
        if self.truncate is not None:
            data = data[: self.truncate]
        return head + data


@dataclass(frozen=True)
class DeflateOffer:
    """A client's permessage-deflate offer (websockets' client factory parameters)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = True

    def factory(self) -> ClientPerMessageDeflateFactory:
        return ClientPerMessageDeflateFactory(
            server_no_context_takeover=self.server_no_context_takeover,
            client_no_context_takeover=self.client_no_context_takeover,
            server_max_window_bits=self.server_max_window_bits,
            client_max_window_bits=self.client_max_window_bits,
        )


@dataclass(frozen=True)
class FramesCase:
    """A valid handshake on ``path`` (offering ``deflate``), then ``frames``."""

    path: str
    deflate: DeflateOffer | None
    frames: tuple[FrameSpec, ...]
    plan: Plan = field(default_factory=Plan)


# -- strategies -------------------------------------------------------------------------

plans = st.builds(
    Plan,
    chunks=st.lists(st.one_of(st.integers(1, 8), st.integers(1, 4096)), max_size=6).map(tuple),
    delays=st.lists(st.sampled_from([0.0, 0.0, 0.0005, 0.002, 0.01]), max_size=6).map(tuple),
    ending=st.sampled_from(["close", "eof", "linger"]),
)

MAX = MAX_MESSAGE_SIZE
lengths = st.one_of(
    st.integers(0, 130),
    st.sampled_from([0, 1, 125, 126, 127, 128, 65535, 65536, 65537, MAX - 1, MAX, MAX + 1, 70000]),
    st.integers(0, 70000),
)
INVALID_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xc3(", b"\xe2\x82"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
payloads = st.one_of(
    st.builds(
        Payload, st.text(min_size=1, max_size=8).map(str.encode), lengths, whole=st.just(True)
    ),
    st.builds(Payload, st.binary(min_size=1, max_size=8), lengths),
    st.builds(Payload, st.sampled_from(INVALID_UTF8), lengths),
    json_values.map(lambda value: raw(json.dumps(value).encode())),
)
CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999]
BAD_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1012, 1014, 1015, 1016, 2999, 5000, 65535]
close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason,
        st.sampled_from(CLOSE_CODES + BAD_CLOSE_CODES) | st.integers(0, 65535),
        st.text(max_size=40).map(str.encode) | st.sampled_from(INVALID_UTF8) | st.just(b"x" * 124),
    ),
).map(raw)
control_payloads = st.one_of(
    st.binary(max_size=125).map(raw),
    st.builds(Payload, st.binary(min_size=1, max_size=4), st.integers(126, 200)),
)


@st.composite
def control_frames(draw: st.DrawFn, *, valid: bool = True) -> FrameSpec:
    opcode = draw(st.sampled_from([8, 9, 10]))
    return FrameSpec(
        opcode,
        draw(close_payloads if opcode == 8 else control_payloads),
        fin=True if valid else draw(st.booleans()),
    )


@st.composite
def messages(draw: st.DrawFn) -> list[FrameSpec]:
    """A text or binary message in 1-4 fragments, pings and pongs between them."""
    opcode = draw(st.sampled_from([1, 2]))
    data = draw(payloads).data()
    compress: Literal["no", "deflate"] = draw(st.sampled_from(["no", "deflate"]))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    frames: list[FrameSpec] = []
    for index, piece in enumerate(pieces):
        if index and draw(st.booleans()):
            frames.append(
                FrameSpec(draw(st.sampled_from([9, 10])), raw(draw(st.binary(max_size=8))))
            )
        frames.append(
            FrameSpec(
                opcode if index == 0 else 0,
                raw(piece),
                fin=index == len(pieces) - 1,
                compress=compress,
            )
        )
    return frames


random_frames = st.builds(
    FrameSpec,
    opcode=st.integers(0, 15),
    payload=payloads,
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 2, 4, 7]),
    masked=st.booleans(),
    encoding=st.sampled_from(["min", "min", "16", "64"]),
    compress=st.sampled_from(["no", "deflate", "garbage"]),
    truncate=st.none() | st.integers(0, 64),
    key=st.sampled_from([0, 0x37FA213D]) | st.integers(0, 2**32 - 1),
)
deflate_offers = st.builds(
    DeflateOffer,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.none() | st.integers(8, 15),
    client_max_window_bits=st.sampled_from([None, True, 9, 12, 15]),
)


@st.composite
def frames_cases(draw: st.DrawFn) -> FramesCase:
    parts = draw(
        st.lists(
            st.one_of(
                messages(),
                messages(),
                control_frames().map(lambda frame: [frame]),
                control_frames(valid=False).map(lambda frame: [frame]),
                random_frames.map(lambda frame: [frame]),
            ),
            max_size=5,
        )
    )
    frames = [frame for part in parts for frame in part]
    if draw(st.booleans()):
        frames.append(draw(control_frames().filter(lambda frame: frame.opcode == 8)))
    return FramesCase(
        path=draw(st.sampled_from(["/text", "/json", "/bytes"])),
        deflate=draw(st.none() | st.just(DeflateOffer()) | deflate_offers),
        frames=tuple(frames),
        plan=draw(plans),
    )


tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_.!#", min_size=1, max_size=12).map(
    str.encode
)
garbled = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"", b" ", b"\x00", b"\r", b"\n", b"\x7f", b"\xff\xfe", b"a\r\nb: c", b"\t"]),
    st.text(max_size=10).map(str.encode),
)
targets = st.one_of(
    st.sampled_from([
        b"/text", b"/json", b"/bytes", b"/body", b"/", b"/missing", b"*", b"",
        b"http://127.0.0.1/text", b"/text?x=1&y", b"//text", b"/te xt", b"/%ff%00", b"/text#f",
        b"/" + b"a" * 9000,
    ]),
    garbled.map(lambda b: b"/" + b),
)  # fmt: skip
methods = st.one_of(
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"CONNECT", b"get"]),
    tokens.map(bytes.upper),
    garbled,
)
versions = st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"http/1.1", b"", b"HTTP/0.9"])  # fmt: skip
eols = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\n\r"])
bodies = st.one_of(
    st.binary(max_size=64).map(raw),
    st.builds(Payload, st.binary(min_size=1, max_size=4), st.integers(0, 5000)),
    st.builds(
        Payload,
        st.just(b"b"),
        st.sampled_from([1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1]),
    ),
)
extension_values = st.sampled_from([
    b"permessage-deflate",
    b"permessage-deflate; client_max_window_bits",
    b"permessage-deflate; server_max_window_bits=8",
    b"permessage-deflate; server_max_window_bits=7",
    b"permessage-deflate; client_max_window_bits=16",
    b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    b"permessage-deflate; unknown=1",
    b"permessage-deflate; server_max_window_bits",
    b"permessage-deflate, permessage-deflate; client_no_context_takeover",
    b"x-webkit-deflate-frame",
    b"permessage-deflate;;",
    b";",
    b"permessage-deflate; client_max_window_bits=\"10\"",
])  # fmt: skip
header_values = st.one_of(
    garbled,
    st.sampled_from([
        KEY, b"AAAA", b"dGhlIHNhbXBsZSBub25jZQ", b"!!!!!!!!!!!!!!!!!!!!!!!=", b"13", b"8",
        b"14", b"13, 8", b"0013", b" 13 ", b"thirteen", b"websocket, h2c", b"WebSocket",
        b"keep-alive, Upgrade", b"close", b"upgrade", b"x" * 10000, b"-1", b"1e3",
    ]),
    extension_values,
)  # fmt: skip
header_names = st.one_of(
    st.sampled_from([
        b"Host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version",
        b"Sec-WebSocket-Extensions", b"Sec-WebSocket-Protocol", b"Origin", b"Content-Length",
        b"Transfer-Encoding", b"Expect", b"Cookie", b"host", b"UPGRADE", b"Host ", b" Host",
        b"Sec-WebSocket-Key\x00",
    ]),
    tokens,
    garbled,
)  # fmt: skip
HANDSHAKE_HEADERS = (
    (b"Host", b"127.0.0.1"),
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Key", KEY),
    (b"Sec-WebSocket-Version", b"13"),
)


@st.composite
def mutated_headers(
    draw: st.DrawFn, base: tuple[tuple[bytes, bytes], ...]
) -> tuple[tuple[bytes, bytes], ...]:
    headers = list(base)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["drop", "dup", "value", "name", "add", "add", "many"]))
        index = draw(st.integers(0, max(0, len(headers) - 1)))
        if action == "add" or not headers:
            headers.insert(index, (draw(header_names), draw(header_values)))
        elif action == "drop":
            del headers[index]
        elif action == "dup":
            name, value = headers[index]
            headers.append((name, draw(st.just(value) | header_values)))
        elif action == "value":
            headers[index] = (headers[index][0], draw(header_values))
        elif action == "name":
            headers[index] = (draw(header_names), headers[index][1])
        else:
            headers += [(b"X-Filler-%d" % i, b"y" * 100) for i in range(draw(st.integers(1, 200)))]
    return tuple(headers)


def framed(request: HTTPRequest, how: str) -> HTTPRequest:
    """``request`` with a body framing header that is right, wrong or conflicting."""
    length = len(request.body.data())
    extra: dict[str, tuple[tuple[bytes, bytes], ...]] = {
        "length": ((b"Content-Length", b"%d" % length),),
        "short": ((b"Content-Length", b"%d" % max(0, length - 3)),),
        "long": ((b"Content-Length", b"%d" % (length + 10)),),
        "huge": ((b"Content-Length", b"99999999999999999999"),),
        "negative": ((b"Content-Length", b"-1"),),
        "two": ((b"Content-Length", b"%d" % length), (b"Content-Length", b"%d" % (length + 1))),
        "chunked": ((b"Transfer-Encoding", b"chunked"),),
        "both": ((b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"%d" % length)),
        "te-odd": ((b"Transfer-Encoding", b"gzip, chunked"),),
        "expect": ((b"Content-Length", b"%d" % length), (b"Expect", b"100-continue")),
        "none": (),
    }
    framing: Literal["none", "chunked"] = (
        "chunked" if how in ("chunked", "both", "te-odd") else "none"
    )
    return HTTPRequest(
        request.method, request.target, request.version, request.headers + extra[how],
        request.body, framing, request.chunk_size, request.eol,
    )  # fmt: skip


framings = st.sampled_from(
    ["length"] * 4
    + ["short", "long", "huge", "negative", "two", "chunked", "chunked", "both", "te-odd"]
    + ["expect", "none"]
)


@st.composite
def handshakes(draw: st.DrawFn) -> HTTPRequest:
    """A WebSocket handshake, valid or with a few things wrong."""
    mutate = draw(st.booleans())
    request = HTTPRequest(
        method=draw(methods) if mutate and draw(st.booleans()) else b"GET",
        target=draw(targets),
        version=draw(versions) if mutate and draw(st.booleans()) else b"HTTP/1.1",
        headers=draw(mutated_headers(HANDSHAKE_HEADERS)) if mutate else HANDSHAKE_HEADERS,
        body=draw(bodies) if mutate and draw(st.booleans()) else Payload(b"", 0),
        eol=draw(eols) if mutate and draw(st.booleans()) else b"\r\n",
        chunk_size=draw(st.integers(1, 100)),
    )
    if request.body.length:
        request = framed(request, draw(framings))
    if draw(st.booleans()):
        request = framed(
            request, draw(st.sampled_from(["none", "none", "bad"])).replace("bad", "chunked")
        )
        if draw(st.booleans()):
            request = HTTPRequest(
                request.method, request.target, request.version, request.headers,
                request.body, "bad-chunks", request.chunk_size, request.eol,
            )  # fmt: skip
    return request


@st.composite
def http_requests(draw: st.DrawFn) -> HTTPRequest:
    """A plain HTTP request, mostly to /body, with its body framed right or wrong."""
    base: tuple[tuple[bytes, bytes], ...] = (
        ((b"Host", b"127.0.0.1"),) if draw(st.integers(0, 4)) else ()
    )
    if draw(st.booleans()):
        base += ((b"Connection", draw(st.sampled_from([b"close", b"keep-alive", b"Upgrade"]))),)
    request = HTTPRequest(
        method=draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD"]) | methods),
        target=draw(st.sampled_from([b"/body", b"/body?x=1", b"/"]) | targets),
        version=draw(st.just(b"HTTP/1.1") | versions),
        headers=draw(st.just(base) | mutated_headers(base)),
        body=draw(bodies),
        eol=draw(st.just(b"\r\n") | eols),
        chunk_size=draw(st.integers(1, 5000)),
    )
    request = framed(request, draw(framings))
    if request.framing == "chunked" and draw(st.integers(0, 3)) == 0:
        request = HTTPRequest(
            request.method, request.target, request.version, request.headers,
            request.body, "bad-chunks", request.chunk_size, request.eol,
        )  # fmt: skip
    return request


def stream_cases(requests: st.SearchStrategy[HTTPRequest]) -> st.SearchStrategy[StreamCase]:
    return st.builds(
        StreamCase,
        requests=st.lists(requests, min_size=1, max_size=3).map(tuple),
        trailing=st.one_of(
            st.just(b""),
            st.just(b""),
            st.binary(max_size=64),
            st.just(FrameSpec(1, raw(b"hello")).serialize(PerMessageDeflate(False, False, 15, 15))),
        ),
        cut=st.none() | st.none() | st.integers(0, 400),
        plan=plans,
    )


handshake_cases = stream_cases(handshakes())
http_cases = stream_cases(http_requests())
garbage_cases = st.builds(
    StreamCase,
    requests=st.just(()),
    trailing=st.binary(max_size=300)
    | st.builds(lambda a, b: a + b, st.sampled_from([b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]), st.binary(max_size=100)),
    plan=plans,
)  # fmt: skip

# -- running one example ----------------------------------------------------------------


def shown(data: bytes, limit: int = 3000) -> str:
    text = repr(data)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(data)} bytes)"


async def send_plan(stream: trio.SocketStream, data: bytes, plan: Plan) -> None:
    """Send ``data`` in the plan's pieces; a server that hangs up early ends it quietly."""
    delays = list(plan.delays)
    try:
        for index, piece in enumerate(plan.split(data)):
            with trio.fail_after(IO_TIMEOUT):
                await stream.send_all(piece)
            if index < len(delays) and delays[index]:
                await trio.sleep(delays[index])
    except trio.BrokenResourceError:
        pass


async def finish(stream: trio.SocketStream, plan: Plan, received: Callable[[bytes], None]) -> None:
    """End the connection the way the plan says, reading what the server still sends."""
    if plan.ending == "close":
        return
    if plan.ending == "eof":
        try:
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    with trio.move_on_after(LINGER_TOTAL):
        while True:
            with trio.move_on_after(LINGER_IDLE if plan.ending == "linger" else LINGER_TOTAL):
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not chunk:
                    return
                received(chunk)
                continue
            return


async def run_stream(port: int, data: bytes, plan: Plan) -> bytes:
    """Send a stream of requests; return what the server answered."""
    note(f"sent: {shown(data)}")
    replies = bytearray()
    with trio.fail_after(IO_TIMEOUT):
        stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                try:
                    while chunk := await stream.receive_some(65536):
                        replies.extend(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            nursery.start_soon(read)
            await send_plan(stream, data, plan)
            nursery.cancel_scope.cancel()
        await finish(stream, plan, replies.extend)
    return bytes(replies)


def check_replies(sent: bytes, replies: bytes) -> None:
    """The server answers HTTP/1 with a status line (or nothing).

    hypercorn speaks HTTP/2 to a request whose method is ``PRI`` (prior knowledge).
    """
    if sent.startswith(b"PRI "):
        return
    assert not replies or replies.startswith(b"HTTP/1."), f"not an HTTP response: {replies[:200]!r}"


async def run_frames(port: int, case: FramesCase) -> None:
    """Handshake (a conforming client), then send ``case.frames`` and check the replies."""
    client = ClientProtocol(
        parse_uri(f"ws://{HOST}:{port}{case.path}"),
        extensions=None if case.deflate is None else [case.deflate.factory()],
        max_size=None,
    )
    client.send_request(client.connect())
    with trio.fail_after(IO_TIMEOUT):
        stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        with trio.fail_after(IO_TIMEOUT):
            await stream.send_all(b"".join(client.data_to_send()))
            while client.state is State.CONNECTING and client.handshake_exc is None:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                client.receive_data(chunk)
        events = client.events_received()
        response = events[0] if events else None
        assert isinstance(response, WSResponse), f"no handshake response: {client.handshake_exc}"
        assert response.status_code == 101, f"handshake refused: {response.status_code}"
        assert client.handshake_exc is None, f"bad handshake response: {client.handshake_exc!r}"
        stray = PerMessageDeflate(False, False, 15, 15)
        deflate = client.extensions[0] if client.extensions else stray
        wire = bytearray()
        sent_codes = set()
        for frame in case.frames:
            wire += frame.serialize(deflate)
            if frame.opcode == 8 and frame.payload.length >= 2:
                sent_codes.add(struct.unpack("!H", frame.payload.data()[:2])[0])
            if frame.truncate is not None:
                break
        note(f"after the handshake ({client.extensions}): {shown(bytes(wire))}")

        def received(chunk: bytes) -> None:
            client.receive_data(chunk)

        async with trio.open_nursery() as nursery:

            async def read() -> None:
                try:
                    while chunk := await stream.receive_some(65536):
                        received(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            nursery.start_soon(read)
            await send_plan(stream, bytes(wire), case.plan)
            nursery.cancel_scope.cancel()
        await finish(stream, case.plan, received)
    assert client.parser_exc is None, f"the server sent an invalid frame: {client.parser_exc!r}"
    close = client.close_rcvd
    if close is not None and close.code == 1011:
        assert 1011 in sent_codes, f"the server closed with 1011 ({close.reason!r})"


async def health_check(port: int, token: str) -> None:
    """A fresh, well-behaved client gets its echo and an HTTP page in HEALTH_TIMEOUT."""

    async def echo() -> None:
        url = f"ws://{HOST}:{port}/text"
        async with open_websocket_url(url, connect_timeout=HEALTH_TIMEOUT) as ws:
            await ws.send_message(token)
            assert await ws.get_message() == token

    async def page() -> None:
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            await stream.send_all(request)
            response = b""
            while chunk := await stream.receive_some(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200 "), response[:200]

    try:
        with trio.fail_after(HEALTH_TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo)
                nursery.start_soon(page)
    except trio.TooSlowError:
        raise AssertionError(f"a fresh client was not served within {HEALTH_TIMEOUT} s") from None


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def failure(exc: BaseException) -> str:
    return "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves(exc))


def check_server(server: ServerProcess, run: Callable[[int], Any], label: str) -> None:
    """Run one example against ``server`` (restarted first if broken), then check its health.

    Every check's outcome goes into one AssertionError raised from one place, so that
    hypothesis sees the same failure however the server broke when it replays it.
    """
    server.ensure_running()
    process = server.process
    assert process is not None
    server.recent.append(label)
    server.broken = True  # until every check passed
    port = server.port
    problems = []

    async def example() -> None:
        try:
            await run(port)
        except Exception as exc:
            problems.append(f"the example failed: {failure(exc)}")
        await trio.sleep(SETTLE)
        if process.poll() is None:
            try:
                await health_check(port, f"health {time.monotonic()}")
            except Exception as exc:
                problems.append(f"a fresh client was not served: {failure(exc)}")

    trio.run(example)
    if problems:  # a server that is going down may take a moment to exit
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
    if process.poll() is not None:
        problems.insert(0, f"the server exited with status {process.poll()}")
    errors = server.new_errors()
    if errors:
        problems.append("the server logged an error:\n" + "\n".join(errors))
    rss, limit = server.rss(), server.rss_start + RSS_SLACK
    if rss >= limit:
        problems.append(f"RSS {rss >> 20} MiB over the bound ({limit >> 20} MiB)")
    assert not problems, "\n".join([*problems, server.describe()])
    server.broken = False


def stream_example(server: ServerProcess, case: StreamCase) -> None:
    # Bytes after an upgrade request's head (pgjones/hypercorn#225: plain
    # hypercorn exits) included: the hypercorn backend contains that defect.
    data = case.encode()

    async def run(port: int) -> None:
        check_replies(data, await run_stream(port, data, case.plan))

    check_server(server, run, shown(data, 500))


def frames_example(server: ServerProcess, case: FramesCase) -> None:
    async def run(port: int) -> None:
        await run_frames(port, case)

    check_server(server, run, repr(case)[:500])


#: (name, strategy, runner): what the test functions below and scripts/fuzz_wire.py run.
TARGETS: Sequence[tuple[str, st.SearchStrategy[Any], Callable[[ServerProcess, Any], None]]] = (
    ("handshakes", handshake_cases, stream_example),
    ("http", http_cases, stream_example),
    ("garbage", garbage_cases, stream_example),
    ("frames", frames_cases(), frames_example),
)


def fuzz_settings(max_examples: int, *, shrink: bool = True) -> settings:
    """Settings for a run; without ``shrink`` a failure is reported as found (CI)."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,  # nothing written to the working tree
        phases=[*phases, Phase.shrink] if shrink else phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- the short run ----------------------------------------------------------------------
# No shrinking here: every failure replays against a server process (restarted if it
# broke), which can take minutes; the falsifying example and the exact bytes it sent
# are in the report, and scripts/fuzz_wire.py shrinks.


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with running_server(request.param) as process:
        yield process


@fuzz_settings(60, shrink=False)
@given(case=handshake_cases)
def test_handshakes(server: ServerProcess, case: StreamCase) -> None:
    stream_example(server, case)


@fuzz_settings(50, shrink=False)
@given(case=http_cases)
def test_http_requests(server: ServerProcess, case: StreamCase) -> None:
    stream_example(server, case)


@fuzz_settings(30, shrink=False)
@given(case=garbage_cases)
def test_garbage(server: ServerProcess, case: StreamCase) -> None:
    stream_example(server, case)


@fuzz_settings(100, shrink=False)
@given(case=frames_cases())
def test_frames(server: ServerProcess, case: FramesCase) -> None:
    frames_example(server, case)


def test_a_deflated_continuation_needs_no_compressor_from_the_connection() -> None:
    # A draw the fuzzer makes now and then (a -n 4 run met it): client_no_context_takeover
    # negotiated, and a compressed continuation before any message, or after one ended.
    # websockets' extension holds no compressor there (AttributeError: 'encoder').
    negotiated = PerMessageDeflate(False, True, 15, 15)
    for opcode in (0, 2, 0):
        wire = FrameSpec(opcode, Payload(b"abc", 10), compress="deflate").serialize(negotiated)
        assert wire[0] & 0x0F == opcode and len(wire) > 6
