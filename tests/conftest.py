"""Shared fixtures: real servers on loopback for the real-socket tests."""

from __future__ import annotations

