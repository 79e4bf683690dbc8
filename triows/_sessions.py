"""Signed-cookie sessions, readable and writable by Starlette/FastAPI apps too.

The cookie is the one Starlette's ``SessionMiddleware`` uses: the session as JSON,
base64-encoded, signed and timestamped by ``itsdangerous.TimestampSigner`` with
the shared secret.  So an HTTP app (triows, Starlette or FastAPI) on the same
domain can log a user in and triows' WebSocket views read ``ws.session``.

A cookie that is missing, tampered with, expired, or signed with another secret
gives an empty session: never an error.
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal

import attrs
import itsdangerous

from ._types import Scope

__all__ = ["SessionConfig"]

#: A session cookie lives 14 days by default, like Starlette's.
DEFAULT_MAX_AGE = 14 * 24 * 3600


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
        raw_cookie = None
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                raw_cookie = value.decode("latin-1")
                break
        if raw_cookie is None:
            return {}
        try:
            cookies: SimpleCookie = SimpleCookie(raw_cookie)
            morsel = cookies.get(self.cookie_name)
            if morsel is None:
                return {}
            data = self.signer.unsign(morsel.value.encode(), max_age=self.max_age)
            session = json.loads(b64decode(data))
        except (CookieError, itsdangerous.BadSignature, ValueError):
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
