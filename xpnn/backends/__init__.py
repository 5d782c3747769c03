"""Array backends: the one package that knows which array library does the maths.

``base`` holds the reference :class:`Backend` (the array API standard alone) and
:func:`get_backend`; ``numpy``, ``cupy`` and ``strict`` hold one library's subclass each, which
overrides the reference only where that library has a faster way.
"""

from .base import _CLASSES, BACKEND_NAMES, Backend, get_backend, to_numpy
from .cupy import CupyBackend, cuda_available
from .numpy import NumpyBackend
from .strict import StrictBackend

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "CupyBackend",
    "NumpyBackend",
    "StrictBackend",
    "cuda_available",
    "get_backend",
    "to_numpy",
]

_CLASSES.update(numpy=NumpyBackend, cupy=CupyBackend, strict=StrictBackend)
