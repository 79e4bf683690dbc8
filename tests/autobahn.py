"""Run the Autobahn WebSocket test cases against triows with kosoku.

kosoku (the `test` extra) is the Autobahn fuzzing client for Python 3: it runs
the Autobahn TestSuite's case files against a server and writes Autobahn's
``index.json``.  This module serves an echo App with ``triows.serve`` on
loopback, runs kosoku's ``fuzzingclient`` against it in a subprocess, and
summarizes the report.  ``tests/test_autobahn.py`` uses it; ``scripts/autobahn``
runs it from the command line::

    scripts/autobahn [--backend native|native-tls|hypercorn] [--out DIR] [CASE ...]

(``CASE``: an id or glob such as ``9.*``; default: ``CASES``, without 12.* and
13.* on hypercorn.)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

import triows
from triows.testing import live_server

#: Cases 1 to 10 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8,
#: closing, limits and performance, auto-fragmentation) and the compression
#: subset: 12.1 and 13.1 (permessage-deflate with the default parameters).
CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.1.*", "13.1.*")

#: Verdicts that pass (Autobahn: still conformant).
PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})

#: Every case that may end NON-STRICT or INFORMATIONAL, with the reason (mirrored
#: in docs/conformance.md).  Which of them do in a given run depends on timing.
DOCUMENTED: dict[str, str] = {
    **dict.fromkeys(
        ["3.2", "3.3", "3.4", "4.1.3", "4.1.4", "4.1.5", "4.2.3", "4.2.4", "4.2.5"],
        "the case sends a valid message, then a frame with reserved bits or a reserved "
        "opcode; the server fails the connection with 1002 as required, but when the "
        "bad frame arrives in the same read as the message, the echo of the message "
        "is not sent first (Autobahn would like the echo: SHOULD-level)",
    ),
    "5.15": "a continuation frame after the message ended: the server fails the "
    "connection (1002) as required; the echo of the first message may or may not "
    "have been sent before, as in 3.2",
    **dict.fromkeys(
        ["6.4.1", "6.4.2", "6.4.3", "6.4.4"],
        "invalid UTF-8 split across fragments: the connection is failed with 1007 once "
        "the message is complete, not at the first invalid byte (fail-fast is a "
        "SHOULD); the hypercorn backend (wsproto) fails fast",
    ),
    "7.1.6": "INFORMATIONAL by design: a large message, then a close, then a ping; "
    "records whether the server answered the close before sending the whole echo",
    "7.13.1": "INFORMATIONAL by design: close code 5000 (out of range in RFC 6455, "
    "unassigned): the server fails the connection with 1002",
    "7.13.2": "INFORMATIONAL by design: close code 65535, as 7.13.1",
}


def echo_app() -> triows.App:
    """An App echoing every message on ``/``: text as text, binary as binary."""
    app = triows.App()

    # Autobahn fails connections on purpose (1002, 1007): not errors worth a
    # traceback in the server's log.
    @app.websocket_route("/", caught_close_codes=all)
    async def echo(ws: triows.WebSocket) -> None:
        while True:
            event = await ws.receive_event()
            if event["type"] != "websocket.receive":
                return
            await ws.send_event(
                {"type": "websocket.send", "text": event.get("text"), "bytes": event.get("bytes")}
            )

    return app


def cases_for(backend: str, cases: Sequence[str] = CASES) -> tuple[str, ...]:
    """``cases`` without the compression ones (12.*, 13.*) on the hypercorn backend,
    which does not negotiate permessage-deflate (docs/deployment.md)."""
    if backend == "hypercorn":
        return tuple(case for case in cases if not case.startswith(("12.", "13.")))
    return tuple(cases)


def kosoku_command(url: str, cases: Sequence[str], outdir: Path, parallelism: int) -> list[str]:
    kosoku = Path(sys.executable).parent / "kosoku"
    command = [str(kosoku), "--outdir", str(outdir), "--parallelism", str(parallelism)]
    for case in cases:
        command += ["--include", case]
    return [*command, url]


async def run(
    backend: str,
    cases: Sequence[str],
    outdir: Path,
    *,
    parallelism: int = 2,
    timeout: float = 600,
) -> dict[str, dict[str, Any]]:
    """Run ``cases`` against the echo App on ``backend``; return index.json's cases.

    ``native-tls``: the native server over TLS, which kosoku (plain ws:// only)
    reaches through :func:`tls_relay`, a local relay that speaks TLS to the server.
    """
    server_backend, options = backend, {}
    certificate = None
    if backend == "native-tls":
        server_backend = "native"
        certificate = self_signed_certificate(outdir)
        options = {"certfile": str(certificate[0]), "keyfile": str(certificate[1])}
    with trio.fail_after(timeout):
        # 16 MiB: the 9.* cases send messages of up to 16 MiB.
        async with (
            live_server(
                echo_app(), backend=server_backend, max_message_size=16 * 1024 * 1024, **options
            ) as server,
            trio.open_nursery() as nursery,
        ):
            port = server.port
            if certificate is not None:
                context = ssl.create_default_context(cafile=str(certificate[0]))
                port = await nursery.start(tls_relay, server.port, context)
            command = kosoku_command(f"ws://127.0.0.1:{port}/", cases, outdir, parallelism)
            # kosoku exits 1 when a case fails; the report says which.
            await trio.run_process(command, check=False, capture_stdout=True)
            nursery.cancel_scope.cancel()
    index = json.loads((outdir / "index.json").read_text())
    (agent,) = index.values()
    return dict(agent)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 in ``directory``: (cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key


async def tls_relay(
    server_port: int,
    context: ssl.SSLContext,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Relay plain TCP connections on a free loopback port to a TLS server (a task)."""

    async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await sink.aclose()

    async def relay(client: trio.SocketStream) -> None:
        tcp = await trio.open_tcp_stream("127.0.0.1", server_port)
        server = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, server)
            nursery.start_soon(pipe, server, client)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(relay, listeners)


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, collections.Counter[str]]:
    """Verdict counts per category (the case id's first number)."""
    counts: dict[str, collections.Counter[str]] = {}
    for case_id, result in sorted(results.items(), key=lambda item: _key(item[0])):
        category = case_id.split(".")[0]
        verdict = result["behavior"]
        if result["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            verdict = f"{verdict}/{result['behaviorClose']}"
        counts.setdefault(category, collections.Counter())[verdict] += 1
    return counts


def problems(results: dict[str, dict[str, Any]]) -> list[str]:
    """Cases that fail, or pass with a NON-STRICT/INFORMATIONAL verdict not documented."""
    found = []
    for case_id, result in sorted(results.items(), key=lambda item: _key(item[0])):
        behavior, close = result["behavior"], result["behaviorClose"]
        if behavior not in PASSING or close not in ("OK", "INFORMATIONAL"):
            found.append(f"{case_id}: {behavior} (closing: {close})")
        elif behavior != "OK" and case_id not in DOCUMENTED:
            found.append(f"{case_id}: {behavior}, not in DOCUMENTED")
    return found


def table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the verdict counts per category."""
    counts = summarize(results)
    verdicts = sorted({v for c in counts.values() for v in c}, key=_verdict_order)
    lines = [
        "| category | cases | " + " | ".join(verdicts) + " |",
        "|---" * (len(verdicts) + 2) + "|",
    ]
    for category, counter in counts.items():
        cells = [str(counter.get(v, 0)) for v in verdicts]
        lines.append(f"| {category} | {sum(counter.values())} | " + " | ".join(cells) + " |")
    total = collections.Counter[str]()
    for counter in counts.values():
        total.update(counter)
    cells = [str(total.get(v, 0)) for v in verdicts]
    lines.append(f"| all | {sum(total.values())} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _key(case_id: str) -> list[int]:
    return [int(part) for part in case_id.split(".")]


def _verdict_order(verdict: str) -> tuple[int, str]:
    order = ["OK", "NON-STRICT", "INFORMATIONAL"]
    return (order.index(verdict) if verdict in order else len(order), verdict)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/autobahn", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backend", choices=("native", "native-tls", "hypercorn"), default="native"
    )
    parser.add_argument("--out", type=Path, default=Path("build/autobahn"))
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("cases", nargs="*", default=[])
    args = parser.parse_args(argv)
    args.cases = list(cases_for(args.backend, args.cases or CASES))
    outdir = args.out / args.backend
    results = trio.run(lambda: run(args.backend, args.cases, outdir, parallelism=args.parallelism))
    print(f"Autobahn (kosoku) against triows.serve(backend={args.backend!r}): {outdir}/index.json")
    print(table(results))
    for case_id, result in sorted(results.items(), key=lambda item: _key(item[0])):
        if result["behavior"] != "OK" or result["behaviorClose"] != "OK":
            print(f"  {case_id}: {result['behavior']} (closing: {result['behaviorClose']})")
    found = problems(results)
    for problem in found:
        print(f"PROBLEM {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
