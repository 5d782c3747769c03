"""Choosing a backend, its errors, and moving arrays between host and device."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest
from helpers import assert_on_backend, tolerance

import xpnn
from xpnn.backends import base as backend_base


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a stand-in for the cupy module (None: not installed) and forget cached backends."""

    def install(module):
        monkeypatch.setitem(sys.modules, "cupy", module)
        monkeypatch.setattr(backend_base, "_cache", {})

    return install


def _cupy_without_device():
    return types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False))


def test_unknown_backend_lists_the_valid_names():
    valid = r"'numpy', 'cupy', 'torch', 'strict', 'auto' or 'torch:<device>'"
    with pytest.raises(ValueError, match=rf"{valid}.*'tensorflow'"):
        xpnn.get_backend("tensorflow")
    with pytest.raises(ValueError, match="backend"):
        xpnn.Model(backend="gpu")


def test_cupy_missing_names_the_extra(fake_cupy):
    fake_cupy(None)
    with pytest.raises(ImportError, match=r'pip install "xpnn\[cuda12\]"'):
        xpnn.get_backend("cupy")
    with pytest.raises(ImportError, match="CuPy"):
        xpnn.Model(backend="cupy")


def test_cupy_without_a_device_says_so(fake_cupy):
    fake_cupy(_cupy_without_device())
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        xpnn.get_backend("cupy")
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        xpnn.Dense(2, 3, backend="cupy")


def _cupy_failing_at(step):
    """A cupy module that sees a device and fails at ``step`` of a first computation, as
    CuPy does without its CUDA libraries."""

    def fail(*args, **kwargs):
        raise RuntimeError(f"CuPy failed to load {step}.so.12: cannot open shared object file")

    class Array:  # NumPy underneath, as CuPy would compute where its libraries load
        def __init__(self, value):
            self.value = value

        def __mul__(self, other):
            return fail() if step == "libnvrtc" else Array(self.value * other)

        def __add__(self, other):
            return Array(self.value + other)

        def __matmul__(self, other):
            return fail() if step == "libcublas" else Array(self.value @ other.value)

        def get(self):
            return self.value

    return types.SimpleNamespace(
        cuda=types.SimpleNamespace(is_available=lambda: True),
        float32=np.float32,
        arange=lambda n, dtype: fail() if step == "libcudart" else Array(np.arange(n, dtype=dtype)),
        reshape=lambda a, shape: Array(np.reshape(a.value, shape)),
    )


@pytest.mark.parametrize(
    ("step", "named"),
    [
        ("libcudart", "allocating memory"),
        ("libnvrtc", "element-wise kernel"),
        ("libcublas", "matrix product"),
    ],
)
def test_cupy_that_cannot_compute_is_not_trusted(fake_cupy, caplog, step, named):
    """A device is counted but the CUDA libraries are missing: "cupy" says what failed and
    how to install them; "auto" falls back to NumPy and logs why."""
    fake_cupy(_cupy_failing_at(step))
    assert not xpnn.backends.cuda_available()
    with pytest.raises(RuntimeError, match=rf"failed at .*{named}.*{step}.*xpnn\[cuda12\]"):
        xpnn.get_backend("cupy")
    with caplog.at_level(logging.INFO, logger="xpnn"):
        assert xpnn.get_backend("auto").name == "numpy"
    assert any(
        r.levelno == logging.WARNING and "chose 'numpy'" in r.message and step in r.message
        for r in caplog.records
    )


@pytest.mark.parametrize("cupy", [None, "no device"])
def test_auto_falls_back_to_numpy_and_says_so(fake_cupy, caplog, cupy):
    fake_cupy(None if cupy is None else _cupy_without_device())
    with caplog.at_level(logging.INFO, logger="xpnn"):
        chosen = xpnn.get_backend("auto")
    assert chosen.name == "numpy"
    reason = "CuPy is not installed" if cupy is None else "no usable CUDA device"
    assert "chose 'numpy'" in caplog.text and reason in caplog.text
    assert xpnn.Model(backend="auto").backend.name == "numpy"


@pytest.mark.parametrize("dtype", ["float16", "int32", "double precision"])
def test_unsupported_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        xpnn.get_backend("numpy", dtype)


def test_dtype_defaults_and_aliases(backend):
    assert xpnn.get_backend(backend).dtype_name == "float32"
    assert xpnn.get_backend(backend, np.float64).dtype_name == "float64"
    as64 = xpnn.get_backend(backend, "float64")
    assert xpnn.get_backend(as64) is as64
    assert xpnn.Dense(2, 3, backend=as64).weights.dtype == as64.dtype


def test_host_device_round_trip(backend):
    be = xpnn.get_backend(backend)
    host = np.arange(12, dtype=np.float64).reshape(3, 4)
    on_device = be.asarray(host)
    assert_on_backend(on_device, be)
    assert on_device.dtype == be.dtype
    back = xpnn.to_numpy(on_device)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host.astype(np.float32))
    assert be.asarray(on_device) is on_device


def test_creation_helpers_land_on_the_device(backend):
    be = xpnn.get_backend(backend)
    for array in (
        be.zeros((2, 3)),
        be.arange(4),
        be.one_hot(be.asarray([2, 0], dtype=be.index_dtype), 3),
    ):
        assert_on_backend(array, be)
    np.testing.assert_array_equal(
        xpnn.to_numpy(be.one_hot(be.asarray([2, 0], dtype=be.index_dtype), 3)),
        [[0, 0, 1], [1, 0, 0]],
    )
    be.synchronize()


def test_strict_refuses_mixing_devices():
    """The stand-in for a GPU catches an array created without the backend's device."""
    import array_api_strict as xps

    be = xpnn.get_backend("strict")
    on_default_device = xps.zeros((2, 2))
    with pytest.raises(ValueError, match="device"):
        be.zeros((2, 2)) + on_default_device
    with pytest.raises(RuntimeError):
        np.asarray(be.zeros((2, 2)))


def test_to_numpy_passes_host_values_through():
    a = np.ones(3)
    assert xpnn.to_numpy(a) is a
    np.testing.assert_array_equal(xpnn.to_numpy([1, 2]), [1, 2])


@pytest.mark.parametrize("columns", [1, 2, 3, 7, 8, 10, 32, 33])
@pytest.mark.parametrize("keepdims", [False, True])
def test_row_reductions_match_numpy(backend, columns, keepdims):
    """Max and sum along rows (short rows take a column-by-column path on NumPy) and clip give
    what NumPy's own functions give, NaN included."""
    be = xpnn.get_backend(backend, "float32")
    rng = np.random.default_rng(columns)
    host = (rng.standard_normal((50, columns)) * rng.lognormal(0, 3, (50, columns))).astype(
        np.float32
    )
    host[7, -1] = np.nan
    a = be.asarray(host)
    xp = be.xp
    for name, result, expected in [
        ("max", xp.max(a, axis=1, keepdims=keepdims), np.max(host, axis=1, keepdims=keepdims)),
        ("max", xp.max(a, axis=-1, keepdims=keepdims), np.max(host, axis=1, keepdims=keepdims)),
        ("sum", xp.sum(a, axis=1, keepdims=keepdims), np.sum(host, axis=1, keepdims=keepdims)),
        ("sum", xp.sum(a, axis=0, keepdims=keepdims), np.sum(host, axis=0, keepdims=keepdims)),
    ]:
        assert_on_backend(result, be)
        assert result.shape == expected.shape, name
        if name == "max":  # exact in any order
            np.testing.assert_array_equal(xpnn.to_numpy(result), expected, err_msg=name)
            continue
        # A sum in another order (a GPU adds in a tree) is off by at most about n * eps *
        # sum(|x|): a bound on the rounding, not a relative error, which cancellation can blow up.
        axis = 1 if result.shape[0] == 50 else 0
        n, eps = host.shape[axis], np.finfo(np.float32).eps
        bound = n * eps * np.sum(np.abs(host), axis=axis, keepdims=keepdims)
        error = np.abs(xpnn.to_numpy(result) - expected)
        assert np.all((error <= bound) | np.isnan(expected)), name
        np.testing.assert_array_equal(np.isnan(xpnn.to_numpy(result)), np.isnan(expected))
    clipped = xp.clip(a, 1e-7, 1 - 1e-7)
    assert_on_backend(clipped, be)
    np.testing.assert_array_equal(xpnn.to_numpy(clipped), np.clip(host, 1e-7, 1 - 1e-7))
    # Positional bounds: CuPy's clip takes no min=/max= keywords.
    np.testing.assert_array_equal(xpnn.to_numpy(xp.clip(a, None, 0.5)), np.clip(host, None, 0.5))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 5, 128])
def test_step_operations_match_the_reference(backend, dtype, rows):
    """A library's own one-hot, label pick, column sums and gradient product give what the
    generic array-API versions give on the same arrays."""
    be = xpnn.get_backend(backend, dtype)
    rng = np.random.default_rng(rows)
    a = be.asarray(rng.standard_normal((rows, 3)))
    wide = be.asarray(rng.standard_normal((rows, 64)))
    labels = be.asarray(rng.integers(0, 3, rows), dtype=be.index_dtype)
    generic = xpnn.Backend
    pairs = {
        "one_hot": (be.one_hot(labels, 3), generic.one_hot(be, labels, 3)),
        "take_labels": (be.take_labels(a, labels), generic.take_labels(be, a, labels)),
    }
    for name, op in [("sum_rows", "sum_rows"), ("matmul", "matmul")]:
        args = (wide,) if op == "sum_rows" else (be.xp.matrix_transpose(a), wide)
        shape = (1, 64) if op == "sum_rows" else (3, 64)
        fast, reference = be.zeros(shape), be.zeros(shape)
        returned = getattr(be, op)(*args, out=fast)
        getattr(generic, op)(be, *args, out=reference)
        assert returned is fast or returned is None or returned.shape == shape
        pairs[name] = (fast, reference)
    for name, (fast, reference) in pairs.items():
        assert_on_backend(fast, be)
        assert fast.dtype == reference.dtype, name
        np.testing.assert_allclose(
            xpnn.to_numpy(fast), xpnn.to_numpy(reference), **tolerance(dtype), err_msg=name
        )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_operations_match_the_reference(backend, dtype):
    """A library's ReLU gradient mask and matrix product, fresh or written into ``out`` (a
    gradient view of the model's flat buffer), give what the array-API reference gives."""
    be = xpnn.get_backend(backend, dtype)
    rng = np.random.default_rng(7)
    a, b = (be.asarray(rng.standard_normal((5, 4))) for _ in range(2))
    w = be.asarray(rng.standard_normal((4, 3)))
    mask = be.xp.astype(a > 0, be.dtype)
    buffer = be.empty((5, 3))
    pairs = {
        "keep_where": (be.keep_where(b, a > 0), b * mask),
        "matmul, out=True": (be.matmul(a, w, out=buffer), a @ w),
        "matmul, out=False": (be.matmul(a, w), a @ w),
    }
    for name, (result, reference) in pairs.items():
        assert_on_backend(result, be)
        assert result.dtype == be.dtype, name
        np.testing.assert_allclose(
            xpnn.to_numpy(result), xpnn.to_numpy(reference), **tolerance(dtype), err_msg=name
        )
    assert pairs["matmul, out=True"][0] is buffer
    assert be.matmul(a, w) is not buffer


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_flush_subnormals_zeroes_those_alone(backend, dtype):
    be = xpnn.get_backend(backend, dtype)
    info = np.finfo(dtype)
    tiny, smallest = float(info.smallest_normal), float(info.smallest_subnormal)
    values = [smallest, -smallest, tiny / 3, tiny, -tiny, 0.0, 1.5, -2.0, np.inf, np.nan]
    expected = [0.0, 0.0, 0.0, tiny, -tiny, 0.0, 1.5, -2.0, np.inf, np.nan]
    a, b = be.asarray(values), be.asarray(values[::-1])
    be.flush_subnormals(a, b)
    np.testing.assert_array_equal(xpnn.to_numpy(a), np.asarray(expected, dtype))
    np.testing.assert_array_equal(xpnn.to_numpy(b), np.asarray(expected[::-1], dtype))


def test_torch_without_torch_names_the_extra(monkeypatch):
    """torch is imported only when a torch backend is made; without it, the error says what to
    install (whether torch is installed here or not)."""
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" raises ImportError
    monkeypatch.setattr(backend_base, "_cache", {})
    with pytest.raises(ImportError, match=r'backend="torch" needs PyTorch .*xpnn\[torch\]'):
        xpnn.get_backend("torch")
    assert xpnn.get_backend("numpy").name == "numpy"
