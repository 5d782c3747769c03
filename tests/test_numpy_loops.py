"""NumPy's exp, tanh and log as the compiled epoch calls them (xpnn.backends.numpy_loops).

The compiled code calls NumPy's own inner loops, read from each ufunc's C structure and checked
on a probe as the module loads, or, where one cannot be taken, a callback into NumPy. Both are
checked here against the ufuncs bit for bit, on every layout the compiled code passes; the
check is shown to refuse what is not the ufunc's loop; and a model trained on the callbacks
gives the step path's numbers.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import xpnn

pytest.importorskip("numba", reason="the compiled epoch needs numba (the jit extra)")

import numba

from xpnn.backends import numpy_loops

NAMES = ("exp", "tanh", "log")
UFUNCS = {"exp": np.exp, "tanh": np.tanh, "log": np.log}
ROOT = Path(__file__).resolve().parents[1]


def _bits(values):
    return values.view(f"u{values.itemsize}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_numpys_own_loops_are_taken(name, dtype):
    """On NumPy's wheels every function's loop is NumPy's own, not the slower callback."""
    assert numpy_loops.loops[name, dtype] == "NumPy's loop"


@numba.njit
def _apply_each(name, source, target):  # pragma: no cover - compiled by numba
    if name == 0:
        numpy_loops.exp(source, target)
    elif name == 1:
        numpy_loops.tanh(source, target)
    else:
        numpy_loops.log(source, target)


def _layouts(values):
    """(source, target) pairs as compiled code may pass them, and the source's copy."""
    grid = values[: (values.size // 12) * 12].reshape(-1, 12)
    fortran = np.asfortranarray(grid)
    in_place = grid.copy()
    wide = np.zeros((grid.shape[0], 20), grid.dtype)
    wide[:, 3:15] = grid
    return {
        "C-ordered": (grid, np.empty_like(grid)),
        "in place": (in_place, in_place),
        "columns of a wider array": (wide[:, 3:15], np.empty_like(grid)),
        "Fortran-ordered": (fortran, np.empty_like(grid)),
        "transposed": (grid.T, np.empty_like(grid.T)),
        "one row": (grid[:1], np.empty_like(grid[:1])),
        "no rows": (grid[:0], np.empty_like(grid[:0])),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_calls_equal_numpys_ufuncs(name, dtype):
    """Every value of the probe (each side of every range the functions treat apart, random
    bit patterns, NaN and the infinities), in each layout, is the ufunc's bit for bit."""
    values = numpy_loops._probe(np.dtype(dtype))
    ufunc = UFUNCS[name]
    for layout, (source, target) in _layouts(values).items():
        with np.errstate(all="ignore"):
            expected = ufunc(source)
        _apply_each(NAMES.index(name), source, target)
        assert np.array_equal(_bits(target), _bits(expected)), layout


def _address(ufunc, dtype):
    address, why = numpy_loops._native(ufunc, np.dtype(dtype))
    assert address is not None, why
    return address


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_check_refuses_what_is_not_the_ufuncs_loop(dtype):
    """A structure that is not a one-input ufunc's, a type with no loop, and another
    function's loop are refused; the ufunc's own loop passes."""
    address, why = numpy_loops._native(np.add, np.dtype(dtype))
    assert (address, why) == (None, "its C structure reads otherwise")
    assert numpy_loops._native(np.exp, np.dtype("int8")) == (None, "it has no loop for the type")
    dtype_ = np.dtype(dtype)
    assert numpy_loops._same(_address(np.exp, dtype), np.exp, dtype_)
    assert not numpy_loops._same(_address(np.tanh, dtype), np.exp, dtype_)
    assert not numpy_loops._same(_address(np.log, dtype), np.exp, dtype_)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_the_callback_gives_the_ufuncs_values(name, dtype):
    """The callback taken where NumPy's loop cannot be: the probe's checks, and strided runs."""
    ufunc, dtype_ = UFUNCS[name], np.dtype(dtype)
    callback = numpy_loops._callback(ufunc, dtype_)
    address = ctypes.cast(callback, ctypes.c_void_p).value
    assert numpy_loops._same(address, ufunc, dtype_)
    source = numpy_loops._probe(dtype_)[::2]
    out = np.zeros(3 * source.size, dtype_)
    with np.errstate(all="ignore"):
        numpy_loops._run(address, source, out[::3])
        expected = ufunc(source)
    assert np.array_equal(_bits(out[::3]), _bits(expected))
    assert not out[1::3].any() and not out[2::3].any()  # nothing between the strided values


def test_training_on_the_callbacks_equals_the_step_path(tmp_path):
    """Where no loop of NumPy's can be taken, the compiled epoch calls NumPy back and gives the
    step path's numbers: a Softmax, a Sigmoid with binary cross-entropy, a Tanh (their exp,
    log and tanh), in float32 and float64, in a process whose every loop is the callback."""
    script = textwrap.dedent(
        """
        import numpy as np
        from xpnn.backends import numpy_loops

        numpy_loops._native = lambda ufunc, dtype: (None, "refused by the test")
        called = {name: 0 for name in numpy_loops._UFUNCS}

        def counting(name, ufunc):
            def call(*args, **kwargs):
                called[name] += 1
                return ufunc(*args, **kwargs)
            return call

        numpy_loops._UFUNCS = {name: counting(name, ufunc)
                               for name, ufunc in numpy_loops._UFUNCS.items()}
        numpy_loops._load()
        called.update(dict.fromkeys(called, 0))  # the load's own checks called them
        assert set(numpy_loops.loops.values()) == {"a callback to NumPy: refused by the test"}

        import os
        import xpnn
        from xpnn.training import compiled

        calls = []
        kernel = compiled.KERNEL
        compiled.KERNEL = lambda *args: calls.append(1) or kernel(*args)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((150, 2))
        labels = (X[:, 0] > X[:, 1]).astype(np.int64) + (X[:, 0] > 0)
        binary = np.c_[labels == 1, labels == 2].astype(float)

        def train(dtype, output, loss, y, setting):
            os.environ[compiled.ENV] = setting
            model = xpnn.Model(dtype=dtype, seed=3)
            for layer in (xpnn.Dense(2, 16), xpnn.Tanh(), xpnn.Dense(16, y.shape[1] if y.ndim
                          == 2 else 3), output()):
                model.add(layer)
            model.set(loss=loss(), optimizer=xpnn.Adam(learning_rate=0.05))
            model.finalize()
            history = model.train(X, y, epochs=3, batch_size=32, verbose=False)
            return model.network.parameters.params.copy(), history["loss"]

        for dtype in ("float32", "float64"):
            for output, loss, y in [(xpnn.Softmax, xpnn.CategoricalCrossentropy, labels),
                                    (xpnn.Sigmoid, xpnn.BinaryCrossentropy, binary)]:
                calls.clear()
                on = train(dtype, output, loss, y, "1")
                assert calls, "the compiled epoch did not run"
                off = train(dtype, output, loss, y, "0")
                assert np.array_equal(on[0], off[0]) and on[1] == off[1], (dtype, output)
        assert all(called.values()), called
        print("same")
        """
    )
    env = dict(os.environ, XPNN_JIT="1")  # the compiled epoch, even in the plain-NumPy session
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "same"


def _overflowing_sigmoid(backend, dtype):
    """A Sigmoid whose inputs reach -1000: its exp of 1000 overflows (to a sigmoid of 0)."""
    model = xpnn.Model(backend=backend, dtype=dtype, seed=0)
    model.add(xpnn.Dense(2, 2))
    model.add(xpnn.Sigmoid())
    model.set(loss=xpnn.BinaryCrossentropy(), optimizer=xpnn.Adam(learning_rate=0.01))
    model.finalize()
    weights = np.array([[500.0, 0.5], [0.0, -0.5]])
    model.set_parameters([(weights, np.zeros((1, 2)))])
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_sigmoid_that_overflows_warns_as_numpy_does(backend, dtype, monkeypatch):
    """The step path's exp warns of the overflow (NumPy's warning); so does the compiled epoch,
    with the same numbers."""
    X = np.array([[-2.0, 1.0], [1.0, 0.5], [-1.5, -1.0], [0.5, 2.0]])
    y = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    ends = []
    for setting in ("1", "0"):
        monkeypatch.setenv("XPNN_JIT_EPOCH", setting)
        model = _overflowing_sigmoid(backend, dtype)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.train(X, y, epochs=2, batch_size=2, verbose=False)
        overflow = [w for w in caught if "overflow encountered in exp" in str(w.message)]
        if backend in ("numpy", "strict"):
            assert overflow, setting
        ends.append(xpnn.backends.to_numpy(model.network.parameters.params))
    np.testing.assert_array_equal(ends[0], ends[1], strict=True)
