"""Free loopback ports for the servers the tests start in their own processes.

A port found free here is free only at that moment: between the probe's close and
the server's own bind, another process can take it (another pytest-xdist worker,
a benchmark server, or any connection's ephemeral port, drawn from the same
range).  So a test starts such a server in a loop over :func:`fresh_ports`, a new
port per try, and tries again only when the server reports its address in use;
past the last try it fails loudly with the server's own output.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

__all__ = ["PORT_TRIES", "free_port", "fresh_ports"]

#: Tries before a test gives up on finding a port its server can bind: each lost
#: race is rare, so five in a row means something else is wrong.
PORT_TRIES = 5


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fresh_ports(tries: int = PORT_TRIES) -> Iterator[int]:
    """``tries`` ports, each picked by :func:`free_port` when the loop asks for it."""
    for _ in range(tries):
        yield free_port()
