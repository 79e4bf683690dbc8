"""The native backend: triows on trio sockets, with no ASGI server in between.

``triows.serve(app, backend="native")`` runs this instead of hypercorn.  The App is
still driven through its ASGI entry point (one ``receive``/``send`` pair per
connection), but the pair is implemented right on the socket:

* ``receive()`` *is* the socket reader.  The App's receive pump (see
  ``_websocket``) is the only task that reads a connection: each call returns a
  queued event, or reads the socket once, feeds the bytes to the sans-I/O
  protocol and returns the first event they produced.  There is no reader task,
  no queue between the socket and the pump, no cancel scope per message.
* ``send()`` serializes a frame with the protocol and writes it with
  ``socket.send``.  Writes are serialized by a flag, not a lock: the first writer
  writes, a concurrent writer (another task broadcasting, the pump answering a
  ping) appends its bytes to a pending list that the active writer flushes in the
  same ``send`` call, so frames never interleave and an uncontended send costs no
  extra scheduling.  A cancelled partial write keeps its unsent tail at the head
  of the pending list, so the byte stream stays well-formed for the next frame
  (the 1001 close at shutdown, typically).

Protocol handling is websockets' sans-I/O ``ServerProtocol`` (RFC 6455 framing,
handshake validation, C-accelerated unmasking); plain HTTP requests for the App's
HTTP routes go through h11.  Neither is hand-written here.

Fan-out: a server frame is never masked, so on a connection without
permessage-deflate the bytes of one broadcast frame are the same for every client.
The connection offers the ``triows.send_batch`` extension (see ``_broadcast``):
a :class:`~triows.Broadcast` is framed once for all its clients, and a batch of
messages goes out in one ``socket.send``.
"""

from __future__ import annotations

from ._server import serve_native
from ._writer import ClientGone

__all__ = ["ClientGone", "serve_native"]
