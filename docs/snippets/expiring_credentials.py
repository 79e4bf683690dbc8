import datetime

import triows
from triows import ClientError, WebSocket

app = triows.App()


class BadToken(ClientError):
    """Refuses the handshake (403), or closes with 1008 after accept."""


def verify(token: str) -> tuple[str, datetime.datetime]:
    """Your token check (a JWT library, a session store): the user and the expiry."""
    user, _, seconds = token.partition(":")
    if not user or not seconds.isdigit():
        raise BadToken("invalid token")
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=int(seconds))
    return user, expires


@app.provider
async def user(connection: WebSocket) -> str:
    # Checked once, before the handshake is answered: a bad token gets 403.
    name, expires = verify(connection.query_parameters.get("token", ""))
    connection.expire_at(expires)
    return name


@app.websocket_route("/feed", receive_type="json")
async def feed(ws: WebSocket, user: str) -> None:
    async for message in ws:
        if message.get("type") == "refresh":
            # A fresh token moves the deadline; without one, at the deadline the
            # view is cancelled and the client gets 1008 "credentials expired".
            name, expires = verify(message["token"])
            if name != user:
                raise BadToken("a refresh must be for the same user")
            ws.expire_at(expires)
            await ws.send_json({"type": "refreshed"})
        else:
            await ws.send_json({"type": "echo", "data": message})
