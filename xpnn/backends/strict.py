"""array-api-strict: a stand-in for a foreign device library in tests."""

from __future__ import annotations

import importlib

from .base import Backend

__all__ = ["StrictBackend"]


class StrictBackend(Backend):
    """array-api-strict on its ``device1``: a stand-in for a foreign device in tests.

    It refuses to mix devices and to convert to NumPy implicitly, as CuPy does, so code that
    passes here has no hidden host round trip.
    """

    name = "strict"

    def __init__(self, dtype: str = "float32") -> None:
        try:
            xp = importlib.import_module("array_api_strict")
        except ImportError as error:
            raise ImportError(
                'backend="strict" needs array-api-strict: pip install "xpnn[test]"'
            ) from error
        Backend.__init__(self, xp, xp.Device("device1"), dtype)
