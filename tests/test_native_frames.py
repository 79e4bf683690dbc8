"""The native server's own frame code against websockets' reference implementation.

``encode_frame`` packs a server frame's header itself, and the native protocol's
``receive_frames`` parses whole unfragmented data frames itself before handing
anything else to websockets' parser: both must give exactly websockets' bytes,
messages, close codes and answers, whatever the frames and however the socket
splits them.
"""

from __future__ import annotations

import os
import random

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Protocol

from triows._connection._frames import encode_frame
from triows._native._protocol import _ServerProtocol

LIMIT = 1000


def test_encode_frame_is_websockets_serialize() -> None:
    samples: list[str | bytes] = ["", "x", "é" * 50, "a" * 125, "a" * 126, "a" * 65535]
    samples += ["a" * 65536, b"", b"\x00" * 200, b"z" * 70000]
    for data in samples:
        if isinstance(data, str):
            reference = Frame(Opcode.TEXT, data.encode()).serialize(mask=False)
        else:
            reference = Frame(Opcode.BINARY, data).serialize(mask=False)
        assert encode_frame(data) == reference


def _open_protocol() -> _ServerProtocol:
    """A protocol past its handshake, at its frame parser (as ``handshake`` leaves it)."""
    protocol = _ServerProtocol(max_size=LIMIT)
    protocol.parser = Protocol.parse(protocol)
    next(protocol.parser)
    protocol.state = OPEN
    return protocol


def _frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def _random_frames(rng: random.Random) -> bytes:
    frames = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.4:
            frames.append(_frame(Opcode.TEXT, ("é" * rng.randint(0, 80)).encode()))
        elif kind < 0.7:
            size = rng.choice([0, 5, 125, 126, 300, LIMIT - 1, LIMIT])
            frames.append(_frame(Opcode.BINARY, os.urandom(size)))
        elif kind < 0.78:
            frames.append(_frame(Opcode.PING, b"p"))
        elif kind < 0.83:
            frames.append(_frame(Opcode.TEXT, b"\xff\xfe"))  # invalid UTF-8: 1007
        elif kind < 0.88:
            frames.append(_frame(Opcode.BINARY, b"x" * (LIMIT + 1)))  # too big: 1009
        elif kind < 0.92:
            frames.append(Frame(Opcode.TEXT, b"u").serialize(mask=False))  # unmasked: 1002
        elif kind < 0.96:
            frames.append(_frame(Opcode.TEXT, b"ab", fin=False) + _frame(Opcode.CONT, b"cd"))
        else:
            frames.append(_frame(Opcode.CLOSE, b"\x03\xe8bye"))
    return b"".join(frames)


def test_the_protocol_keeps_at_most_29_attributes() -> None:
    # CPython 3.11 shares an instance dict's keys only up to 29 attributes; past
    # them, every connection's protocol dict grows from 296 to 1,584 bytes.
    assert len(vars(_open_protocol())) <= 29


def test_receive_frames_is_websockets_parser() -> None:
    rng = random.Random(15)
    for _ in range(2000):
        wire = _random_frames(rng)
        cuts = sorted(rng.sample(range(1, len(wire)), min(rng.randint(0, 3), len(wire) - 1)))
        chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
        results = []
        for fast in (True, False):
            protocol = _open_protocol()
            messages: list[str | bytes] = []
            for chunk in chunks:
                if fast:
                    messages += protocol.receive_frames(chunk)
                else:
                    protocol.receive_data(chunk)
                messages += protocol.take_messages()
            close = protocol.close_sent
            answer = b"".join(protocol.data_to_send())
            results.append((messages, protocol.state, close and close.code, answer))
        assert results[0] == results[1], wire


def test_a_read_ending_right_after_a_header_is_not_a_frame_boundary() -> None:
    # A frame's header (and mask) in one read, its payload in the next: the
    # parser then waits inside that frame with an empty buffer, and the payload
    # must not be taken for a new frame, even when it looks like one (here a
    # zero mask key leaves a payload that is itself a whole masked frame).
    # Every cut of a few frames, one and two cuts, against websockets' parser.
    inner = _frame(Opcode.BINARY, b"inner frame")
    decoy = inner + b"\x00" * (125 - len(inner))
    wire = bytes([0x82, 0x80 | len(decoy)]) + b"\x00\x00\x00\x00" + decoy
    wire += _frame(Opcode.TEXT, b"x" * 300) + _frame(Opcode.TEXT, b"short")
    expected: list[str | bytes] = [decoy, "x" * 300, "short"]
    for first in range(1, len(wire)):
        for second in (first, *range(first + 1, min(first + 12, len(wire)))):
            protocol = _open_protocol()
            messages: list[str | bytes] = []
            for chunk in (wire[:first], wire[first:second], wire[second:]):
                if chunk:
                    messages += protocol.receive_frames(chunk)
                    messages += protocol.take_messages()
            assert messages == expected, (first, second)
            assert protocol.state is OPEN and protocol.close_sent is None
