from collections.abc import Awaitable, Callable

import trio

import triows


async def follow(
    hub: triows.Hub,
    topic: str,
    since: str | None,
    handle: Callable[[object, str], Awaitable[None]],
    resync: Callable[[], Awaitable[None]],
) -> None:
    """Every message of ``topic`` after ``since``, exactly once, or a resync."""
    while True:
        try:
            async with hub.subscribe(topic, since=since) as messages:
                if not messages.recovered:
                    await resync()  # history lost or too short: reload the state
                async for message in messages:
                    await handle(message, messages.position)
        except triows.Lagged as lagged:
            since = lagged.position  # fell behind: pick up where it stopped
        except triows.HubUnavailable:
            await trio.sleep(0.5)  # Redis is down: try again from the same position
