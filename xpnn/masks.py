"""Random numbers for Dropout masks, keyed by (seed, stream, draw): no generator state to keep.

A Dropout layer's ``draw``-th mask comes from its ``seed``, its ``stream`` (the rank, in
data-parallel training; 0 otherwise) and ``draw`` alone, on every backend, so that a model
saved and loaded (which keeps the seed and the count of masks drawn) goes on with the masks it
would have drawn unsaved, and saving draws nothing.

On the host (NumPy, and the array-API backends, which take their numbers from the host as they
always have), a PCG64 stream seeded from ``SeedSequence(seed, spawn_key=(stream,))`` is
positioned at ``draw * 2**40`` (``advance`` is a jump, not a loop): as fast as a generator kept
from step to step, and the same numbers on NumPy and array-api-strict. On CuPy the numbers are
computed on the device from the element index and a 64-bit key (splitmix64's mixing function):
nothing is sent to the device for them, and nothing is read back.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["DRAW_SPACING", "HostSource", "device_key", "uniform"]

#: Each draw starts 2**DRAW_SPACING PCG64 steps after the previous one: room for any mask.
DRAW_SPACING = 40
_MASK = 2**64 - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX = (0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


class HostSource:
    """The PCG64 stream of one (seed, stream), kept with its starting state and the position
    (64-bit outputs from the start) its last draw left it at, so that the next draw is one
    ``advance`` away: float32 draws take an even count of 32-bit halves, leaving none buffered.
    """

    def __init__(self, seed: int, stream: int) -> None:
        self.key = (seed, stream)
        self.bits = np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream,)))
        self.start = self.bits.state
        self.generator = np.random.Generator(self.bits)
        self.position = 0

    def uniform(self, draw: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        """Draw number ``draw``: uniform samples in [0, 1) of ``shape``."""
        target = draw << DRAW_SPACING
        if target < self.position:  # an earlier draw again: from the start
            self.bits.state, self.position = self.start, 0
        self.bits.advance(target - self.position)
        count = math.prod(shape)
        if np.dtype(dtype) == np.float32:  # one 32-bit half each, two per output
            even = count + (count & 1)
            values = self.generator.random(even, dtype=np.float32)[:count].reshape(shape)
            self.position = target + even // 2
        else:
            values = self.generator.random(shape, dtype=dtype)
            self.position = target + count
        return values


def _mix(z: int) -> int:
    """splitmix64's mixing function on a Python int (64 bits)."""
    z = (z ^ (z >> 30)) * MIX[0] & _MASK
    z = (z ^ (z >> 27)) * MIX[1] & _MASK
    return z ^ (z >> 31)


def device_key(seed: int, stream: int, draw: int) -> int:
    """The 64-bit key of one draw on the device: the seed (any size), stream and draw mixed."""
    z = 0
    while True:  # every 64-bit word of the seed counts
        z = _mix(z ^ (seed & _MASK) ^ GOLDEN)
        seed >>= 64
        if not seed:
            break
    z = _mix(z ^ _mix((stream + GOLDEN) & _MASK))
    return _mix((z + draw * GOLDEN) & _MASK)


def uniform(
    backend: Backend, seed: int, stream: int, draw: int, shape: tuple[int, ...], cache: Any
) -> tuple[Any, Any]:
    """Uniform samples in [0, 1) of ``shape`` in the backend's float dtype for draw ``draw`` of
    (seed, stream), and the host source to pass back as ``cache`` next time (None: none yet)."""
    keyed = getattr(backend, "keyed_uniform", None)
    if keyed is not None:
        return keyed(device_key(seed, stream, draw), shape), None
    if cache is None or cache.key != (seed, stream):
        cache = HostSource(seed, stream)
    values = cache.uniform(draw, shape, backend.dtype_name)
    return (values if backend.on_host else backend.asarray(values)), cache
