"""The hypercorn fixes that ``triows.serve`` and ``triows run`` apply.

The package: ``_config`` (the config that turns them on), ``_timers`` (one task
per server for keepalive and idle timeouts), ``_writes`` (batches and direct
writes), ``_install`` (the wrappers themselves).

hypercorn 0.18's WebSocket stream (``hypercorn.protocol.ws_stream.WSStream``):

1. reports every client-initiated close to the app as code 1006, dropping the code
   and reason from the client's close frame; and after a 1009 (message too big) it
   tells the app nothing until the socket closes;
2. silently discards ``websocket.send`` events once the client has gone, where the
   ASGI spec asks for an ``OSError`` so the app can tell;
3. sends pings but never checks that pongs come back, so a peer that vanished
   without closing (or stopped reading) holds its connection and view forever.
   With a TriowsConfig, one :class:`Keepalive` task per server pings and closes
   a connection whose pong is late: the view sees a disconnect with code 1006
   and reason ``"ping timeout"``;
4. fails a connection on a client's protocol error (bad frame, invalid UTF-8)
   by dropping the TCP connection without a close frame: with a TriowsConfig the
   client gets a close frame with the code (1002, 1007) first;
5. accepts any ``Sec-WebSocket-Key`` (RFC 6455: base64 of 16 bytes) and refuses
   an unsupported ``Sec-WebSocket-Version`` with a bare 400: triows refuses a bad
   key with 400, and a wrong version with 426 and ``Sec-WebSocket-Version: 13``;
6. (its trio ``TCPServer``) lets a write race the connection's close: ``_close()``
   half-closes the stream without the send lock, and a concurrent write then
   fails with ``trio.BusyResourceError``, which reaches the app's ``send``.  With
   a TriowsConfig that write counts as a closed connection, as ``_close()``
   itself counts the race.

It also adds triows' ``triows.send_batch`` extension (see ``triows._broadcast``):
a batch of messages is framed by wsproto (or, with no extension negotiated,
taken from the frames a :class:`~triows.Broadcast` shares) and written as one
``Data`` event, so one socket write.  Its ``send_now`` writes a batch from the
calling task without yielding (every ``WebSocket.send``, and a hub delivering
to an idle subscriber): when
the connection's send lock is free, the frames go to the socket with one
non-blocking write; a tail the kernel did not take waits in
``TCPServer._triows_pending``, which the connection's next write (or a task
spawned to flush it) sends first, under the lock.

And it trims two per-connection costs of hypercorn's trio ``TCPServer``: its
idle timeout (the slowloris guard before a request head, and between
keep-alive requests) is a deadline checked by one :class:`IdleTimeouts` task
per server instead of a task started and cancelled per connection, and with
no ``read_timeout`` its read loop has no ``trio.fail_after(inf)`` scope per
read.

(hypercorn also drops WebSockets without a close frame at shutdown; triows fixes
that in the App itself, see ``App.close_connections``, so it needs no patch.)

The fix wraps a few methods of ``WSStream`` and ``TCPServer`` once per process.
The wrappers act only on streams whose config is a :class:`TriowsConfig`, the
config ``serve()`` builds; a plain ``hypercorn -k trio`` server in the same
process, or any other config, runs hypercorn's code unchanged.  The patch
refuses to install on a hypercorn series it was not tested with.
"""

from ._config import TriowsConfig
from ._install import TESTED_SERIES, ClientGone, install
from ._timers import IdleTimeouts, Keepalive

__all__ = ["TESTED_SERIES", "ClientGone", "IdleTimeouts", "Keepalive", "TriowsConfig", "install"]
