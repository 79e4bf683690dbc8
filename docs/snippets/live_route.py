import triows
from triows import LiveAction, LiveIdentity, WebSocket

hub = triows.Hub(history=1000)  # each topic keeps its last 1000 messages for resuming
app = triows.App(hub=hub)

# Your authentication goes here (a session cookie, a signed token...).
USERS = {"token-ann": "ann", "token-bob": "bob"}


def user_of(ws: WebSocket) -> str | None:
    return USERS.get(ws.query_parameters.get("token", ""))


def identify(ws: WebSocket) -> LiveIdentity | None:
    user = user_of(ws)
    return None if user is None else LiveIdentity(user, {"name": user.title()})


def authorize(ws: WebSocket, topic: str, action: LiveAction) -> bool:
    user = user_of(ws)
    if topic.startswith("inbox:"):  # a private topic: its owner reads it, nobody writes
        return action == "subscribe" and topic == f"inbox:{user}"
    return action != "publish" or user is not None  # rooms: signed-in users speak


app.live_route("/live", hub, authorize=authorize, identify=identify)


@app.route("/notify/{user}", methods=["POST"])
async def notify(request: triows.Request, user: str, hub: triows.Hub) -> dict[str, str]:
    # The server publishes too: live clients of inbox:<user> get it, or resume to it.
    position = await hub.publish(f"inbox:{user}", {"text": "you have mail"})
    return {"position": position}
