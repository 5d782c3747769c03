"""The compiled fast path of the NumPy backend (numba) against the array-API reference.

These tests call the compiled kernels directly, whatever XPNN_JIT says, so the default test
run checks them; the rest of the suite runs the numpy backend with the compiled path on or off
as XPNN_JIT says (the nox sessions "tests(numpy)" and "tests(numpy-nojit)" run both).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import seed_model, spiral, tolerance
from parts import own
from test_optimizers import RULES, UPDATES

import xpnn
from xpnn.backends import Backend, JitBackend, NumpyBackend, jit

pytest.importorskip("numba", reason="the compiled path needs numba (the jit extra)")

DTYPES = ["float32", "float64"]
EPSILON = 1e-7


@pytest.fixture(params=DTYPES)
def dtype(request) -> str:
    return request.param


def _batch(dtype, rows=37, classes=5, seed=0):
    """Softmax outputs, logits, integer labels and one-hot rows for a batch."""
    rng = np.random.default_rng(seed)
    logits = (3 * rng.standard_normal((rows, classes))).astype(dtype)
    probs = NumpyBackend(dtype).softmax(logits)
    labels = rng.integers(0, classes, rows)
    return probs, logits, labels, np.eye(classes, dtype=dtype)[labels]


@pytest.mark.parametrize("classes", [5, 10])
def test_softmax_matches_reference(dtype, classes):
    jb = JitBackend(dtype)
    _, logits, _, _ = _batch(dtype, classes=classes)
    logits[3] = 80  # a row of equal, large values: the shift keeps exp finite
    fused = jb.softmax(logits)
    assert fused.dtype == logits.dtype
    expected = Backend.softmax(jb, logits)
    if logits.shape[1] < 8:  # NumPy sums narrow rows left to right, as the kernel does
        np.testing.assert_array_equal(fused, expected)
    np.testing.assert_allclose(fused, expected, **tolerance(dtype))
    np.testing.assert_allclose(fused[3], 1 / classes, **tolerance(dtype))


@pytest.mark.parametrize("targets", ["labels", "one-hot", "smoothed"])
def test_softmax_crossentropy_matches_reference(dtype, targets):
    """Loss sum, right predictions and gradient in one pass equal the reference's three."""
    jb = JitBackend(dtype)
    probs, _, labels, one_hot = _batch(dtype)
    probs[0] = 0  # clipped at 1e-7 before the log
    probs[0, 1] = 1
    probs[1, :2] = probs[1, 2:4]  # ties: argmax takes the first
    y = {"labels": labels, "one-hot": one_hot, "smoothed": 0.9 * one_hot + 0.02}[targets]
    loss, correct, dinputs = jb.softmax_crossentropy(probs, y, EPSILON)
    ref_loss, ref_correct, ref_dinputs = Backend.softmax_crossentropy(jb, probs, y, EPSILON)
    assert loss.shape == () and loss.dtype == probs.dtype
    np.testing.assert_allclose(loss, ref_loss, **tolerance(dtype))
    assert int(correct) == int(ref_correct) and 0 < int(correct) < len(labels)
    np.testing.assert_array_equal(dinputs, ref_dinputs)  # the same operations, element-wise
    no_gradient = jb.softmax_crossentropy(probs, y, EPSILON, gradient=False)
    assert no_gradient[2] is None
    np.testing.assert_array_equal(no_gradient[0], loss)


def test_crossentropy_kernel_refuses_labels_out_of_range():
    probs, _, labels, _ = _batch("float32")
    labels[4] = probs.shape[1]
    with pytest.raises(IndexError, match="label"):
        JitBackend("float32").softmax_crossentropy(probs, labels, EPSILON)


def test_affine_and_relu_match_reference_bit_for_bit(dtype):
    """Bias added after the product, and max(x, 0), as NumPy computes them (-0.0, NaN and
    infinity included)."""
    jb = JitBackend(dtype)
    rng = np.random.default_rng(2)
    inputs = rng.standard_normal((37, 6)).astype(dtype)
    weights = rng.standard_normal((6, 65)).astype(dtype)
    biases = rng.standard_normal((1, 65)).astype(dtype)
    output = jb.affine(inputs, weights, biases)
    np.testing.assert_array_equal(output, Backend.affine(jb, inputs, weights, biases))
    output[0, :5] = (-0.0, np.nan, -np.inf, np.inf, 0.0)
    relu = jb.relu(output)
    expected = Backend.relu(jb, output)
    np.testing.assert_array_equal(relu, expected)
    np.testing.assert_array_equal(np.signbit(relu), np.signbit(expected))
    assert relu.dtype == output.dtype and (relu >= 0).sum() == relu.size - 1


def test_relu_backward_matches_reference_bit_for_bit(dtype):
    jb = JitBackend(dtype)
    rng = np.random.default_rng(1)
    dvalues, inputs = rng.standard_normal((2, 64, 33)).astype(dtype)
    inputs[0, :3] = 0
    dvalues[1, :2] = (np.inf, np.nan)
    inputs[1, :2] = -1  # NaN and infinity times 0 stay NaN, as in the reference's product
    with np.errstate(invalid="ignore"):
        expected = Backend.relu_backward(jb, dvalues, inputs)
    np.testing.assert_array_equal(jb.relu_backward(dvalues, inputs), expected)


def test_combined_loss_gradient_checks_on_compiled_path():
    """The fused backward is the derivative of the fused forward (float64, numerically)."""
    jb = JitBackend("float64")
    _, logits, labels, _ = _batch("float64", rows=6, classes=4)
    head = xpnn.SoftmaxCategoricalCrossentropy(backend=jb)
    calls = []
    fused = jb.softmax_crossentropy
    jb.softmax_crossentropy = lambda *args, **kwargs: calls.append(1) or fused(*args, **kwargs)
    try:
        xpnn.check_gradients(head, logits, targets=labels)  # jb is float64: checked on it
    finally:
        del jb.softmax_crossentropy
    assert len(calls) > 2 * logits.size  # the compiled pass ran, in every forward


@pytest.mark.parametrize("update", [*UPDATES.keys(), "SGD-plain"])
@pytest.mark.parametrize("size", [50, 2 * jit.PARALLEL_FROM + 7, (70, 30), "strided"])
def test_compiled_updates_equal_reference_bit_for_bit(dtype, update, size, monkeypatch):
    """Each rule's numba version, in one pass and in parts on several threads (large buffers),
    on transposed and on strided arrays (which fall back to NumPy's version), step after
    step."""
    monkeypatch.setenv("XPNN_JIT_THREADS", "3")  # a large buffer goes in 3 uneven parts
    be = JitBackend(dtype)
    plain = update == "SGD-plain"
    arrays, settings = (1, UPDATES["SGD"][1]) if plain else UPDATES[update]
    rule, _ = RULES["SGD" if plain else update]
    shape = (40, 20) if size == "strided" else size
    layout = {(70, 30): lambda a: a.T, "strided": lambda a: a[:, ::2]}.get(size, lambda a: a)
    rng = np.random.default_rng(3)
    state = [rng.standard_normal(shape)] + [rng.random(shape) for _ in range(arrays - 1)]
    fast = [layout(np.array(a, dtype=dtype)) for a in state]
    reference = [layout(np.array(a, dtype=dtype)) for a in state]
    extra = (None,) if plain else ()
    for _ in range(3):
        grad = layout(rng.standard_normal(shape).astype(dtype))
        rule.numba_update(be, {}, fast[0], grad, *fast[1:], *extra, **settings)
        rule.reference_update(be, {}, reference[0], grad, *reference[1:], *extra, **settings)
    for a, b in zip(fast, reference):
        np.testing.assert_array_equal(a, b)


def _large_update():
    rng = np.random.default_rng(0)
    arrays = [rng.random(2 * jit.PARALLEL_FROM, dtype=np.float32) for _ in range(4)]
    expected = [a.copy() for a in arrays]
    settings = UPDATES["Adam"][1]
    xpnn.optimizers.adam.numba_update(JitBackend("float32"), {}, *arrays, **settings)
    xpnn.optimizers.adam.reference_update(JitBackend("float32"), {}, *expected, **settings)
    return all(np.array_equal(a, b) for a, b in zip(arrays, expected))


def _large_update_or_exit():
    if not _large_update():
        sys.exit(3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_large_updates_run_in_a_forked_child(monkeypatch):
    """The thread pool that large buffers use is made again in a forked child, whose copy of
    the parent's pool has no threads (it would wait for ever)."""
    import multiprocessing

    monkeypatch.setenv("XPNN_JIT_THREADS", "2")
    assert _large_update()  # the parent's pool exists now
    child = multiprocessing.get_context("fork").Process(target=_large_update_or_exit)
    child.start()
    child.join(120)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == 0


@pytest.fixture
def fresh_backends(monkeypatch):
    """No backend made yet, as in a new process: get_backend makes them again."""
    monkeypatch.setattr(xpnn.backends.base, "_cache", {})


def _model(widths, optimizer=None, seed=1):
    model = xpnn.Model(seed=seed)
    for index, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        model.add(xpnn.Dense(n_in, n_out))
        model.add(xpnn.ReLU() if index < len(widths) - 2 else xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=optimizer or xpnn.Adam(),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


# The batch example's network, and one whose first weights pass PARALLEL_FROM (split in parts).
MODEL_SIZES = {"small": (2, 64, 3), "large": (300, 400, 3)}


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5", "\u00b2", "0x2"])
@pytest.mark.parametrize("size", MODEL_SIZES)
def test_bad_thread_count_is_refused_before_any_model_for_every_size(
    monkeypatch, fresh_backends, value, size
):
    """A bad XPNN_JIT_THREADS is refused by name when the numpy backend is made, before any
    model, layer or step (it was refused only where a buffer was large enough to split, in
    the middle of a step, and ignored otherwise)."""
    monkeypatch.setenv("XPNN_JIT", "1")
    monkeypatch.setenv("XPNN_JIT_THREADS", value)
    with pytest.raises(ValueError, match="XPNN_JIT_THREADS must be a positive integer"):
        _model(MODEL_SIZES[size])
    with pytest.raises(ValueError, match="XPNN_JIT_THREADS"):
        xpnn.Dense(2, 3)  # the book's hand-written loop
    with pytest.raises(ValueError, match="XPNN_JIT_THREADS"):
        JitBackend("float32")


@pytest.mark.parametrize("size", MODEL_SIZES)
def test_thread_count_is_read_once_when_the_backend_is_made(monkeypatch, fresh_backends, size):
    """Once a model's backend is made, a later XPNN_JIT_THREADS changes nothing: no step
    refuses it halfway (after the shuffle and the first layers' updates), and the model
    trains on the count read at first."""
    rng = np.random.default_rng(0)
    widths = MODEL_SIZES[size]
    X, y = rng.standard_normal((96, widths[0])), rng.integers(0, 3, 96)
    monkeypatch.setenv("XPNN_JIT", "1")
    monkeypatch.setenv("XPNN_JIT_THREADS", "2")
    model = _model(widths)
    assert model.backend.threads == 2
    monkeypatch.setenv("XPNN_JIT_THREADS", "many")
    model.train(X, y, epochs=1, batch_size=32, verbose=False)
    monkeypatch.setenv("XPNN_JIT_THREADS", "1")
    alone = _model(widths)
    alone.backend.threads = 1  # the same backend object: one thread now, the same numbers
    alone.train(X, y, epochs=1, batch_size=32, verbose=False)
    for (w1, b1), (w2, b2) in zip(model.get_parameters(), alone.get_parameters()):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)


def test_bad_thread_count_is_not_read_on_plain_numpy(monkeypatch, fresh_backends):
    """XPNN_JIT=0 runs no kernel, so XPNN_JIT_THREADS means nothing there, for every size."""
    monkeypatch.setenv("XPNN_JIT", "0")
    monkeypatch.setenv("XPNN_JIT_THREADS", "two")
    for widths in MODEL_SIZES.values():
        assert type(_model(widths).backend) is NumpyBackend


@pytest.mark.parametrize(
    ("setting", "compiled"),
    [
        *((value, True) for value in ["1", "true", "True", "YES", "on", " On ", "", "  "]),
        *((value, False) for value in ["0", "false", "FALSE", "no", "No", "off", " off\n"]),
    ],
)
def test_xpnn_jit_takes_the_usual_spellings(monkeypatch, fresh_backends, setting, compiled):
    """Any case, spaces around; unset or blank leaves the compiled path on (numba installed).
    ``false``, ``off`` and ``no`` kept it on before: only ``0`` turned it off."""
    monkeypatch.setenv("XPNN_JIT", setting)
    assert jit.enabled() is compiled
    backend = xpnn.get_backend("numpy")
    assert type(backend) is (JitBackend if compiled else NumpyBackend)
    assert backend.fast_path == ("numba" if compiled else "numpy")


@pytest.mark.parametrize("setting", ["2", "-1", "tru", "enabled", "y", "nein", "0 1"])
def test_xpnn_jit_refuses_an_unknown_value_by_name(monkeypatch, fresh_backends, setting):
    """An unknown value is an error naming XPNN_JIT and what it takes, before any model."""
    monkeypatch.setenv("XPNN_JIT", setting)
    accepted = "1, true, yes, on .* 0, false, no, off"
    with pytest.raises(ValueError, match=f"XPNN_JIT must be one of {accepted}.*{setting!r}"):
        xpnn.get_backend("numpy")
    with pytest.raises(ValueError, match="XPNN_JIT"):
        xpnn.Model()


def test_optimizers_pick_the_compiled_version_and_fall_back():
    jb = JitBackend("float32")
    for rule, optimizer in RULES.values():
        assert optimizer().version(jb, rule.reference_update) is rule.numba_update

    numpy_only = xpnn.SGD()
    numpy_only.versions = {"numpy": xpnn.optimizers.sgd.numpy_update}
    assert numpy_only.version(jb, None) is xpnn.optimizers.sgd.numpy_update


def test_training_on_the_compiled_path_follows_the_reference():
    """A model trained through the fused kernels ends where plain NumPy's ends (float64: the
    loss sums in another order, nothing else differs)."""
    X, y = spiral(60, 3)
    ends = []
    for backend in (JitBackend("float64"), NumpyBackend("float64")):
        model = seed_model(backend, seed=2, dtype="float64")
        history = model.train(X, y, epochs=5, batch_size=32, verbose=False)
        ends.append((model.get_parameters(), history["loss"][-1], history["accuracy"][-1]))
    (fused, fused_loss, fused_accuracy), (plain, plain_loss, plain_accuracy) = ends
    for (w1, b1), (w2, b2) in zip(fused, plain):
        np.testing.assert_allclose(w1, w2, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b1, b2, rtol=1e-10, atol=1e-13)
    assert fused_loss == pytest.approx(plain_loss, rel=1e-12)
    assert fused_accuracy == plain_accuracy


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("0", "NumpyBackend numpy"), (" Off ", "NumpyBackend numpy"), ("1", None), ("yes", None)],
)
def test_xpnn_jit_switches_the_compiled_path(setting, expected):
    """XPNN_JIT=0 (or off...) gives plain NumPy; otherwise, numba installed, the compiled
    backend; in a new process, where the environment is read."""
    code = "import xpnn; b = xpnn.get_backend('numpy'); print(type(b).__name__, b.fast_path)"
    env = {**os.environ, "XPNN_JIT": setting}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == (expected or "JitBackend numba")
    assert xpnn.get_backend("numpy").name == "numpy"


def test_kernels_compile_where_no_cache_folder_can_be_written(monkeypatch):
    """A read-only installation and home folder: numba finds no folder to cache in (it
    refuses to make a cache at all), and the kernel compiles anyway."""
    import numba.core.caching

    from xpnn.backends import jit_cache

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="no locator"):
        jit_cache.CheckedCache(_double)

    values = np.arange(4.0)
    kernel = jit.Kernel(_double)
    kernel(values, np.array([2.0]))
    np.testing.assert_array_equal(values, [0, 2, 4, 6])
    assert type(kernel._compiled._cache).__name__ == "NullCache"


def _double(a, s):  # pragma: no cover - compiled by numba
    for i in range(a.size):
        a[i] = a[i] * s[0]


#: Every optimizer's compiled kernel, by the optimizer that runs it.
OPTIMIZER_KERNELS = {
    "sgd": (xpnn.SGD, xpnn.optimizers.sgd.NUMBA_KERNELS["plain"]),
    "sgd-momentum": (
        lambda: xpnn.SGD(momentum=0.9),
        xpnn.optimizers.sgd.NUMBA_KERNELS["momentum"],
    ),
    "adagrad": (xpnn.Adagrad, xpnn.optimizers.adagrad.NUMBA_KERNEL),
    "rmsprop": (xpnn.RMSprop, xpnn.optimizers.rmsprop.NUMBA_KERNEL),
    "adam": (xpnn.Adam, xpnn.optimizers.adam.NUMBA_KERNEL),
    "adamw": (xpnn.AdamW, xpnn.optimizers.adamw.NUMBA_KERNEL),
}


def test_every_optimizer_has_its_compiled_kernel_counted():
    """Each of xpnn's registered optimizers has its kernel in the list the test below runs."""
    counted = {type(make()).__name__ for make, _ in OPTIMIZER_KERNELS.values()}
    assert counted == set(own("optimizer"))


@pytest.mark.parametrize("setting", ["default", "1", "0"])
@pytest.mark.parametrize("optimizer", OPTIMIZER_KERNELS)
def test_training_steps_run_the_compiled_kernels(monkeypatch, fresh_backends, setting, optimizer):
    """Every step of ``train`` on the default numpy backend runs the compiled kernels: the
    optimizer's and the layers' (the bias add twice, ReLU forward and backward, softmax's two
    passes, the loss with its gradient, on labels and one-hot rows); with XPNN_JIT=0, none.
    Counted by kernel, not timed: a step that fell back to plain NumPy would pass every other
    test and run slower. Step by step: the compiled epoch, which runs these kernels inside one
    call, is tested in test_compiled_epoch.py."""
    monkeypatch.setenv("XPNN_JIT_EPOCH", "0")
    if setting == "default":
        monkeypatch.delenv("XPNN_JIT", raising=False)
    else:
        monkeypatch.setenv("XPNN_JIT", setting)
    calls: dict = {}
    call = jit.Kernel.__call__

    def counted(kernel, *args):
        calls[kernel] = calls.get(kernel, 0) + 1
        return call(kernel, *args)

    monkeypatch.setattr(jit.Kernel, "__call__", counted)
    make, optimizer_kernel = OPTIMIZER_KERNELS[optimizer]
    model = _model((2, 16, 3), make())
    X, y = spiral(40, 3)  # 120 samples: 4 steps of 32 an epoch
    rule = sys.modules[type(model.optimizer).__module__]
    if setting == "0":
        assert type(model.backend) is NumpyBackend
        assert model.optimizer.version(model.backend, None) is rule.numpy_update
    else:
        assert type(model.backend) is JitBackend
        assert model.optimizer.version(model.backend, None) is rule.numba_update
    seen = set()
    for targets, loss_kernel in [
        (y, "crossentropy_labels"),
        (np.eye(3)[y], "crossentropy_one_hot"),
    ]:
        calls.clear()
        model.train(X, targets, epochs=2, batch_size=32, verbose=False)
        steps = 8
        if setting == "0":
            assert calls == {}
            continue
        per_step = {
            jit.KERNELS["add_row"]: 2,  # one per Dense layer
            jit.KERNELS["relu"]: 1,
            jit.KERNELS["relu_backward"]: 1,
            jit.KERNELS["shift_rows"]: 1,
            jit.KERNELS["normalize_rows"]: 1,
            jit.KERNELS[loss_kernel]: 1,
            optimizer_kernel: 1,  # one pass over the model's flat buffer
        }
        for kernel, count in per_step.items():
            assert calls.get(kernel, 0) >= count * steps, kernel.function.__name__
        seen.update(per_step)
    if setting != "0":
        assert seen >= set(jit.KERNELS.values())  # every layer kernel is counted


def test_every_compiled_optimizer_is_counted():
    """The test above covers every optimizer that has a compiled version."""
    compiled = {
        value
        for value in vars(xpnn.optimizers).values()
        if isinstance(value, type) and "numba" in getattr(value, "versions", {})
    }
    assert compiled and compiled <= {type(make()) for make, _ in OPTIMIZER_KERNELS.values()}
