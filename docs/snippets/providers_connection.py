import triows
from triows import Request, WebSocket

app = triows.App()
TOKENS = {"s3cret": "ann"}


@app.provider
async def user(connection: WebSocket | Request) -> str:
    # The WebSocket or Request this value is created for: one provider serves both.
    token = connection.headers.get("authorization", "").removeprefix("Bearer ")
    return TOKENS.get(token, "guest")


@app.websocket_route("/hello")
async def hello(ws: WebSocket, user: str) -> None:
    await ws.send(f"hello, {user}")


@app.route("/whoami")
async def whoami(request: Request, user: str) -> str:
    return user
