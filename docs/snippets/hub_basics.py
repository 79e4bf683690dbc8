import trio

import triows


async def main() -> list[object]:
    received: list[object] = []
    # Standalone: `async with` runs the hub; App(hub=...) does it for an App.
    async with triows.Hub() as hub, hub.subscribe("news") as news:
        await hub.publish("news", "plain text")  # str
        await hub.publish("news", b"\x00\x01")  # bytes
        await hub.publish("news", {"headline": "hub ships", "tags": ["trio"]})  # JSON-able
        for _ in range(3):
            received.append(await news.receive())
    return received


async def in_your_own_nursery() -> object:
    hub = triows.Hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)  # returns once the hub is usable
        async with hub.subscribe("news") as news:
            await hub.publish("news", "hello")
            message = await news.receive()
        nursery.cancel_scope.cancel()  # stops the hub
    return message
