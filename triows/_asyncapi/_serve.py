"""The document over HTTP (``App(asyncapi_path=...)``) and as JSON text (``triows asyncapi``)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from .._http import Request, Response

if TYPE_CHECKING:
    from .._app import App

__all__ = ["document_json", "serve_document"]

#: A Host header fit to be named as the document's server (it comes from the client).
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def serve_document(app: App, path: str) -> None:
    """Register a GET route at ``path`` answering with ``app.asyncapi()`` as JSON.

    The document is built on each request (routes added later are included) and
    names the server it was fetched from: ``ws://`` (``wss://`` under HTTPS) and
    the request's host (left out when the Host header is not a plain host[:port]).
    """

    async def asyncapi_document(request: Request) -> Response:
        url = request.url
        scheme = "wss" if url.scheme == "https" else "ws"
        server = f"{scheme}://{url.netloc}" if _HOST.fullmatch(url.netloc) else None
        return Response.json(app.asyncapi(server=server))

    app.route(path)(asyncapi_document)


def document_json(
    app: App, *, title: str | None = None, version: str | None = None, server: str | None = None
) -> str:
    """``app.asyncapi()`` as indented JSON text, for ``triows asyncapi``."""
    document = app.asyncapi(title=title, version=version, server=server)
    return json.dumps(document, indent=2, ensure_ascii=False)
