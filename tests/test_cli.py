"""The command line, as a user runs it: ``python -m triows run`` and the ``triows`` script.

Each test starts a real process from the repository root (the CLI imports the
target from the current directory), on 127.0.0.1 with ``--port 0``, and reads the
port from the line the CLI prints.  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

import triows

from .raw_client import handshake, http_get

ROOT = Path(__file__).resolve().parent.parent
#: The ``triows`` console script installed next to this interpreter.
SCRIPT = Path(sys.executable).with_name("triows")
PYTHON_M = [sys.executable, "-m", "triows"]

STARTUP_TIMEOUT = 30.0  # a cold interpreter importing hypercorn on a slow CI machine
TIMEOUT = 5.0
SERVING = re.compile(r"^triows: serving (\S+) on https?://127\.0\.0\.1:(\d+) \(Ctrl\+C to stop\)$")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@attrs.define
class Server:
    """A CLI server process and the output it printed so far."""

    process: trio.Process
    port: int
    lines: list[str]
    output: trio.abc.ReceiveStream
    pending: bytes = b""

    async def rest_of_output(self) -> str:
        """Everything printed after the serving line, until the process exits."""
        data = self.pending
        with trio.fail_after(TIMEOUT):
            while chunk := await self.output.receive_some(65536):
                data += chunk
        return data.decode(errors="replace")

    async def wait(self) -> int:
        with trio.fail_after(TIMEOUT):
            return await self.process.wait()


@asynccontextmanager
async def cli_server(command: Sequence[str], target: str, *options: str) -> AsyncIterator[Server]:
    """Run ``command run TARGET --host 127.0.0.1 --port 0 [options]``; yield once it serves.

    The process is killed on the way out if the test did not stop it.
    """
    argv = [*command, "run", target, "--host", "127.0.0.1", "--port", "0", *options]
    process = await trio.lowlevel.open_process(
        argv, cwd=ROOT, env=env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines: list[str] = []
        buffer = b""
        port = None
        with trio.fail_after(STARTUP_TIMEOUT):
            while port is None:
                chunk = await process.stdout.receive_some(65536)
                if not chunk:
                    output = "\n".join(lines) + buffer.decode(errors="replace")
                    pytest.fail(f"{argv} exited before serving:\n{output}")
                buffer += chunk
                while b"\n" in buffer and port is None:
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.decode(errors="replace").rstrip("\r")
                    lines.append(line)
                    found = SERVING.match(line)
                    if found:
                        assert found.group(1) == target
                        port = int(found.group(2))
        assert 0 < port < 65536
        yield Server(process, port, lines, process.stdout, buffer)
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(TIMEOUT):
                await process.wait()


async def run_to_exit(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run the CLI until it exits (bounded); return its status, stdout and stderr."""
    with trio.fail_after(STARTUP_TIMEOUT):
        result = await trio.run_process(
            argv,
            cwd=ROOT,
            env=env(),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[WebSocketConnection]:
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(url, connect_timeout=TIMEOUT) as ws:
            yield ws


async def receive(ws: WebSocketConnection) -> str | bytes:
    with trio.fail_after(TIMEOUT):
        return await ws.get_message()


async def close_code_after(ws: WebSocketConnection) -> int:
    """Wait for the server to close ``ws``; return its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        await receive(ws)
    assert closed.value.reason is not None
    return closed.value.reason.code


# -- serving ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "stop"),
    [(PYTHON_M, signal.SIGINT), ([str(SCRIPT)], signal.SIGINT), (PYTHON_M, signal.SIGTERM)],
    ids=["python-m-SIGINT", "script-SIGINT", "python-m-SIGTERM"],
)
async def test_run_serves_echo_and_a_signal_closes_clients_with_1001(
    command: list[str], stop: signal.Signals
) -> None:
    async with cli_server(command, "examples.echo:app") as server:
        url = f"ws://127.0.0.1:{server.port}/echo"
        async with connect(url) as ws, connect(url) as idle:
            await ws.send_message("hello")
            assert await receive(ws) == "You said: hello"
            server.process.send_signal(stop)
            assert await close_code_after(ws) == 1001
            assert await close_code_after(idle) == 1001
        assert await server.wait() == 0
        output = await server.rest_of_output()
    assert f"triows: {stop.name}, shutting down" in output
    assert "Traceback" not in output


async def test_console_script_is_installed() -> None:
    assert SCRIPT.is_file(), f"no console script at {SCRIPT}: pip install -e . creates it"
    with trio.fail_after(STARTUP_TIMEOUT):
        result = await trio.run_process(
            [str(SCRIPT), "run", "--help"], cwd=ROOT, env=env(), capture_stdout=True
        )
    assert b"module:attribute" in result.stdout


async def test_run_serves_the_chat_page_and_room() -> None:
    async with cli_server([str(SCRIPT)], "examples.chat.app:app") as server:
        with trio.fail_after(TIMEOUT):
            response = await http_get(server.port, "/")
        assert response.startswith(b"HTTP/1.1 200")
        assert b"textContent" in response and b"innerHTML" not in response

        # The room speaks the live protocol (docs/protocol.md) at /live.
        url = f"ws://127.0.0.1:{server.port}/live?user=alice"
        async with connect(url) as alice:
            assert json.loads(await receive(alice))["type"] == "welcome"
            subscribe = {"type": "subscribe", "topic": "chat", "since": None}
            await alice.send_message(json.dumps(subscribe))
            start = json.loads(await receive(alice))
            assert start["type"] == "subscribed"
            said = {"type": "message", "text": "hi"}
            publish = {"type": "publish", "topic": "chat", "id": "a1", "data": said}
            await alice.send_message(json.dumps(publish))
            frames = [json.loads(await receive(alice)) for _ in range(2)]
            (message,) = [f for f in frames if f["type"] == "message"]
            assert message["data"]["text"] == "hi" and message["data"]["user"] == "alice"
            async with connect(f"ws://127.0.0.1:{server.port}/live") as bob:
                assert json.loads(await receive(bob))["type"] == "welcome"
                # Resuming from before alice spoke replays her message (the history).
                await bob.send_message(json.dumps({**subscribe, "since": start["position"]}))
                subscribed = json.loads(await receive(bob))
                assert subscribed["type"] == "subscribed" and subscribed["recovered"] is True
                assert json.loads(await receive(bob))["data"] == message["data"]
            server.process.send_signal(signal.SIGINT)
            assert await close_code_after(alice) == 1001
        assert await server.wait() == 0


async def test_run_imports_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "import triows\n"
        "app = triows.App()\n"
        "@app.websocket_route('/hi')\n"
        "async def hi(ws: triows.WebSocket) -> None:\n"
        "    await ws.send('hi from cwd')\n"
    )
    argv = [*PYTHON_M, "run", "myapp:app", "--host", "127.0.0.1", "--port", "0"]
    process = await trio.lowlevel.open_process(
        argv, cwd=tmp_path, env=env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        output = b""
        with trio.fail_after(STARTUP_TIMEOUT):
            while (found := re.search(rb"http://127\.0\.0\.1:(\d+)", output)) is None:
                chunk = await process.stdout.receive_some(65536)
                assert chunk, output.decode(errors="replace")
                output += chunk
        async with connect(f"ws://127.0.0.1:{int(found.group(1))}/hi") as ws:
            assert await receive(ws) == "hi from cwd"
        process.send_signal(signal.SIGINT)
        with trio.fail_after(TIMEOUT):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(TIMEOUT):
                await process.wait()


# -- bad targets -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [PYTHON_M, [str(SCRIPT)]], ids=["python-m", "script"])
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nosuchmodule:app", "triows: cannot import 'nosuchmodule'"),
        ("examples.echo:nope", "triows: module 'examples.echo' has no attribute 'nope'"),
        ("examples.chat.app:INDEX_HTML", "is a str, not a triows.App"),
        (":app", "is not of the form module:app"),
        ("../echo.py:app", "give the module, not a file path, e.g. 'triows run echo:app'"),
        ("/tmp/echo.py:app", "from the directory that holds echo.py"),
        ("my-app.py:app", "must be Python identifiers (e.g. my_app.py, not my-app.py)"),
        ("nosuchfile.py:app", "triows: cannot import 'nosuchfile'"),
    ],
)
async def test_run_refuses_a_bad_target_with_a_clear_message(
    command: list[str], target: str, expected: str
) -> None:
    returncode, stdout, stderr = await run_to_exit(
        [*command, "run", target, "--host", "127.0.0.1", "--port", "0"]
    )
    assert returncode != 0
    assert expected in stderr
    assert "Traceback" not in stderr
    assert "serving" not in stdout


@pytest.mark.parametrize("target", ["examples/echo.py:app", "examples/echo.py"])
async def test_run_serves_a_file_path_target(target: str) -> None:
    async with cli_server(PYTHON_M, target) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
            await ws.send_message("from a path")
            assert await receive(ws) == "You said: from a path"
        server.process.send_signal(signal.SIGINT)
        assert await server.wait() == 0


@pytest.mark.parametrize("command", [PYTHON_M, [str(SCRIPT)]], ids=["python-m", "script"])
async def test_version_prints_the_package_version(command: list[str]) -> None:
    returncode, stdout, _ = await run_to_exit([*command, "--version"])
    assert returncode == 0
    assert stdout == f"triows {triows.__version__}\n"


async def test_run_without_a_target_prints_usage() -> None:
    with trio.fail_after(STARTUP_TIMEOUT):
        result = await trio.run_process(
            [*PYTHON_M, "run"], cwd=ROOT, env=env(), capture_stderr=True, check=False
        )
    assert result.returncode == 2
    assert b"usage: triows run" in result.stderr


async def test_run_on_a_port_in_use_fails_with_a_clear_message() -> None:
    listener = trio.socket.socket()
    with listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        returncode, _, stderr = await run_to_exit(
            [*PYTHON_M, "run", "examples.echo:app", "--host", "127.0.0.1", "--port", str(port)]
        )
    assert returncode != 0
    assert f"127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr, stderr


async def test_run_serves_tls(tls_certificate: tuple[Path, Path]) -> None:
    cert, key = tls_certificate
    options = ("--certfile", str(cert), "--keyfile", str(key))
    async with cli_server(PYTHON_M, "examples.echo:app", *options) as server:
        assert server.lines[-1].endswith(f"on https://127.0.0.1:{server.port} (Ctrl+C to stop)")
        context = ssl.create_default_context(cafile=str(cert))
        with trio.fail_after(TIMEOUT):
            url = f"wss://127.0.0.1:{server.port}/echo"
            async with open_websocket_url(url, ssl_context=context) as ws:
                await ws.send_message("secret")
                assert await receive(ws) == "You said: secret"
        server.process.send_signal(signal.SIGINT)
        assert await server.wait() == 0


async def test_run_pings_and_drops_a_client_that_never_answers() -> None:
    options = ("--ping-interval", "0.2", "--ping-timeout", "0.3")
    async with cli_server(PYTHON_M, "examples.echo:app", *options) as server:
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(handshake("/echo"))
                received = b""
                while True:  # bounded by fail_after: the server must close it
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    received += chunk
        head, _, frames = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert frames[:1] == b"\x89", frames  # a ping first; never answered, then dropped


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--certfile", "cert.pem"], "--certfile and --keyfile go together"),
        (["--backlog", "0"], "--backlog must be at least 1"),
        (["--ping-timeout", "0"], "--ping-timeout > 0"),
    ],
)
async def test_run_refuses_bad_option_combinations(options: list[str], message: str) -> None:
    returncode, _, stderr = await run_to_exit([*PYTHON_M, "run", "examples.echo:app", *options])
    assert returncode == 2
    assert message in stderr


def without_id(raw: str | bytes) -> Any:
    """A chat room message without its id (unique per message)."""
    message = json.loads(raw)
    assert isinstance(message.pop("id"), str)
    return message
