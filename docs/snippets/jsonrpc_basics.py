from dataclasses import dataclass

import triows
from triows import JSONRPC, RPCError


@dataclass
class Point:
    x: float
    y: float


rpc = JSONRPC()


@rpc.method
async def add(a: int, b: int = 0) -> int:
    return a + b


@rpc.method("geometry.midpoint")
async def midpoint(p: Point, q: Point) -> Point:
    return Point((p.x + q.x) / 2, (p.y + q.y) / 2)


@rpc.method
async def divide(a: float, b: float) -> float:
    if b == 0:
        raise RPCError(4000, "division by zero", {"b": b})
    return a / b


app = triows.App()
app.jsonrpc_route("/rpc", rpc)
