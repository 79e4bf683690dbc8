"""JSON-RPC 2.0 errors: the standard codes, and the error a method raises."""

from __future__ import annotations

from typing import Any

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "REQUEST_CANCELLED",
    "REQUEST_TIMED_OUT",
    "STANDARD_ERRORS",
    "InvalidParams",
    "RPCError",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: The call was cancelled by the client's ``$/cancelRequest`` (the LSP's code).
REQUEST_CANCELLED = -32800
#: The call ran past its method's ``timeout``.
REQUEST_TIMED_OUT = -32001

#: Every error triows itself answers with: code -> message.
STANDARD_ERRORS: dict[int, str] = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    REQUEST_CANCELLED: "request cancelled",
    REQUEST_TIMED_OUT: "request timed out",
}


class RPCError(Exception):
    """Raised by a JSON-RPC method: the client gets this error instead of a result.

    ``code`` is an integer (-32768 to -32000 are reserved by the specification
    for the standard errors; use other values for your own), ``message`` a short
    description, ``data`` any JSON value with details (left out of the response
    when ``None``).  Any other exception a method raises is answered with -32603
    "Internal error", without its text, and logged on the server.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"RPCError code must be an int, got {code!r}")
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"JSON-RPC error {self.code}: {self.message}"


class InvalidParams(Exception):
    """A call's params do not fit its method: answered with -32602 naming ``field``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
