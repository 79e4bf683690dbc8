import triows


async def main() -> tuple[list[object], list[object], bool]:
    async with triows.Hub(history=100) as hub:
        for n in range(1, 6):
            await hub.publish("chat", f"message {n}")
        # A new page: the 3 newest messages first, then live ones.
        async with hub.subscribe("chat", last=3) as chat:
            await hub.publish("chat", "message 6")
            shown = [await chat.receive() for _ in range(4)]
            joined = chat.position  # moves with every message returned
        # Where the page joined, just before the messages it first showed:
        # a reload that resumes from there shows them again, each once.
        async with hub.subscribe("chat", last=3) as again:
            start = again.position
        async with hub.subscribe("chat", since=start) as reload:
            replayed = [await reload.receive() for _ in range(len(reload))]
            return shown, replayed, reload.recovered and joined != start
