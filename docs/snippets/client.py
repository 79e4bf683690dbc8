import sys

import trio
from trio_websocket import open_websocket_url


async def talk(url: str) -> str:
    async with open_websocket_url(url) as connection:
        await connection.send_message("hello")
        reply = await connection.get_message()
    return str(reply)


if __name__ == "__main__":
    # python client.py ws://127.0.0.1:8000/echo
    print(trio.run(talk, sys.argv[1]))
