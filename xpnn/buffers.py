"""Kept arrays for training: a step writes its outputs and gradients where the last one did."""

from __future__ import annotations

from typing import Any


class KeepsBuffers:
    """Something that writes arrays into kept buffers while a model trains it.

    ``buffers`` is a dict the model gives it for the length of ``train`` and takes back after,
    so arrays handed to a user outside training (``predict``, a layer called by hand) are
    always fresh ones that no later call overwrites.
    """

    buffers: dict[tuple[str, tuple[int, ...]], Any] | None = None
    backend: Any

    def _out(self, name: str, shape: tuple[int, ...]) -> Any:
        """Where to write the array ``name`` of ``shape``: its kept buffer while training (made
        on first use, one per shape, so a partial last batch has its own), None otherwise."""
        if self.buffers is None:
            return None
        key = (name, shape)
        buffer = self.buffers.get(key)
        if buffer is None:
            buffer = self.buffers[key] = self.backend.empty(shape)
        return buffer
