"""The ticker example: a background publisher, many clients, slow ones dropped."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from examples import ticker
from triows.testing import TestClient, live_server


@pytest.fixture(autouse=True)
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ticker, "INTERVAL", 0.01)


async def test_many_clients_receive_consecutive_ticks() -> None:
    async with (
        TestClient(ticker.app) as client,
        client.websocket_connect("/ticker") as a,
        client.websocket_connect("/ticker") as b,
    ):
        first_a = (await a.receive_json())["tick"]
        first_b = (await b.receive_json())["tick"]
        for expected in range(first_a + 1, first_a + 5):
            assert (await a.receive_json())["tick"] == expected
        for expected in range(first_b + 1, first_b + 5):
            assert (await b.receive_json())["tick"] == expected


async def test_a_client_that_stops_reading_is_dropped_with_1008(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Big ticks fill the slow client's TCP buffers quickly, so the server's send
    # blocks and the subscription's buffer overflows, as with a slow phone on 3G.
    async def big_ticks() -> None:
        for n in range(10_000):
            await ticker.hub.publish("ticks", {"tick": n, "pad": "x" * 65536})
            await trio.sleep(0.002)

    monkeypatch.setattr(ticker, "tick_forever", big_ticks)
    async with live_server(ticker.app) as server:
        with trio.fail_after(20):
            async with open_websocket_url(server.url("/ticker"), message_queue_size=0) as slow:
                # Not reading: wait until the hub dropped the slow subscription
                # (polls a set the hub shrinks; bounded by fail_after).
                await slow.get_message()
                while ticker.hub.has_subscribers("ticks"):  # noqa: ASYNC110
                    await trio.sleep(0.01)
                # Now read what was buffered: the server's close frame comes last.
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await slow.get_message()
                assert closed.value.reason is not None
                assert closed.value.reason.code == 1008
