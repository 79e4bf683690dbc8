"""Client publish ids in Redis: one publish per id across every worker process.

With a Redis hub, a client whose connection was closed (a worker draining with
1012) resends its unacknowledged publishes to whichever worker it reaches next;
the ids must be known there.  Per id, one Redis key
``triows:live:publish:<identity>:<id>``: ``SET NX`` with an empty value (pending,
for PENDING_TTL) before publishing, then the position (for the window) once
published, deleted if the publish failed.  A resend that finds the position
gets it back (a duplicate); one that finds the id pending waits for the first
attempt, which the session shields from cancellation for a bounded time, so a
draining worker finishes what it began.  A worker killed mid-publish leaves a
pending id that expires after PENDING_TTL: then the resend publishes
(at-least-once, for a crash only).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..hub import HubUnavailable
from ._dedup import DEFAULT_WINDOW

__all__ = ["RedisPublishLog"]

logger = logging.getLogger("triows")

PREFIX = "triows:live:publish:"
#: How long an id stays pending without its publish finishing (a crashed worker).
PENDING_TTL = 10
#: How often a resend checks an id that another worker is publishing.
POLL_INTERVAL = 0.02


class RedisPublishLog:
    """:class:`~triows._live._dedup.PublishLog`'s guarantee, shared through Redis."""

    def __init__(self, url: str, window: float = DEFAULT_WINDOW) -> None:
        self.url = url
        self.window = int(window)
        self._client: Any = None
        self._ready = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the Redis client for the App's lifetime (in ``app.nursery``)."""
        import coredis  # the hub's own extra: it is installed if the hub uses Redis

        client: Any = coredis.Redis.from_url(self.url, decode_responses=True)
        async with client:
            self._client = client
            self._ready.set()
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._client = None

    async def publish_once(
        self, key: tuple[str, str], publish: Callable[[], Awaitable[str | None]]
    ) -> tuple[str | None, bool]:
        """Run ``publish`` unless ``key`` (identity, id) was published within the
        window by any process; see the module's docstring."""
        from coredis.exceptions import RedisError
        from coredis.tokens import PureToken

        client = self._client
        if client is None:
            raise HubUnavailable("the live route's Redis client is not running")
        name = f"{PREFIX}{key[0]}:{key[1]}"
        try:
            with trio.fail_after(PENDING_TTL + 1):
                while not await client.set(name, "", condition=PureToken.NX, ex=PENDING_TTL):
                    value = await client.get(name)
                    if value:
                        return value, True
                    await trio.sleep(POLL_INTERVAL)  # pending elsewhere, or just expired
        except (RedisError, OSError, trio.TooSlowError) as exc:
            raise HubUnavailable(f"cannot check publish id {key[1]!r} in Redis: {exc}") from exc
        try:
            position = await publish()
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await client.delete([name])
            raise
        try:
            await client.set(name, position or "-", ex=self.window)
        except (RedisError, OSError) as exc:
            # Published: say so to the client.  Only the memory of the id failed; a
            # resend after PENDING_TTL would be published again.
            logger.warning("live: publish id %r published but not recorded: %s", key[1], exc)
        return position, False
