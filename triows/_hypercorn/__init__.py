"""The hypercorn backend of ``triows.serve``: hypercorn 0.18, extended by declared subclasses.

Nothing here patches hypercorn: ``serve_hypercorn`` (``_serve``) runs hypercorn's
protocols with subclasses bound where hypercorn builds each object (``_tcp``:
the TCP server; ``_protocols``: HTTP/1.1 and HTTP/2; ``_stream``: the
WebSocket stream, its wsproto connection and message buffer), each override
calling hypercorn's method and adding behaviour before or after it.  The App
sees plain ASGI.  What hypercorn 0.18 gets wrong,
and what this backend does about it (docs/deployment.md has the user's view):

- it reports every close the client starts as 1006: the app gets the code and
  reason of the client's close frame (``TriowsConnection`` records it; the
  stream's ``app_put`` rewrites the disconnect);
- it sends pings but never checks pongs: the keepalive both servers share
  (``triows._serving._keepalive``, one task per server) pings every WebSocket,
  counts only the pong that carries its ping's payload, and closes a client
  whose pong is late with 1011 ``"ping timeout"`` (the app sees 1006);
- wsproto inflates a permessage-deflate frame before the size check (a 1 MiB
  frame took 1.3 GB): permessage-deflate is not negotiated;
- after a 1009 its buffer keeps every later fragment: ``BoundedBuffer``
  refuses before writing, and the stream drains the client's frames to its
  close frame without keeping them;
- some packets (a handshake followed by a body or a pipelined request) make
  h11's LocalProtocolError escape its TCPServer and end the whole server:
  ``TriowsTCPServer.run`` contains any error to its connection;
- its socket writes are shielded, so a client that stops reading holds the
  shutdown: at the shutdown's deadline the server closes the sockets left;
- it drops a send after the client left silently (ASGI asks for an OSError:
  the core's ``ClientGone``, with the close code), fails a connection on a bad
  frame without a close frame (1002, 1007 are sent first), accepts any
  ``Sec-WebSocket-Key``, refuses a bad version with a bare 400 and serves an
  upgrade without ``Connection: Upgrade`` as plain HTTP (the handshake rule
  both servers share, ``triows._serving._handshake``, answers them), and lets
  a write race the connection's close with ``trio.BusyResourceError``;
- it listens with a backlog of 100: ``serve()`` passes its ``backlog`` (1024).

At shutdown, ``App.close_connections()`` closes every view's WebSocket with 1001
through ASGI before the server stops: that needs nothing from hypercorn.
"""

from ._serve import hypercorn_config, serve_hypercorn

__all__ = ["hypercorn_config", "serve_hypercorn"]
