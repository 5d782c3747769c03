"""The CuPy API stand-in (tests/cupy_api.py) refuses what CuPy refuses and computes what NumPy does.

It needs the real cupy installed, as its reference: ``nox -s cupy-api`` installs it; elsewhere
these tests skip with that reason.
"""

from __future__ import annotations

import importlib.util

import cupy_api
import numpy as np
import pytest

from xpnn.optimizers import CUPY_KERNELS


@pytest.fixture(scope="module")
def cp():
    """The stand-in module (built against the real cupy, which must import)."""
    try:
        return cupy_api.build()
    except ImportError as error:
        pytest.skip(f"the CuPy API stand-in needs the real cupy to check against: {error}")


@pytest.fixture
def host():
    return np.array([-1.0, 0.25, 0.75, 2.0], dtype=np.float32)


def test_clip_takes_cupys_arguments_not_the_array_apis(cp, host):
    a = cp.asarray(host)
    with pytest.raises(TypeError, match=r"cupy\.clip"):
        cp.clip(a, max=0.5)
    clipped = cp.clip(a, None, 0.5)
    assert type(clipped) is cp.ndarray
    np.testing.assert_array_equal(clipped.get(), np.clip(host, None, 0.5))


def test_implicit_conversion_to_numpy_is_refused(cp, host):
    a = cp.asarray(host)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    host_copy = a.get()
    assert type(host_copy) is np.ndarray
    np.testing.assert_array_equal(host_copy, host)


def test_numpy_arrays_are_refused_in_cupy_operations(cp, host):
    a = cp.asarray(host)
    with pytest.raises(TypeError, match="NumPy array"):
        a + np.ones(4)
    with pytest.raises(TypeError, match="NumPy array"):
        np.ones(4) + a
    with pytest.raises(TypeError, match="NumPy array"):
        cp.maximum(a, np.zeros(4))
    with pytest.raises(TypeError, match="NumPy array"):
        a += np.ones(4, dtype=np.float32)
    # Python and NumPy scalars are fine, as on CuPy.
    np.testing.assert_array_equal((a + 1).get(), host + 1)
    np.testing.assert_array_equal((a * np.float32(2)).get(), host * 2)
    assert (a * np.float32(2)).dtype == np.float32


def test_attributes_cupy_arrays_lack_are_missing(cp, host):
    a = cp.asarray(host)
    with pytest.raises(AttributeError):
        a.__array_namespace__  # noqa: B018
    assert not hasattr(a, "__array_namespace__")
    assert not hasattr(a, "to_device")
    with pytest.raises(TypeError):
        [1, 2][cp.asarray(1)]  # CuPy arrays have no __index__


def test_functions_cupy_lacks_are_missing(cp):
    with pytest.raises(AttributeError):
        cp.no_such_function  # noqa: B018
    assert hasattr(np, "nanpercentile")
    assert not hasattr(cp, "nanpercentile")  # NumPy has it, CuPy does not


def test_calls_are_checked_against_cupys_signatures(cp, host):
    a, out = cp.asarray(host), cp.zeros(4, dtype=np.float32)
    assert cp.maximum(a, 0.0, out=out) is out
    with pytest.raises(TypeError, match=r"cupy\.maximum"):
        cp.maximum(a, 0.0, where=a > 0)  # NumPy's ufuncs take where=, CuPy's do not
    with pytest.raises(TypeError, match=r"cupy\.zeros"):
        cp.zeros(3, device=cp.cuda.Device())  # CuPy creates on the current device
    with pytest.raises(TypeError, match=r"cupy\.ndarray\.sum"):
        a.sum(axis=0, where=True)
    assert cp.astype(a, np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="casting"):
        a.astype(np.float64, casting="unsafe")  # accepted by the signature, refused by CuPy
    assert cp.finfo is np.finfo and cp.isdtype is np.isdtype
    before = cupy_api.counts["maximum"]
    cp.maximum(a, 0.0)
    assert cupy_api.counts["maximum"] == before + 1


def test_arrays_keep_the_device_they_were_made_on(cp, host, monkeypatch):
    monkeypatch.setattr(cupy_api, "DEVICE_COUNT", 2)
    monkeypatch.setattr(cupy_api._current, "id", 0, raising=False)
    a = cp.asarray(host)
    cp.cuda.Device(1).use()
    b, c = cp.zeros(2), a + 1.0  # results land on the current device, as CuPy's
    assert (a.device.id, b.device.id, c.device.id) == (0, 1, 1)
    assert cp.cuda.Device().id == 1 and a.device == cp.cuda.Device(0)
    with pytest.raises(cupy_api._real.cuda.runtime.CUDARuntimeError):
        cp.cuda.Device(2).use()  # past the devices played


def test_arrays_behave_as_cupys(cp, host):
    a = cp.asarray(host)
    assert type(a).__module__.partition(".")[0] == "cupy"
    assert isinstance(a, cp.ndarray)
    assert a.device == cp.cuda.Device()
    assert cp.asarray(a) is a
    total = cp.sum(a)
    assert type(total) is cp.ndarray and total.shape == ()  # reductions give 0-d arrays
    assert float(total) == pytest.approx(float(host.sum()))
    assert int(cp.asarray(3)) == 3 and bool(cp.asarray(True))
    host[0] = 9
    assert float(a[0]) == -1  # host data was copied to the device
    assert type(a[0]) is cp.ndarray  # so does indexing
    view = a[1:3]
    view[...] = 0
    np.testing.assert_array_equal(a.get(), [-1, 0, 0, 2])  # views write through
    wrapped = cp.take(a, cp.asarray([5, -1]))  # out of range wraps around, as on CuPy
    np.testing.assert_array_equal(wrapped.get(), [0, 2])
    np.testing.assert_array_equal(a[cp.asarray([4])].get(), [-1])


def test_whole_array_host_copy_alone_takes_numpy_data(cp, host):
    a = cp.zeros(4, dtype=np.float32)
    a[:] = host  # CuPy copies a same-shaped, same-dtype host array this way
    np.testing.assert_array_equal(a.get(), host)
    with pytest.raises(ValueError):
        a[...] = host


def test_gpu_and_random_numbers(cp):
    assert cp.cuda.is_available()
    cp.cuda.get_current_stream().synchronize()
    generator = cp.random.default_rng(0)
    draws = generator.random((2, 3), dtype=np.float32)
    assert type(draws) is cp.ndarray and draws.dtype == np.float32 and draws.shape == (2, 3)
    with pytest.raises(TypeError, match=r"cupy\.random\.Generator\.random"):
        generator.random((2, 3), np.float32, None, "extra")
    with pytest.raises(AttributeError):
        generator.no_such_method  # noqa: B018


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_bodies_compute_their_formula(cp, dtype):
    """The Adam kernel, called as adam.cupy_update calls it, gives the formula computed by NumPy."""
    inputs, outputs, body = CUPY_KERNELS["adam"]
    kernel = cp.ElementwiseKernel(inputs, outputs, body, "xpnn_adam", options=("--fmad=false",))
    rng = np.random.default_rng(1)
    grad, param, m, c = (rng.standard_normal(50).astype(dtype) for _ in range(4))
    c = np.abs(c)
    s = np.dtype(dtype).type
    b1, b2, eps, k1, k2, lr = s(0.9), s(0.999), s(1e-7), s(0.19), s(0.002), s(-0.01)
    arrays = [cp.asarray(x) for x in (grad, param, m, c)]
    kernel(arrays[0], b1, 1 - b1, b2, 1 - b2, eps, k1, k2, lr, *arrays[1:])
    m = b1 * m + (1 - b1) * grad
    c = b2 * c + (1 - b2) * (grad * grad)
    param += lr * (m / k1) / (np.sqrt(c / k2) + eps)
    for result, expected in zip(arrays[1:], (param, m, c)):
        assert result.dtype == dtype
        np.testing.assert_array_equal(result.get(), expected)


def test_kernel_calls_are_checked(cp):
    inputs, outputs, body = CUPY_KERNELS["sgd"]
    with pytest.raises(TypeError):
        cp.ElementwiseKernel(inputs, outputs, body, "k", optoins=())
    kernel = cp.ElementwiseKernel(inputs, outputs, body, "xpnn_sgd")
    param = cp.zeros(3, dtype=np.float32)
    with pytest.raises(TypeError, match="Wrong number of arguments"):
        kernel(cp.ones(3, dtype=np.float32), 0.5, param, param)
    with pytest.raises(TypeError, match="Type is mismatched"):
        kernel(cp.ones(3, dtype=np.float64), 0.5, param)
    with pytest.raises(TypeError, match="NumPy array"):
        kernel(np.ones(3, dtype=np.float32), 0.5, param)
    kernel(cp.ones(3, dtype=np.float32), -0.5, param)
    np.testing.assert_array_equal(param.get(), [-0.5, -0.5, -0.5])


def test_signatures_are_read_from_cython_docstrings():
    read = cupy_api._from_docstring
    doc = "_ndarray_base.__dlpack__(self, *, stream=None, tuple max_version=None, copy=None)"
    sig = read(type("F", (), {"__doc__": doc}))
    assert list(sig.parameters) == ["self", "stream", "max_version", "copy"]
    sig = read(type("F", (), {"__doc__": r"maximum(x1, x2, /, out=None, \*, casting='a, b')"}))
    sig.bind(1, 2, 3, casting="x")
    with pytest.raises(TypeError):
        sig.bind(x1=1, x2=2)
    assert read(type("F", (), {"__doc__": "Initialize self.  See help(type(self))"})) is None


def test_the_nccl_standin_keeps_cupys_signatures():
    """The stand-in's ``cupy.cuda.nccl`` signatures are those the installed CuPy's compiled
    module embeds (read from its bytes: without libnccl the module cannot be imported)."""
    import pathlib

    import nccl_standin

    if importlib.util.find_spec("cupy_backends") is None:
        pytest.skip("the CuPy API stand-in needs the real cupy to check against")
    spec = importlib.util.find_spec("cupy_backends.cuda.libs.nccl")
    if spec is None or spec.origin is None:
        pytest.skip("this CuPy has no NCCL module")
    compiled = pathlib.Path(spec.origin).read_bytes()
    for name, text in nccl_standin.SIGNATURES.items():
        assert text.encode() in compiled, name
    for name in [*nccl_standin.DATATYPES, *nccl_standin.OPERATORS]:
        assert name.encode() in compiled, name
