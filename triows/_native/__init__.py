"""The native backend: triows on trio sockets, with no ASGI server in between.

``triows.serve(app, backend="native")`` runs this instead of hypercorn.  HTTP
requests go through the App's ASGI entry point (h11 on the socket); a WebSocket
is served through the core's Transport seam (``triows._connection._transport``):
each connection is a :class:`~triows._native._connection.NativeConnection`
handed to ``App.serve_websocket``, no ASGI scope or event in between.

* The **view's own receive()** reads the socket while it waits (plain TCP);
  a **reader task** takes over once the view stays away from ``receive()``
  (``_reading``; under TLS from the handshake on).  Either feeds websockets'
  sans-I/O ``ServerProtocol`` (whole data frames through a fast path) and
  puts complete messages into a small bounded inbox: a view that stops
  reading stops the reader (backpressure).  Pings are answered, the client's
  close echoed, and the client's departure reported through the core's
  callback as soon as it is seen.
* The **writer** (``_writer``) serializes writes with a flag, not a lock, and
  writes a batch of messages in one ``socket.send``.  A server frame is never
  masked, so on a connection without permessage-deflate one frame serves every
  client of a :class:`~triows.Broadcast`.
* One **keepalive** task per server pings every connection and drops one whose
  pong (with the payload of the ping) is late.

Protocol handling is websockets' sans-I/O ``ServerProtocol`` (RFC 6455 framing,
handshake validation, C-accelerated unmasking); plain HTTP requests for the App's
HTTP routes go through h11.  Neither is hand-written here.
"""

from __future__ import annotations

from .._connection._transport import ClientGone
from ._server import serve_native

__all__ = ["ClientGone", "serve_native"]
