"""triows.status: the standard close codes as constants and an IntEnum."""

from __future__ import annotations

import enum

from triows import status

EXPECTED = {
    "WS_1000_NORMAL_CLOSURE": 1000,
    "WS_1001_GOING_AWAY": 1001,
    "WS_1002_PROTOCOL_ERROR": 1002,
    "WS_1003_UNSUPPORTED_DATA": 1003,
    "WS_1005_NO_STATUS_RCVD": 1005,
    "WS_1006_ABNORMAL_CLOSURE": 1006,
    "WS_1007_INVALID_FRAME_PAYLOAD_DATA": 1007,
    "WS_1008_POLICY_VIOLATION": 1008,
    "WS_1009_MESSAGE_TOO_BIG": 1009,
    "WS_1010_MANDATORY_EXT": 1010,
    "WS_1011_INTERNAL_ERROR": 1011,
    "WS_1012_SERVICE_RESTART": 1012,
    "WS_1013_TRY_AGAIN_LATER": 1013,
    "WS_1014_BAD_GATEWAY": 1014,
    "WS_1015_TLS_HANDSHAKE": 1015,
}


def test_starlette_style_constants() -> None:
    for name, value in EXPECTED.items():
        constant = getattr(status, name)
        assert constant == value
        assert isinstance(constant, int)
        assert name in status.__all__


def test_int_enum() -> None:
    assert issubclass(status.CloseCode, enum.IntEnum)
    assert int(status.CloseCode.POLICY_VIOLATION) == 1008
    assert status.CloseCode(1001) is status.WS_1001_GOING_AWAY
    assert {int(code) for code in status.CloseCode} == set(EXPECTED.values())


def test_application_range_documented() -> None:
    assert range(4000, 5000) == status.APPLICATION_CODES
    assert status.__doc__ is not None
    assert "4000-4999" in status.__doc__
