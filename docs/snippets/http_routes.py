from typing import Any

import triows
from triows import Request, Response

app = triows.App()


@app.route("/")
async def index(request: Request) -> str:
    return "<h1>Chat</h1>"  # str: an HTML page


@app.route("/api/rooms/{room}", methods=["GET", "POST"])
async def room(request: Request, room: str, limit: int = 10) -> dict[str, Any]:
    body = request.json() if request.method == "POST" else None
    return {"room": room, "limit": limit, "posted": body}  # dict or list: JSON


@app.route("/robots.txt")
async def robots(request: Request) -> Response:
    return Response("User-agent: *\nDisallow:\n", headers={"cache-control": "max-age=3600"})


async def legacy(scope: Any, receive: Any, send: Any) -> None:
    # Any ASGI app: Starlette, Quart-trio, or a plain function like this one.
    body = f"legacy app saw {scope['path']} under {scope['root_path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


app.mount("/legacy", legacy)
