"""The connection core: the Transport seam, the lifecycle, the WebSocket, outgoing frames."""
