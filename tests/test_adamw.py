"""AdamW: its steps worked by hand, every version of its update against the reference (NumPy,
numba, the CUDA body, torch), torch.optim.AdamW over two epochs of the spiral, and a model
with it saved, loaded, trained on thread ranks and chosen by the scikit-learn estimators."""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_on_backend, spiral

import xpnn
from xpnn.backends import CupyBackend
from xpnn.optimizers import CUPY_KERNELS, FLUSH_EVERY, adam, adamw

#: The scalars of step 3 of a run with learning rate 0.01 and weight decay 0.1.
SETTINGS = {
    "shrink": 1 - 0.01 * 0.1,
    "learning_rate": 0.01,
    "beta_1": 0.9,
    "beta_2": 0.999,
    "epsilon": 1e-7,
    "correction_1": 1 - 0.9**3,
    "correction_2": 1 - 0.999**3,
}


def _layer(be, weights, dweights):
    layer = xpnn.Dense(1, 2, backend=be)
    layer.weights, layer.dweights = be.asarray(weights), be.asarray(dweights)
    layer.biases, layer.dbiases = be.asarray([[0.5, -1.0]]), be.asarray([[0.0, 0.0]])
    return layer


def _step(optimizer, layer):
    optimizer.pre_update_params()
    optimizer.update_params(layer)
    optimizer.post_update_params()


def test_two_steps_with_decay_by_hand(backend):
    """Learning rate 0.1 then 0.1 / 1.5; each weight shrinks by (1 - lr * 0.2), then takes
    Adam's step; a bias with zero gradient only shrinks (Adam's step of it is 0)."""
    be = xpnn.get_backend(backend, "float64")
    layer = _layer(be, [[1.0, -2.0]], [[0.5, -0.25]])
    optimizer = xpnn.AdamW(learning_rate=0.1, decay=0.5, weight_decay=0.2)
    _step(optimizer, layer)
    # Step 1: the corrected moments are g and g ** 2, so Adam moves by -0.1 * g / (|g| + 1e-7).
    step1 = [
        1.0 * (1 - 0.02) - 0.1 * 0.5 / (0.5 + 1e-7),
        -2.0 * (1 - 0.02) + 0.1 * 0.25 / (0.25 + 1e-7),
    ]
    np.testing.assert_allclose(xpnn.to_numpy(layer.weights), [step1], rtol=1e-12)
    np.testing.assert_allclose(xpnn.to_numpy(layer.biases), [[0.49, -0.98]], rtol=1e-12)

    layer.dweights[...] = be.asarray([[0.1, 0.2]])
    _step(optimizer, layer)
    lr = 0.1 / 1.5
    m = [0.9 * 0.05 + 0.1 * 0.1, 0.9 * -0.025 + 0.1 * 0.2]
    c = [0.999 * 0.00025 + 0.001 * 0.01, 0.999 * 0.0000625 + 0.001 * 0.04]
    expected = [
        w * (1 - lr * 0.2) - lr * (mi / (1 - 0.9**2)) / (math.sqrt(ci / (1 - 0.999**2)) + 1e-7)
        for w, mi, ci in zip(step1, m, c)
    ]
    np.testing.assert_allclose(xpnn.to_numpy(layer.weights), [expected], rtol=1e-12)
    np.testing.assert_allclose(
        xpnn.to_numpy(layer.biases), [[0.49 * (1 - lr * 0.2), -0.98 * (1 - lr * 0.2)]]
    )
    assert_on_backend(layer.weights, be)
    assert_on_backend(layer.weight_momentums, be)


def test_without_weight_decay_it_is_adam_bit_for_bit(backend):
    be = xpnn.get_backend(backend, "float32")
    runs = []
    for optimizer in (xpnn.AdamW(0.05, 1e-3, weight_decay=0.0), xpnn.Adam(0.05, 1e-3)):
        layer = _layer(be, [[1.0, -2.0]], [[0.5, -0.25]])
        for gradient in (0.5, 0.2, -0.3):
            layer.dweights[...] = be.asarray([[gradient, 2 * gradient]])
            _step(optimizer, layer)
        runs.append([xpnn.to_numpy(a) for a in (layer.weights, layer.weight_cache)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_settings_defaults_and_state():
    optimizer = xpnn.AdamW()
    assert (optimizer.learning_rate, optimizer.decay, optimizer.epsilon) == (0.001, 0.0, 1e-7)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.weight_decay) == (0.9, 0.999, 0.01)
    assert optimizer.config()["weight_decay"] == 0.01
    assert xpnn.AdamW.state_names == xpnn.Adam.state_names
    assert xpnn.AdamW.non_negative_states == xpnn.Adam.non_negative_states
    be = xpnn.get_backend("numpy", "float64")
    layer = _layer(be, [[1.0, -2.0]], [[0.5, 0.1]])
    before = set(vars(layer))
    _step(optimizer, layer)
    expected = {f"{p}_{n}" for p in ("weight", "bias") for n in optimizer.state_names}
    assert set(vars(layer)) - before == expected


def test_a_decay_that_would_flip_the_parameters_is_refused():
    """Each step multiplies the parameters by ``1 - learning_rate * weight_decay``."""
    with pytest.raises(ValueError, match=r"learning_rate \* weight_decay must be below 1"):
        xpnn.AdamW(learning_rate=0.01, weight_decay=200)
    assert xpnn.AdamW(learning_rate=0.01, weight_decay=99).weight_decay == 99


def test_subnormal_states_are_flushed_every_flush_every_steps(backend):
    """As Adam's: a state stuck at the smallest subnormal is zeroed at step FLUSH_EVERY."""
    be = xpnn.get_backend(backend, "float32")
    smallest = float(np.finfo("float32").smallest_subnormal)
    layer = _layer(be, [[1.0, -2.0]], [[0.0, 0.0]])
    optimizer = xpnn.AdamW(0.05)
    layer.weight_momentums = be.asarray([[smallest, 0.5]])
    layer.weight_cache = be.asarray([[smallest, 0.5]])
    for _ in range(FLUSH_EVERY - 1):
        _step(optimizer, layer)
    stuck = {smallest, 0.0} if backend == "cupy" else {smallest}  # a GPU flushes float32 itself
    assert xpnn.to_numpy(layer.weight_momentums)[0, 0] in stuck
    _step(optimizer, layer)
    for state in (layer.weight_momentums, layer.weight_cache):
        assert xpnn.to_numpy(state)[0, 0] == 0
        assert 0 < xpnn.to_numpy(state)[0, 1] < 0.5


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        ("weight_decay", -0.1, ValueError),
        ("weight_decay", float("inf"), ValueError),
        ("weight_decay", "0.1", TypeError),
        ("beta_2", 1.0, ValueError),
        ("learning_rate", 0.0, ValueError),
    ],
)
def test_bad_settings_are_refused_by_name(argument, value, error):
    with pytest.raises(error, match=argument):
        xpnn.AdamW(**{argument: value})


# -- every version against the reference ----------------------------------------------------------


def _versions_against_reference(be, update, size, steps=3, seed=3):
    """Runs ``update`` and the reference from the same state and gradients; both results."""
    rng = np.random.default_rng(seed)
    state = [rng.standard_normal(size), rng.random(size), rng.random(size)]
    layout = (lambda a: a.T) if isinstance(size, tuple) else (lambda a: a)
    fast = [layout(be.asarray(a)) for a in state]
    reference = [layout(be.asarray(np.array(a))) for a in state]
    scratch = {}
    for _ in range(steps):
        grad = layout(be.asarray(rng.standard_normal(size)))
        update(be, scratch, fast[0], grad, *fast[1:], **SETTINGS)
        adamw.reference_update(be, {}, reference[0], grad, *reference[1:], **SETTINGS)
    return fast, reference


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [50, 300_007, (70, 30)], ids=["small", "large", "transposed"])
def test_the_version_picked_matches_the_reference(backend, dtype, size):
    be = xpnn.get_backend(backend, dtype)
    update = xpnn.AdamW().version(be, adamw.reference_update)
    fast, reference = _versions_against_reference(be, update, size)
    for a, b in zip(fast, reference):
        assert_on_backend(a, be)
        # Identical on the CPU; a fused GPU kernel may contract multiply-adds.
        np.testing.assert_allclose(xpnn.to_numpy(a), xpnn.to_numpy(b), rtol=1e-6, atol=1e-7)
        if backend == "numpy":
            np.testing.assert_array_equal(a, b)


def test_every_backend_path_has_a_version():
    assert xpnn.AdamW.versions == {
        "numpy": adamw.numpy_update,
        "numba": adamw.numba_update,
        "cupy": adamw.cupy_update,
        "torch": adamw.torch_update,
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_version_is_the_reference_bit_for_bit(dtype):
    be = xpnn.get_backend("numpy", dtype)
    fast, reference = _versions_against_reference(be, adamw.numpy_update, (70, 30))
    for a, b in zip(fast, reference):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [50, "large", (70, 30), "strided"])
def test_compiled_version_is_the_reference_bit_for_bit(monkeypatch, dtype, size):
    """In one pass and in parts on several threads (large buffers), and on arrays it cannot
    view as flat (transposed, strided: NumPy's version)."""
    pytest.importorskip("numba", reason="the compiled path needs numba (the jit extra)")
    from xpnn.backends import JitBackend, jit

    monkeypatch.setenv("XPNN_JIT_THREADS", "3")
    be = JitBackend(dtype)
    rng = np.random.default_rng(3)
    shape = {"large": 2 * jit.PARALLEL_FROM + 7, "strided": (40, 20)}.get(size, size)
    layout = {(70, 30): lambda a: a.T, "strided": lambda a: a[:, ::2]}.get(size, lambda a: a)
    state = [rng.standard_normal(shape), rng.random(shape), rng.random(shape)]
    fast = [layout(np.array(a, dtype=dtype)) for a in state]
    reference = [layout(np.array(a, dtype=dtype)) for a in state]
    for _ in range(3):
        grad = layout(rng.standard_normal(shape).astype(dtype))
        adamw.numba_update(be, {}, fast[0], grad, *fast[1:], **SETTINGS)
        adamw.reference_update(be, {}, reference[0], grad, *reference[1:], **SETTINGS)
    for a, b in zip(fast, reference):
        np.testing.assert_array_equal(a, b)


def test_training_on_numpy_runs_the_compiled_kernel(monkeypatch):
    """Each step of ``train`` on the compiled numpy backend, step by step, is one pass of
    AdamW's kernel over the model's flat buffer (counted, not timed); the compiled epoch runs
    the same loop inside its own (tests/test_compiled_epoch.py)."""
    pytest.importorskip("numba", reason="the compiled path needs numba (the jit extra)")
    from xpnn.backends import JitBackend, jit

    monkeypatch.setenv("XPNN_JIT", "1")
    monkeypatch.setenv(jit.EPOCH_SWITCH, "0")
    monkeypatch.setattr(xpnn.backends.base, "_cache", {})  # backends made afresh
    calls = []
    call = jit.Kernel.__call__

    def counted(kernel, *args):
        calls.append(kernel)
        return call(kernel, *args)

    monkeypatch.setattr(jit.Kernel, "__call__", counted)
    model = _spiral_model("numpy", xpnn.AdamW(0.02), "float32")
    assert type(model.backend) is JitBackend
    assert model.optimizer.version(model.backend, None) is adamw.numba_update
    X, y = spiral(40, 3)
    model.train(X, y, epochs=2, batch_size=32, verbose=False)  # 4 steps an epoch
    assert calls.count(adamw.NUMBA_KERNEL) == 8
    assert adam.NUMBA_KERNEL not in calls


def test_the_cuda_body_compiled_on_the_host_is_the_reference(backend, tmp_path):
    """The CUDA body, compiled as C++ on the host without fused multiply-adds (as CuPy compiles
    it) and called as cupy_update calls it, gives the reference bit for bit."""
    from test_kernels import HostCupy, _host_source

    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel bodies on the host")
    (tmp_path / "kernels.cpp").write_text(_host_source())
    subprocess.run(
        [compiler, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", "k.so", "kernels.cpp"],
        cwd=tmp_path,
        check=True,
    )
    cupy_like = object.__new__(CupyBackend)  # only its kernel() runs
    cupy_like.xp = HostCupy(ctypes.CDLL(str(tmp_path / "k.so")))
    for dtype in ("float32", "float64"):
        be = xpnn.get_backend(backend, dtype)
        rng = np.random.default_rng(4)
        host = [rng.standard_normal(1000).astype(dtype)]
        host += [rng.random(1000).astype(dtype) for _ in range(2)]
        reference = [be.asarray(a.copy()) for a in host]
        for _ in range(3):
            grad = rng.standard_normal(1000).astype(dtype)
            adamw.reference_update(be, {}, reference[0], be.asarray(grad), *reference[1:],
                                   **SETTINGS)  # fmt: skip
            adamw.cupy_update(cupy_like, {}, host[0], grad, *host[1:], **SETTINGS)
        for result, expected in zip(host, reference):
            if backend.startswith("torch"):  # torch's CPU square root is not correctly rounded
                tolerance = 1e-6 if dtype == "float32" else 1e-14  # as tests/test_torch.py
                np.testing.assert_allclose(
                    result, xpnn.to_numpy(expected), rtol=tolerance, atol=tolerance
                )
            else:
                np.testing.assert_array_equal(result, xpnn.to_numpy(expected))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_cuda_body_on_the_cupy_stand_in(dtype):
    """The kernel, built by the CuPy API stand-in (checked against CuPy's signatures) and
    called as cupy_update calls it, gives the formula computed by NumPy."""
    import cupy_api

    try:
        cp = cupy_api.build()
    except ImportError as error:
        pytest.skip(f"the CuPy API stand-in needs the real cupy to check against: {error}")
    inputs, outputs, body = CUPY_KERNELS["adamw"]
    kernel = cp.ElementwiseKernel(inputs, outputs, body, "xpnn_adamw", options=("--fmad=false",))
    rng = np.random.default_rng(1)
    grad, param, m, c = (rng.standard_normal(50).astype(dtype) for _ in range(4))
    c = np.abs(c)
    s = np.dtype(dtype).type
    b1, b2, eps, k1, k2, lr, shrink = (
        s(0.9), s(0.999), s(1e-7), s(0.19), s(0.002), s(-0.01), s(0.999),
    )  # fmt: skip
    arrays = [cp.asarray(x) for x in (grad, param, m, c)]
    kernel(arrays[0], b1, 1 - b1, b2, 1 - b2, eps, k1, k2, lr, shrink, *arrays[1:])
    param = param * shrink
    m = b1 * m + (1 - b1) * grad
    c = b2 * c + (1 - b2) * (grad * grad)
    param += lr * (m / k1) / (np.sqrt(c / k2) + eps)
    for result, expected in zip(arrays[1:], (param, m, c)):
        assert result.dtype == dtype
        np.testing.assert_array_equal(result.get(), expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_version_is_the_reference_on_torch(dtype):
    torch = pytest.importorskip("torch", reason="torch is not installed (the torch extra)")
    be = xpnn.get_backend("torch:cpu", dtype)
    assert xpnn.AdamW().version(be, None) is adamw.torch_update
    fast, reference = _versions_against_reference(be, adamw.torch_update, (70, 30))
    for a, b in zip(fast, reference):
        assert type(a) is torch.Tensor
        assert torch.equal(a, b)


# -- in a model -----------------------------------------------------------------------------------


def _spiral_model(backend, optimizer, dtype="float64", seed=3):
    model = xpnn.Model(backend=backend, seed=seed, dtype=dtype)
    model.add(xpnn.Dense(2, 16))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(16, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=optimizer,
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def test_equal_to_torch_adamw_over_two_epochs_of_the_spiral(backend):
    """xpnn's AdamW, on any backend, against torch.optim.AdamW with the book's decay as a
    LambdaLR, on the same network, data and batches: equal to 1e-9 after two epochs."""
    torch = pytest.importorskip("torch", reason="torch is not installed (the torch extra)")
    lr, decay, weight_decay, epsilon = 0.02, 1e-2, 0.05, 1e-7
    X, y = spiral(100, 3)
    model = _spiral_model(backend, xpnn.AdamW(lr, decay, epsilon, weight_decay=weight_decay))
    first = [a for layer in model.get_parameters() for a in layer]
    start = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in first]
    model.train(X, y, epochs=2, batch_size=128, shuffle=False, verbose=False)

    optimizer = torch.optim.AdamW(start, lr=lr, eps=epsilon, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + decay * step))
    w1, b1, w2, b2 = start
    X_t, y_t = torch.tensor(X, dtype=torch.float64), torch.tensor(y, dtype=torch.int64)
    steps = 0
    for _ in range(2):
        for low in range(0, len(X), 128):
            batch, labels = X_t[low : low + 128], y_t[low : low + 128]
            logits = torch.relu(batch @ w1 + b1) @ w2 + b2
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(logits, labels).backward()
            optimizer.step()
            schedule.step()
            steps += 1
    assert steps == model.optimizer.iterations == 6
    ours = [a for layer in model.get_parameters() for a in layer]
    for mine, theirs, before in zip(ours, start, first):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=0, atol=1e-9)
        assert np.abs(mine - before).max() > 1e-3  # it trained


def test_a_saved_model_resumes_bit_for_bit(backend, tmp_path):
    """Saved after 3 epochs with its optimizer state, loaded and trained 2 more: the run that
    never stopped, weight decay and all."""
    X, y = spiral(30, 3)

    def build():
        return _spiral_model(backend, xpnn.AdamW(0.02, 1e-3, weight_decay=0.1), "float32")

    saved = build()
    saved.train(X, y, epochs=3, batch_size=32, verbose=False)
    saved.save(tmp_path / "adamw.safetensors")
    resumed = xpnn.Model.load(tmp_path / "adamw.safetensors", backend=backend)
    assert type(resumed.optimizer) is xpnn.AdamW
    assert resumed.optimizer.config() == saved.optimizer.config()
    assert resumed.optimizer.iterations == 9
    resumed.train(X, y, epochs=2, batch_size=32, verbose=False)
    uninterrupted = build()
    uninterrupted.train(X, y, epochs=5, batch_size=32, verbose=False)
    for a, b in zip(resumed.get_parameters(), uninterrupted.get_parameters()):
        for x, z in zip(a, b):
            np.testing.assert_array_equal(x, z)


@pytest.mark.parametrize("size", [2, 3])
def test_thread_ranks_train_as_one_process(backend, size):
    """Data-parallel replicas (the MPI logic, ranks as threads) end bit-identical, equal to one
    process."""
    from thread_ranks import Raised, ThreadCommunicator, ThreadGroup, run_ranks

    X, y = spiral(43, 3)
    options = dict(epochs=3, batch_size=32, verbose=False)

    def build():
        return _spiral_model(backend, xpnn.AdamW(0.02, 1e-4, weight_decay=0.05))

    alone = build()
    alone.train(X, y, **options)
    group = ThreadGroup(size)

    def work(rank):
        model = build()
        model.train(X, y, comm=ThreadCommunicator(group, rank, model.backend), **options)
        return np.concatenate([a.ravel() for layer in model.get_parameters() for a in layer])

    results = run_ranks(size, work)
    expected = np.concatenate([a.ravel() for layer in alone.get_parameters() for a in layer])
    for result in results:
        assert not isinstance(result, Raised), result
        assert np.array_equal(result, results[0])
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_the_estimators_take_adamw():
    from xpnn.sklearn import MLPClassifier

    X, y = spiral(20, 3)
    clf = MLPClassifier((8,), max_iter=2, optimizer="adamw", random_state=0).fit(X, y)
    assert type(clf.model_.optimizer) is xpnn.AdamW
    assert clf.model_.optimizer.weight_decay == 0.01
    assert clf.model_.optimizer.learning_rate == clf.learning_rate_init


def test_its_module_is_the_optimizers_own():
    assert sys.modules[xpnn.AdamW.__module__] is adamw
    assert "adamw" in CUPY_KERNELS
