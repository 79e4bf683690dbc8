import triows


async def drop_oldest() -> tuple[list[int], int]:
    async with triows.Hub() as hub, hub.subscribe("n", max_buffer=3) as numbers:
        for n in range(5):
            await hub.publish("n", n)  # never waits: 3 and 4 push out 0 and 1
        kept = [await numbers.receive() for _ in range(len(numbers))]
        return kept, numbers.dropped  # [2, 3, 4], 2


async def disconnect() -> str:
    async with (
        triows.Hub() as hub,
        hub.subscribe("n", max_buffer=3, on_overflow="disconnect") as numbers,
    ):
        for n in range(4):
            await hub.publish("n", n)  # the 4th message overflows: subscription ends
        try:
            await numbers.receive()
        except triows.SlowConsumer as exc:
            return str(exc)  # "subscriber to 'n' fell 3 messages behind"
        return "not reached"
