from hypercorn.middleware import ProxyFixMiddleware

import triows
from triows import WebSocket

app = triows.App()


@app.websocket_route("/where")
async def where(ws: WebSocket) -> None:
    host = ws.client[0] if ws.client else "unknown"
    await ws.send(f"{ws.url.scheme}://{ws.url.netloc} from {host}")


# Trust one proxy's X-Forwarded-For/-Proto/-Host headers; serve with
# `hypercorn -k trio proxy:proxied`.
# (hypercorn's own type hints are stricter than ASGI's plain dicts, hence the ignore.)
proxied = ProxyFixMiddleware(app, mode="legacy", trusted_hops=1)  # type: ignore[arg-type]
