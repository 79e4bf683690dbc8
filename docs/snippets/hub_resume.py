import triows


async def main() -> tuple[bool, list[object], bool]:
    async with triows.Hub(history=100) as hub:
        await hub.publish("news", "first")
        # A client stores the position of the last message it got...
        seen = await hub.publish("news", "second")
        # ...is away while more is published...
        await hub.publish("news", "third")
        await hub.publish("news", "fourth")
        # ...and comes back with it: the missed messages first, then live ones.
        async with hub.subscribe("news", since=seen) as news:
            await hub.publish("news", "fifth")
            missed = [await news.receive() for _ in range(3)]
            recovered = news.recovered  # True: the history covered everything
            resume_from = news.position  # what the client stores now
        # A position the history cannot vouch for: recovered is False.
        async with (
            triows.Hub(history=100) as restarted,
            restarted.subscribe("news", since=resume_from) as news,
        ):
            return recovered, missed, news.recovered
