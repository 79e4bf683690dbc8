"""Signed-cookie sessions, readable and writable by Starlette/FastAPI apps too.

The cookie is the one Starlette's ``SessionMiddleware`` uses: the session as JSON,
base64-encoded, signed and timestamped by ``itsdangerous.TimestampSigner`` with
the shared secret.  So an HTTP app (triows, Starlette or FastAPI) on the same
domain can log a user in and triows' WebSocket views read ``ws.session``.

A cookie that is missing, tampered with, expired, signed with another secret, or
longer than :data:`MAX_COOKIE_SIZE` gives an empty session: never an error.

The ``Cookie`` header is attacker input, read on every request: it is scanned in
linear time for the session cookie alone (``http.cookies`` takes quadratic time on
some values, freezing the event loop).
"""

from __future__ import annotations

import json
import logging
from base64 import b64decode, b64encode
from typing import Any, Literal

import attrs
import itsdangerous

from ._types import Scope

__all__ = ["MAX_COOKIE_SIZE", "SessionConfig", "find_cookie"]

logger = logging.getLogger("triows")

#: A session cookie lives 14 days by default, like Starlette's.
DEFAULT_MAX_AGE = 14 * 24 * 3600

#: The longest session cookie value read, in characters; a longer one is ignored (an
#: empty session).  Browsers store at most 4 KiB per cookie.
MAX_COOKIE_SIZE = 8 * 1024


def find_cookie(header: str, name: str) -> str | None:
    """The value of the cookie ``name`` in a ``Cookie`` header, or None if absent.

    Linear time: a split on ``;``, then on the first ``=``, as Starlette's parser
    does; the last cookie of the name wins, as there.  One pair of surrounding
    double quotes is removed; backslash escapes are left as they are (a signed
    session never holds one, so a value with one fails its signature check).
    """
    value = None
    for chunk in header.split(";"):
        key, equals, rest = chunk.partition("=")
        if equals and key.strip() == name:
            value = rest.strip()
    if value is not None and len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


@attrs.frozen
class SessionConfig:
    """How an App reads and writes its session cookie."""

    secret: str = attrs.field(repr=False)
    cookie_name: str = "session"
    max_age: int | None = DEFAULT_MAX_AGE
    same_site: Literal["lax", "strict", "none"] = "lax"
    https_only: bool = False
    signer: itsdangerous.TimestampSigner = attrs.field(init=False, repr=False)

    @signer.default
    def _signer(self) -> itsdangerous.TimestampSigner:
        if not self.secret:
            raise ValueError("session_secret must be a non-empty string")
        return itsdangerous.TimestampSigner(self.secret)

    def load(self, scope: Scope) -> dict[str, Any]:
        """The session in the request's cookie, or ``{}`` if absent or invalid."""
        value = None
        for name, raw in scope.get("headers", ()):
            if name == b"cookie":
                value = find_cookie(raw.decode("latin-1"), self.cookie_name)
                break
        if value is None:
            return {}
        if len(value) > MAX_COOKIE_SIZE:
            logger.debug(
                "ignored a session cookie %r of %d characters (the limit is %d): empty session",
                self.cookie_name,
                len(value),
                MAX_COOKIE_SIZE,
            )
            return {}
        try:
            data = self.signer.unsign(value.encode("latin-1"), max_age=self.max_age)
            session = json.loads(b64decode(data))
        except (itsdangerous.BadSignature, ValueError, RecursionError):
            return {}
        return session if isinstance(session, dict) else {}

    def set_cookie(self, session: dict[str, Any]) -> str:
        """The ``Set-Cookie`` value that stores ``session`` (or expires it when empty)."""
        flags = f"path=/; httponly; samesite={self.same_site}"
        if self.https_only:
            flags += "; secure"
        if not session:
            return f"{self.cookie_name}=null; {flags}; expires=Thu, 01 Jan 1970 00:00:00 GMT"
        data = self.signer.sign(b64encode(json.dumps(session).encode())).decode()
        max_age = "" if self.max_age is None else f"; Max-Age={self.max_age}"
        return f"{self.cookie_name}={data}; {flags}{max_age}"
