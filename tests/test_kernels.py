"""CuPy's fused optimizer kernels, checked where there is no GPU.

Their bodies are plain C arithmetic, so compiled as C++ on the host (no fused multiply-add, as
CuPy compiles them) they must give the generic reference update bit for bit. On a GPU,
test_optimizers.py runs the kernels themselves against the same reference.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from test_optimizers import UPDATES

import xpnn
from xpnn.backend import CUPY_KERNELS, Backend

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


# Each kernel's scalars, in its signature's order, from the reference's keyword arguments.
SCALARS = {
    "adam": lambda s: [
        s["beta_1"],
        1 - s["beta_1"],
        s["beta_2"],
        1 - s["beta_2"],
        s["epsilon"],
        s["correction_1"],
        s["correction_2"],
        -s["learning_rate"],
    ],
    "sgd": lambda s: [-s["learning_rate"]],
    "sgd_momentum": lambda s: [s["momentum"], s["learning_rate"]],
    "adagrad": lambda s: [s["epsilon"], -s["learning_rate"]],
    "rmsprop": lambda s: [s["rho"], 1 - s["rho"], s["epsilon"], -s["learning_rate"]],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", CUPY_KERNELS)
def test_kernel_bodies_compute_the_reference(backend, host_kernels, kernel, dtype):
    be = xpnn.get_backend(backend, dtype)
    update = kernel.split("_")[0]
    arrays, settings = UPDATES[update]
    arrays, extra = (1, (None,)) if kernel == "sgd" else (arrays, ())
    assert len(SCALARS[kernel](settings)) == len(_names(CUPY_KERNELS[kernel][0])) - 1
    rng = np.random.default_rng(4)
    host = [rng.standard_normal(1000).astype(dtype)]
    host += [rng.random(1000).astype(dtype) for _ in range(arrays - 1)]
    reference = [be.asarray(a) for a in host]
    c_type, c_scalar = C_TYPES[dtype]
    function = getattr(host_kernels, f"{kernel}_{c_type}")
    for _ in range(3):
        grad = rng.standard_normal(1000).astype(dtype)
        getattr(Backend, f"{update}_update")(
            be, reference[0], be.asarray(grad), *reference[1:], *extra, **settings
        )
        pointers = [a.ctypes.data_as(ctypes.c_void_p) for a in (grad, *host)]
        scalars = [c_scalar(v) for v in SCALARS[kernel](settings)]
        function(ctypes.c_long(grad.size), pointers[0], *scalars, *pointers[1:])
    for kernel_result, expected in zip(host, reference):
        np.testing.assert_array_equal(kernel_result, xpnn.to_numpy(expected))
