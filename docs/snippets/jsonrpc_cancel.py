import trio

import triows
from triows import JSONRPC, RPCConnection

rpc = JSONRPC()
hub = triows.Hub()
app = triows.App(hub=hub)


@rpc.method("reports.build", timeout=10.0)
async def build_report(rows: int) -> list[int]:
    report = []
    try:
        for row in range(rows):
            await trio.sleep(0.1)  # slow work: a cancel request or the timeout lands here
            report.append(row)
        return report
    finally:
        print(f"report stopped after {len(report)} of {rows} rows")


@rpc.method
async def watch(topic: str, connection: RPCConnection, hub: triows.Hub) -> str:
    # Forward a Hub topic as notifications, for as long as the client stays.
    async def forward(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with hub.subscribe(topic) as messages:
            task_status.started()  # subscribed: the answer below may go out
            async for message in messages:
                await connection.notify("news", {"topic": topic, "message": message})

    await connection.nursery.start(forward)
    return f"watching {topic}"


@rpc.on_connect
async def welcome(connection: RPCConnection) -> None:
    # Runs when a client connects, before its first call is read.
    await connection.notify("welcome", {"methods": sorted(rpc.methods)})


app.jsonrpc_route("/rpc", rpc, max_concurrent=4)
