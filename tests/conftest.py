"""The one backend fixture: every test that touches arrays runs on each backend it names.

numpy and strict always run; cupy runs where a CUDA device is usable and is skipped with its
reason elsewhere (XPNN_REQUIRE_GPU=1 turns that skip into a failure). XPNN_TEST_BACKENDS
(comma-separated) narrows the set, as the nox sessions do. torch runs only where named there
(``nox -s "tests(torch)"``), on torch's own choice of device (CUDA, else MPS, else XPU, else
the CPU); "torch:cpu" or "torch:mps" names one.

The numpy backend runs its compiled kernels where numba is installed (the ``jit`` extra) unless
XPNN_JIT=0; the header of the test run says which (``nox -s "tests(numpy-nojit)"`` runs the
suite's numpy path without them). tests/test_jit.py checks the kernels either way.

XPNN_CUPY_API=1 puts the CuPy API stand-in (tests/cupy_api.py) in place of cupy before anything
imports it: the cupy backend then runs on NumPy, every CuPy call checked against the installed
CuPy's real signatures (``nox -s cupy-api``; not a GPU run).
"""

from __future__ import annotations

import os

# scikit-learn's array-API estimator check needs this set before SciPy first loads (else it
# skips), and any test module may load SciPy first: set here, before the test modules load.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

if os.environ.get("XPNN_CUPY_API") == "1":
    import cupy_api

    cupy_api.install()

import pytest

from xpnn.backends import cuda_available

ALL_BACKENDS = ("numpy", "strict", "cupy")


def _backend_params() -> list:
    names = os.environ.get("XPNN_TEST_BACKENDS", ",".join(ALL_BACKENDS)).split(",")
    params = []
    for name in (n.strip() for n in names if n.strip()):
        if name not in ALL_BACKENDS and name.partition(":")[0] != "torch":
            raise pytest.UsageError(f"XPNN_TEST_BACKENDS: unknown backend {name!r}")
        marks = []
        if name == "cupy" and not cuda_available() and os.environ.get("XPNN_REQUIRE_GPU") != "1":
            marks = [pytest.mark.skip(reason="cupy: CuPy missing or no usable CUDA device")]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=_backend_params())
def backend(request) -> str:
    """The name of the backend under test; pass it as ``backend=`` or to ``get_backend``."""
    return request.param


def pytest_report_header(config) -> list[str]:
    """Say whether the numpy backend runs compiled kernels (numba) or plain NumPy, and which
    device each torch backend under test computes on."""
    import xpnn

    lines = []
    for name in (p.values[0] for p in _backend_params()):
        if name.startswith("torch"):
            import torch

            lines.append(
                f"xpnn {name}: torch {torch.__version__} on {xpnn.get_backend(name).device}"
            )
    backend = xpnn.get_backend("numpy")
    if backend.fast_path == "numba":
        import numba

        return [f"xpnn numpy backend: compiled kernels (numba {numba.__version__})", *lines]
    from xpnn.backends import jit

    why = "XPNN_JIT is off" if not jit.switch("XPNN_JIT", True) else "numba missing"
    return [f"xpnn numpy backend: plain NumPy ({why})", *lines]


def pytest_terminal_summary(terminalreporter) -> None:
    """With the CuPy API stand-in in place, say how many CuPy calls it checked."""
    if os.environ.get("XPNN_CUPY_API") == "1":
        import cupy_api

        terminalreporter.write_line(cupy_api.summary())
