"""Saving and loading models: safe persistence, in a format that holds no code.

A model file is one safetensors file: the parameters as tensors, the architecture (and, in a
checkpoint, the training state) as JSON metadata, and a SHA-256 over all of it. Loading runs
nothing from the file and reads nothing it has not checked; anything wrong raises
:class:`XpnnFileError` (a ``ValueError``) naming the file and the problem. Writes are atomic.

The package, one concern a module:

- ``format``: what a file holds, its limits, its checksum, and how its bytes are written;
- ``reader``: opening a file safely, its header and its tensors, checked;
- ``model_files``: ``save_model``, ``load_model``, ``save_parameters``, ``load_parameters``;
- ``checkpoints``: the training state a checkpoint adds, and how training resumes from it.
"""

from __future__ import annotations

from .format import FORMAT_VERSION, MAX_HEADER_BYTES, XpnnFileError
from .model_files import load_checkpoint, load_model, load_parameters, save_model, save_parameters

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "XpnnFileError",
    "load_checkpoint",
    "load_model",
    "load_parameters",
    "save_model",
    "save_parameters",
]
