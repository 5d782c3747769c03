"""CuPy's fused optimizer kernels, checked where there is no GPU.

Their bodies are plain C arithmetic, so compiled as C++ on the host (no fused multiply-add, as
CuPy compiles them) and called the way each update's cupy_update calls them, they must give the
generic reference update bit for bit. On a GPU, test_optimizers.py runs the kernels themselves
against the same reference.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from test_optimizers import RULES, UPDATES

import xpnn
from xpnn.backends import CupyBackend
from xpnn.optimizers import CUPY_KERNELS

C_TYPES = {"float32": ("float", ctypes.c_float), "float64": ("double", ctypes.c_double)}


def _names(params: str) -> list[str]:
    return [p.split()[1] for p in params.split(",")]


def _host_source() -> str:
    """Each kernel as a C function over ``count`` elements, for float and double."""
    functions = ["#include <cmath>", "using std::sqrt;"]
    for c_type, _ in C_TYPES.values():
        for name, (inputs, outputs, body) in CUPY_KERNELS.items():
            scalars = [n for n in _names(inputs) if n != "grad"]
            params = [f"const {c_type}* grad_p", *(f"{c_type} {n}" for n in scalars)]
            params += [f"{c_type}* {n}_p" for n in _names(outputs)]
            bind = " ".join(f"{c_type}& {n} = {n}_p[k];" for n in _names(outputs))
            functions.append(
                f'extern "C" void {name}_{c_type}(long count, {", ".join(params)}) {{\n'
                f"  for (long k = 0; k < count; k++) {{\n"
                f"    typedef {c_type} T; const T grad = grad_p[k]; {bind}\n    {body}\n  }}\n}}"
            )
    return "\n".join(functions)


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel bodies on the host")
    folder = tmp_path_factory.mktemp("kernels")
    (folder / "kernels.cpp").write_text(_host_source())
    library = folder / "kernels.so"
    subprocess.run(
        [compiler, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", library, "kernels.cpp"],
        cwd=folder,
        check=True,
    )
    return ctypes.CDLL(str(library))


class HostCupy:
    """Stands in for the cupy module: its ElementwiseKernel runs the body compiled on the host."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.library = library

    def ElementwiseKernel(self, inputs, outputs, body, name, options=()):
        assert "--fmad=false" in options
        kernel = name.removeprefix("xpnn_")
        assert CUPY_KERNELS[kernel] == (inputs, outputs, body)
        count = len(_names(inputs))

        def launch(*args):
            grad, scalars, arrays = args[0], args[1:count], args[count:]
            assert len(arrays) == len(_names(outputs))
            c_type, c_scalar = C_TYPES[grad.dtype.name]
            pointers = [a.ctypes.data_as(ctypes.c_void_p) for a in (grad, *arrays)]
            function = getattr(self.library, f"{kernel}_{c_type}")
            function(ctypes.c_long(grad.size), pointers[0], *map(c_scalar, scalars), *pointers[1:])

        return launch


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("update", [*UPDATES, "SGD-plain"])
def test_cupy_updates_compute_the_reference(backend, host_kernels, update, dtype):
    """Each update's CuPy version, its kernel run on the host, against the reference."""
    be = xpnn.get_backend(backend, dtype)
    plain = update == "SGD-plain"
    arrays, settings = (1, UPDATES["SGD"][1]) if plain else UPDATES[update]
    rule, _ = RULES["SGD" if plain else update]
    extra = (None,) if plain else ()
    cupy_like = object.__new__(CupyBackend)  # no device needed: only its kernel() runs
    cupy_like.xp = HostCupy(host_kernels)
    rng = np.random.default_rng(4)
    host = [rng.standard_normal(1000).astype(dtype)]
    host += [rng.random(1000).astype(dtype) for _ in range(arrays - 1)]
    reference = [be.asarray(a.copy()) for a in host]  # a copy: NumPy would share the array
    for _ in range(3):
        grad = rng.standard_normal(1000).astype(dtype)
        reference_grad = be.asarray(grad)
        rule.reference_update(
            be, {}, reference[0], reference_grad, *reference[1:], *extra, **settings
        )
        rule.cupy_update(cupy_like, {}, host[0], grad, *host[1:], *extra, **settings)
    for kernel_result, expected in zip(host, reference):
        if backend.startswith("torch"):  # torch's CPU square root is not correctly rounded
            tolerance = 1e-6 if dtype == "float32" else 1e-14  # as tests/test_torch.py
            np.testing.assert_allclose(
                kernel_result, xpnn.to_numpy(expected), rtol=tolerance, atol=tolerance
            )
        else:
            np.testing.assert_array_equal(kernel_result, xpnn.to_numpy(expected))
