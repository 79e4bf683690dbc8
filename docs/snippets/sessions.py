from typing import Any

import triows
from triows import Request, WebSocket

app = triows.App(session_secret="change me: a long random string")


@app.route("/login", methods=["POST"])
async def login(request: Request) -> dict[str, Any]:
    # Check the password for real here.  Changing request.session sets the cookie.
    request.session["user"] = request.json()["user"]
    return {"logged_in": True}


@app.websocket_route("/me")
async def me(ws: WebSocket) -> None:
    user = ws.session.get("user")  # read-only: a WebSocket cannot set cookies
    if user is None:
        await ws.close(4401, "log in first")
        return
    await ws.send(f"hello, {user}")
