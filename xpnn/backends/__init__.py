"""Array backends: the one package that knows which array library does the maths.

``base`` holds the reference :class:`Backend` (the array API standard alone) and
:func:`get_backend`; ``numpy``, ``cupy``, ``torch`` and ``strict`` hold one library's subclass
each, which overrides the reference only where that library has a faster way; ``jit`` the NumPy
backend's compiled kernels (numba, optional). torch is imported only when a torch backend is
made.
"""

from .base import _CLASSES, BACKEND_NAMES, Backend, check_backend_name, get_backend, to_numpy
from .cupy import CupyBackend, cuda_available
from .jit import JitBackend, numpy_backend
from .numpy import NumpyBackend
from .strict import StrictBackend
from .torch import TorchBackend

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "CupyBackend",
    "JitBackend",
    "NumpyBackend",
    "StrictBackend",
    "TorchBackend",
    "check_backend_name",
    "cuda_available",
    "get_backend",
    "to_numpy",
]

# "numpy" is compiled (JitBackend) where numba is installed and XPNN_JIT does not turn it off.
_CLASSES.update(numpy=numpy_backend, cupy=CupyBackend, torch=TorchBackend, strict=StrictBackend)
