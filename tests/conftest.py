"""The one backend fixture: every test that touches arrays runs on each backend it names.

numpy and strict always run; cupy runs where a CUDA device is usable and is skipped with its
reason elsewhere (XPNN_REQUIRE_GPU=1 turns that skip into a failure). XPNN_TEST_BACKENDS
(comma-separated) narrows the set, as the nox sessions do.
"""

from __future__ import annotations

import os

import pytest

from xpnn.backend import cuda_available

ALL_BACKENDS = ("numpy", "strict", "cupy")


def _backend_params() -> list:
    names = os.environ.get("XPNN_TEST_BACKENDS", ",".join(ALL_BACKENDS)).split(",")
    params = []
    for name in (n.strip() for n in names if n.strip()):
        if name not in ALL_BACKENDS:
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
