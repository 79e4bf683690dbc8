import trio

import triows.client
from triows.client import Gap, Message, PresenceChange


async def main(url: str) -> None:
    async with (
        triows.client.connect(url) as live,
        live.subscribe("lobby", presence=True) as lobby,
    ):
        sent = await live.publish("lobby", {"text": "hello"})  # its position, once published
        async for event in lobby:
            if isinstance(event, PresenceChange):
                print("online:", sorted(event.members))
            elif isinstance(event, Gap):
                print("missed messages after", event.position, "- reload the state")
            elif isinstance(event, Message):
                print(event.data["text"])
                if event.position == sent:
                    break  # leaving the blocks unsubscribes and closes


if __name__ == "__main__":
    trio.run(main, "ws://127.0.0.1:8000/live?token=token-ann")
