import trio

import triows


async def main() -> tuple[dict[str, object], list[triows.PresenceChange]]:
    batches: list[triows.PresenceChange] = []
    async with (
        triows.Hub(presence_interval=0.1) as hub,
        hub.presence_changes("room") as changes,
        trio.open_nursery() as nursery,
    ):

        async def watch() -> None:
            async for change in changes:  # at most one batch per presence_interval
                batches.append(change)

        nursery.start_soon(watch)
        async with hub.presence("room", "alice", {"name": "Alice"}):
            async with (
                hub.presence("room", "alice", {"name": "Alice"}),  # a second tab
                hub.presence("room", "bob", {"name": "Bob"}),
            ):
                members = await hub.members("room")  # alice once, and bob
                await trio.sleep(0.3)
            # Bob left. Alice reloads her page: away for less than presence_interval.
            await trio.sleep(0.3)
        async with hub.presence("room", "alice", {"name": "Alice"}):
            await trio.sleep(0.3)
        await trio.sleep(0.3)  # alice is gone for good
        nursery.cancel_scope.cancel()
    return members, batches
