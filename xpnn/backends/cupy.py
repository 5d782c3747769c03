"""CuPy on the current CUDA device, and the probe that says whether CuPy can compute here."""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np

from . import devices
from .base import Backend

__all__ = ["CupyBackend", "cuda_available"]


class CupyBackend(Backend):
    """CuPy on the current CUDA device."""

    name = "cupy"
    fast_path = "cupy"

    def __init__(self, dtype: str = "float32") -> None:
        cupy = _import_cupy()
        Backend.__init__(self, cupy, cupy.cuda.Device(), dtype, pass_device=False)

    @property
    def device(self) -> Any:
        """The current CUDA device, on which CuPy makes arrays (``devices`` chooses it)."""
        return self.xp.cuda.Device()

    @device.setter
    def device(self, value: Any) -> None:
        """Nothing to keep: ``Backend.__init__`` passes the current device."""

    @staticmethod
    def unusable() -> str | None:
        """Why CuPy cannot compute here, or None where it can; ImportError without CuPy."""
        return _cupy()[1]

    def is_own(self, a: Any) -> bool:
        """``Backend.is_own`` for this library."""
        return type(a) is self.array_type

    def synchronize(self) -> None:
        """``Backend.synchronize`` for this library."""
        self.xp.cuda.get_current_stream().synchronize()

    def keyed_uniform(self, key: int, shape: tuple[int, ...]) -> Any:
        """Uniform samples in [0, 1) of ``shape``, computed on the device from the 64-bit
        ``key`` and each element's index (splitmix64: the index times the golden gamma plus
        the key, then mixed): counter-based, so no generator state, no transfer, no read.
        The float32 samples are the top 24 bits, the float64 ones the top 53, so exact."""
        from ..masks import GOLDEN, MIX

        xp, u = self.xp, np.uint64
        z = xp.arange(1, math.prod(shape) + 1, dtype=xp.uint64)
        z *= u(GOLDEN)
        z += u(key)
        z ^= z >> u(30)
        z *= u(MIX[0])
        z ^= z >> u(27)
        z *= u(MIX[1])
        z ^= z >> u(31)
        if self.dtype_name == "float32":
            values = xp.astype(z >> u(40), xp.float32) * np.float32(2.0**-24)
        else:
            values = xp.astype(z >> u(11), xp.float64) * np.float64(2.0**-53)
        return xp.reshape(values, shape)

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        """``Backend.matmul`` for this library."""
        return self.xp.matmul(a, b, out=out)

    def kernel(self, name: str, kernels: dict[str, tuple[str, str, str]]) -> Any:
        """The element-wise CUDA kernel ``kernels[name]`` (inputs, outputs, body), compiled on
        first use and kept: compiled code, which every computation on this backend shares."""
        compiled = self.__dict__.setdefault("_kernels", {})
        if name not in compiled:
            inputs, outputs, body = kernels[name]
            # No fused multiply-add: each operation rounds as the reference's separate ones do.
            # CuPy adds -ftz=true to every compilation: float32 subnormals flush to zero, so a
            # value that passes through one can differ from the CPU's (docs: compiled path).
            compiled[name] = self.xp.ElementwiseKernel(
                inputs, outputs, body, f"xpnn_{name}", options=("--fmad=false",)
            )
        return compiled[name]


CUPY_EXTRAS = 'pip install "xpnn[cuda12]" (CUDA 12) or "xpnn[cuda13]" (CUDA 13)'

#: The cupy module last probed and what the probe found (None: it works). Probing compiles a
#: kernel, so it runs once per process.
_cupy_probed: tuple[Any, str | None] | None = None


def _import_cupy() -> Any:
    """The cupy module, once it has run a small computation on the device; else an error that
    says what is missing."""
    cupy, problem = _cupy()
    if problem is not None:
        raise RuntimeError(f'backend="cupy": {problem}; use backend="numpy", or "auto" to choose')
    return cupy


def _cupy() -> tuple[Any, str | None]:
    """The cupy module and why it cannot compute here (None: it can); ImportError without it."""
    global _cupy_probed
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as error:
        raise ImportError(f'backend="cupy" needs CuPy: {CUPY_EXTRAS}') from error
    if _cupy_probed is None or _cupy_probed[0] is not cupy:
        devices.choose(cupy)  # before the probe's allocation makes a context on a device
        _cupy_probed = (cupy, _probe_cupy(cupy))
    return _cupy_probed


def _probe_cupy(cupy: Any) -> str | None:
    """Why CuPy cannot compute here, or None where an allocation, an element-wise kernel and
    a matrix product run and give the right numbers.

    ``cupy.cuda.is_available()`` only counts devices: without NVRTC or cuBLAS it is True and
    the first kernel fails, so the probe runs one of each.
    """
    if not cupy.cuda.is_available():
        return "CuPy is installed but no usable CUDA device was found (no GPU, or no driver)"
    step = "allocating memory on the device"
    try:
        a = cupy.arange(6, dtype=cupy.float32)
        step = "an element-wise kernel (compiled by NVRTC)"
        b = a * 2 + 1
        step = "a matrix product (cuBLAS)"
        product = cupy.reshape(b, (2, 3)) @ cupy.reshape(a, (3, 2))
        values = product.get()
    except Exception as error:  # CuPy raises many kinds; the message is what matters
        reason = f"{type(error).__name__}: {error}".strip()
        return (
            f"CuPy sees a device but failed at {step}: {reason}. CuPy needs the CUDA "
            f"libraries (NVRTC, cuBLAS, cuRAND): {CUPY_EXTRAS} brings them, or install a CUDA "
            f"toolkit whose major version matches the CuPy package"
        )
    expected = (np.arange(1, 13, 2, dtype=np.float32).reshape(2, 3)) @ np.arange(6.0).reshape(3, 2)
    if not np.allclose(values, expected):
        return f"CuPy computed a wrong matrix product on the device ({values.tolist()})"
    return None


def cuda_available() -> bool:
    """True where CuPy is installed and a small computation ran on a CUDA device; never raises."""
    try:
        _import_cupy()
    except (ImportError, RuntimeError, ValueError):  # ValueError: a bad XPNN_DEVICE
        return False
    return True
