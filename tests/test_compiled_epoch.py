"""The compiled epoch (xpnn.training.compiled) against the step path, and when it runs.

On the numpy backend with numba, a model the compiled epoch expresses trains through it unless
XPNN_JIT_EPOCH=0; every test here trains the same model both ways and asserts the same numbers
bit for bit (parameters, optimizer state, step count, learning rate, loss and accuracy), and
which path ran. On the other backends both runs take the step path.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest
from helpers import press_ctrl_c_at_step, spiral
from parts import OPTIMIZERS as RULES

import xpnn

pytest.importorskip("numba", reason="the compiled epoch needs numba (the jit extra)")

from xpnn.training import compiled, compiled_rules

X, Y = spiral(100, 3)


@pytest.fixture
def runs(monkeypatch):
    """Counts the compiled loop's calls."""
    calls = []
    kernel = compiled.KERNEL

    def counting(*args):
        calls.append(args[4])  # its steps
        return kernel(*args)

    monkeypatch.setattr(compiled, "KERNEL", counting)
    return calls


def _model(backend, dtype="float32", optimizer=None, layers=None, seed=0, metric=True):
    model = xpnn.Model(backend=backend, dtype=dtype, seed=seed)
    for layer in layers or [xpnn.Dense(2, 32), xpnn.ReLU(), xpnn.Dense(32, 3)]:
        model.add(layer)
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=optimizer or xpnn.Adam(learning_rate=0.05, decay=1e-3),
        accuracy=xpnn.CategoricalAccuracy() if metric else None,
    )
    model.finalize()
    return model


def _state(model, history):
    """Everything both paths must agree on, on the host."""
    optimizer, buffer = model.optimizer, model.network.parameters
    states = {
        name: xpnn.backends.to_numpy(getattr(buffer, f"param_{name}"))
        for name in optimizer.kept_states()
    }
    return {
        "params": xpnn.backends.to_numpy(buffer.params),
        "dparams": xpnn.backends.to_numpy(buffer.dparams),
        "states": states,
        "iterations": optimizer.iterations,
        "learning_rate": optimizer.current_learning_rate,
        "history": {key: history[key] for key in ("loss", "data_loss", "accuracy")},
    }


def _assert_same(a, b):
    np.testing.assert_array_equal(a["params"], b["params"], strict=True)
    np.testing.assert_array_equal(a["dparams"], b["dparams"], strict=True)
    assert a["states"].keys() == b["states"].keys()
    for name in a["states"]:
        np.testing.assert_array_equal(a["states"][name], b["states"][name], strict=True)
    assert a["iterations"] == b["iterations"]
    assert a["learning_rate"] == b["learning_rate"]
    np.testing.assert_equal(a["history"], b["history"])  # NaN accuracy without a metric


def _both_ways(backend, monkeypatch, runs, make, train):
    """``train(make())`` with the compiled epoch on, then off: the two end states, and the
    steps of each compiled call of the first (none where it ran step by step)."""
    ends, calls = [], []
    for setting in ("1", "0"):
        monkeypatch.setenv(compiled.ENV, setting)
        runs.clear()
        model = make()
        ends.append(_state(model, train(model)))
        calls.append(list(runs))
    assert not calls[1]
    return ends[0], ends[1], calls[0]


def _compiles(backend):
    return xpnn.get_backend(backend).fast_path == "numba"


#: Every optimizer of xpnn's (tests/parts.py lists each, with decay), and SGD without momentum.
OPTIMIZERS = {
    **{name: rule.make for name, rule in RULES.items()},
    "SGD without momentum": lambda: xpnn.SGD(learning_rate=0.5, decay=1e-2),
}
CHAINS = {
    "Dense-ReLU-Dense": lambda: [xpnn.Dense(2, 32), xpnn.ReLU(), xpnn.Dense(32, 3)],
    "three Dense, one ReLU": lambda: [
        xpnn.Dense(2, 16),
        xpnn.Dense(16, 24),
        xpnn.ReLU(),
        xpnn.Dense(24, 3),
    ],
    "regularized": lambda: [
        xpnn.Dense(2, 32, 1e-4, 5e-4, 2e-4, 1e-3),
        xpnn.ReLU(),
        xpnn.Dense(32, 3, weight_regularizer_l2=1e-3),
    ],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("chain", CHAINS)
def test_compiled_epochs_equal_the_step_path(backend, dtype, optimizer, chain, monkeypatch, runs):
    """Three shuffled epochs, a partial last batch (300 samples, batch 64)."""

    def make():
        return _model(backend, dtype, OPTIMIZERS[optimizer](), CHAINS[chain]())

    def train(model):
        return model.train(X, Y, epochs=3, batch_size=64, verbose=False)

    on, off, ran = _both_ways(backend, monkeypatch, runs, make, train)
    assert bool(ran) == _compiles(backend)
    _assert_same(on, off)
    assert on["iterations"] == 15


@pytest.mark.parametrize("targets", ["one-hot", "unshuffled", "no metric"])
def test_one_hot_targets_data_in_order_and_no_metric(backend, targets, monkeypatch, runs):
    y = np.eye(3)[Y] if targets == "one-hot" else Y

    def make():
        return _model(backend, metric=targets != "no metric")

    def train(model):
        return model.train(X, y, epochs=2, batch_size=50, shuffle=targets != "unshuffled",
                           verbose=False)  # fmt: skip

    on, off, ran = _both_ways(backend, monkeypatch, runs, make, train)
    assert bool(ran) == _compiles(backend)
    _assert_same(on, off)


@pytest.mark.parametrize(
    "optimizer", [name for name in OPTIMIZERS if OPTIMIZERS[name]().kept_states()]
)
def test_chunks_and_the_flush_of_subnormal_states(backend, optimizer, monkeypatch, runs):
    """Epochs longer than a compiled call (in chunks of 4 steps here), over a flush of the
    optimizer's states (every 100 steps): a feature that is always 0 leaves its weights'
    gradients at 0, so their states, made subnormal, only decay until the flush zeroes those
    the optimizer flushes (``flushed_states``); Adagrad's sum keeps them."""
    monkeypatch.setattr(compiled, "CHUNK_STEPS", 4)
    X3 = np.c_[X, np.zeros(len(X))]

    def make():
        layers = [xpnn.Dense(3, 32), xpnn.ReLU(), xpnn.Dense(32, 3)]
        return _model(backend, optimizer=OPTIMIZERS[optimizer](), layers=layers)

    def train(model):
        model.train(X3, Y, epochs=1, batch_size=32, verbose=False)
        buffer, dtype = model.network.parameters, model.backend.dtype_name
        subnormal = np.finfo(dtype).smallest_normal / 4
        for name in model.optimizer.kept_states():
            state = xpnn.to_numpy(getattr(buffer, f"param_{name}")).copy()
            state[64:96] = subnormal  # the third row of the first weights: the zero feature
            setattr(buffer, f"param_{name}", model.backend.asarray(state))
        return model.train(X3, Y, epochs=11, batch_size=32, verbose=False)

    on, off, ran = _both_ways(backend, monkeypatch, runs, make, train)
    assert bool(ran) == _compiles(backend)
    if ran:
        assert set(ran) == {4, 2}  # 10 steps an epoch: 4, 4, 2
    _assert_same(on, off)
    assert on["iterations"] == 120
    flushed = OPTIMIZERS[optimizer]().flushed_states
    for name, state in on["states"].items():
        zero_feature = state[64:96]
        if name in flushed:
            assert not np.any(zero_feature), name
        else:
            assert np.all(zero_feature == np.finfo(zero_feature.dtype).smallest_normal / 4), name


def _train_stopped_at_step_7(model, backend, monkeypatch):
    """``model.train`` on the spiral in batches of 32, Ctrl-C pressed after step 7: on the
    compiled path at the end of its first call (of ``CHUNK_STEPS`` 7 steps)."""
    monkeypatch.setattr(compiled, "CHUNK_STEPS", 7)
    kernel = compiled.KERNEL  # the runs fixture's, counting

    def interrupting(*args):
        done = kernel(*args)
        os.kill(os.getpid(), signal.SIGINT)
        return done

    if os.environ[compiled.ENV] == "1" and _compiles(backend):
        monkeypatch.setattr(compiled, "KERNEL", interrupting)
    else:
        press_ctrl_c_at_step(model, 7, monkeypatch)
    model.train(X, Y, epochs=3, batch_size=32, verbose=False)
    monkeypatch.setattr(compiled, "KERNEL", kernel)


def test_ctrl_c_inside_an_epoch_then_finishing_it(backend, monkeypatch, runs):
    """Ctrl-C after step 7 of 10-step epochs (on the compiled path: in its first call, of 7
    steps) stops there on both paths; the next train call finishes the epoch."""

    def train(model):
        _train_stopped_at_step_7(model, backend, monkeypatch)
        assert model.optimizer.iterations == 7 and model.epochs_trained == 0
        assert model.network.epoch_in_progress.done == 7 * 32
        return model.train(X, Y, epochs=2, batch_size=32, verbose=False)

    on, off, ran = _both_ways(backend, monkeypatch, runs, lambda: _model(backend), train)
    assert bool(ran) == _compiles(backend)
    if ran:
        assert ran == [7, 3, 7, 3]
    _assert_same(on, off)
    assert on["iterations"] == 20


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("when", ["step 3", "step 1"])
def test_a_non_finite_loss_stops_before_its_update(backend, when, monkeypatch, runs):
    """A learning rate far too large, or inputs that overflow: the same error, at the same
    step, from the same state (no optimizer state where no update was made)."""
    errors = []
    X_bad = X if when == "step 3" else X * np.float32(3e37)  # step 1: before any update

    def make():
        layers = [xpnn.Dense(2, 32, weight_scale=5.0), xpnn.ReLU(), xpnn.Dense(32, 3)]
        return _model(backend, optimizer=xpnn.SGD(1e20, momentum=0.5), layers=layers)

    def train(model):
        on_host = model.backend.on_host  # elsewhere seen at the report, without a step
        with pytest.raises(xpnn.NonFiniteLossError, match="epoch 1" + f", {when}" * on_host) as e:
            model.train(X_bad, Y, epochs=5, batch_size=32, verbose=False)
        errors.append(str(e.value))
        if when == "step 1" and on_host:
            assert getattr(model.network.parameters, "param_momentums", None) is None
            model.optimizer.momentum = 0.0  # nothing to compare: no state yet
        return {"loss": [], "data_loss": [], "accuracy": []}

    on, off, ran = _both_ways(backend, monkeypatch, runs, make, train)
    assert bool(ran) == _compiles(backend)
    _assert_same(on, off)
    assert errors[0] == errors[1]


class _Halving(xpnn.optimizers.Optimizer):
    """A user's optimizer: half the step of SGD, with no ``numba_step``."""

    def update(self, layer, prefix, param, grad):
        param -= (0.5 * self.current_learning_rate) * grad


class _LoggedRMSprop(xpnn.RMSprop):
    """RMSprop whose update does something more, which the compiled epoch would not."""

    def update(self, layer, prefix, param, grad):
        super().update(layer, prefix, param, grad)


class _StepDecayRMSprop(xpnn.RMSprop):
    """RMSprop with its own decay of the learning rate (halved every 4 steps): bookkeeping
    the compiled epoch runs ahead on the host, as the step path runs it."""

    def pre_update_params(self):
        self.current_learning_rate = self.learning_rate * 0.5 ** (self.iterations // 4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_optimizers_own_bookkeeping_runs_compiled(backend, dtype, monkeypatch, runs):
    def make():
        return _model(backend, dtype, _StepDecayRMSprop(learning_rate=0.01))

    def train(model):
        return model.train(X, Y, epochs=2, batch_size=32, verbose=False)

    on, off, ran = _both_ways(backend, monkeypatch, runs, make, train)
    assert bool(ran) == _compiles(backend)
    _assert_same(on, off)
    assert on["learning_rate"] == 0.01 * 0.5**4  # before step 20: 19 // 4 halvings


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["Adam", "SGD-momentum"])
def test_a_non_finite_loss_after_updates_leaves_every_layer_alone(
    backend, dtype, optimizer, monkeypatch, runs
):
    """Where a later step's loss is not finite (a learning rate near the square root of the
    dtype's largest number), no layer of three is updated, as on the step path, and that
    step's gradients are left, on float32 and float64."""
    errors = []
    rate = float(np.finfo(dtype).max) ** 0.5 / 10

    def make():
        rule = xpnn.Adam(rate) if optimizer == "Adam" else xpnn.SGD(rate, momentum=0.5)
        layers = [xpnn.Dense(2, 16), xpnn.ReLU(), xpnn.Dense(16, 8), xpnn.ReLU(), xpnn.Dense(8, 3)]
        return _model(backend, dtype, optimizer=rule, layers=layers)

    def train(model):
        with pytest.raises(xpnn.NonFiniteLossError) as e:
            model.train(X, Y, epochs=5, batch_size=32, verbose=False)
        errors.append(str(e.value))
        if model.backend.on_host:  # elsewhere seen at the report, back at the last good one
            assert model.optimizer.iterations >= 1  # a step updated the layers before
        return {"loss": [], "data_loss": [], "accuracy": []}

    on, off, ran = _both_ways(backend, monkeypatch, runs, make, train)
    assert bool(ran) == _compiles(backend)
    _assert_same(on, off)
    assert np.all(np.isfinite(on["params"]))  # the last update made is a finite one
    assert errors[0] == errors[1]


def test_which_models_run_compiled(backend, monkeypatch, runs):
    """The compiled epoch runs only what it expresses; the rest takes the step path."""
    d = xpnn.Dense
    refused = {
        "Dropout before ReLU": dict(layers=[d(2, 32), xpnn.Dropout(0.1), xpnn.ReLU(), d(32, 3)]),
        "a Softmax inside": dict(layers=[d(2, 32), xpnn.Softmax(), d(32, 3)]),
        "two ReLUs": dict(layers=[d(2, 32), xpnn.ReLU(), xpnn.ReLU(), d(32, 3)]),
        "an optimizer with no compiled loop": dict(optimizer=_Halving(0.1, 0.0)),
        "a subclass that replaces the update": dict(optimizer=_LoggedRMSprop()),
    }
    for name, settings in refused.items():
        runs.clear()
        model = _model(backend, **settings)
        model.train(X, Y, epochs=1, batch_size=32, verbose=False)
        assert not runs, name
    assert compiled_rules.refusal(_Halving(0.1, 0.0)) == "_Halving has no compiled epoch"
    assert compiled_rules.refusal(_LoggedRMSprop()) == "_LoggedRMSprop replaces its update"
    # A layer of 1 unit and batches of 1 row run compiled (test_compiled_one_unit.py).
    for layers, samples, batch in [([d(2, 1), xpnn.ReLU(), d(1, 3)], 300, 32), (None, 30, 1),
                                   (None, 289, 32)]:  # fmt: skip
        runs.clear()
        model = _model(backend, layers=layers)
        model.train(X[:samples], Y[:samples], epochs=1, batch_size=batch, verbose=False)
        assert bool(runs) == _compiles(backend), (samples, batch)
    # A method replaced on the instance (a hook) is called by the step path alone, each step.
    for part, name in [(0, "forward"), (2, "backward"), (None, "post_update_params")]:
        runs.clear()
        model = _model(backend)
        owner = model.optimizer if part is None else model.layers[part]
        monkeypatch.setattr(owner, name, getattr(owner, name))
        model.train(X, Y, epochs=1, batch_size=32, verbose=False)
        assert not runs, name
    # ... and this model, as it is, runs compiled on numpy with numba.
    runs.clear()
    _model(backend).train(X, Y, epochs=1, batch_size=32, verbose=False)
    assert bool(runs) == _compiles(backend)


def test_a_data_parallel_trainer_takes_the_step_path(backend, runs):
    """A trainer that cuts or combines batches its own way (as data-parallel training does)
    runs its own steps."""
    from xpnn import distributed
    from xpnn.training import loop

    assert distributed.ReplicaTrainer.combine is not loop.Trainer.combine

    class Combining(loop.Trainer):
        def combine(self, batch_loss, right, count):
            return batch_loss, right, count

    model = _model(backend)
    loop.train(model, X, Y, epochs=1, batch_size=32, shuffle=True, validation_data=None,
               early_stopping=None, checkpoint=None, checkpoint_every=None, print_every=1,
               verbose=False, trainer=Combining)  # fmt: skip
    assert not runs and model.optimizer.iterations == 10


def test_the_header_says_which_path_runs(backend, monkeypatch, capsys):
    for setting in ("1", "0"):
        monkeypatch.setenv(compiled.ENV, setting)
        _model(backend).train(X, Y, epochs=1, batch_size=32, verbose="lines")
        header = capsys.readouterr().out.splitlines()[0]
        assert ("epochs compiled" in header) == (setting == "1" and _compiles(backend))
        # where the backend has a compiled epoch and it does not run, the header says why
        off = setting == "0" and _compiles(backend)
        assert (f"step by step: {compiled.ENV} turns it off" in header) == off


def test_the_header_says_why_a_model_runs_step_by_step(backend, capsys):
    layers = [xpnn.Dense(2, 8), xpnn.ReLU(), xpnn.ReLU(), xpnn.Dense(8, 3)]
    _model(backend, layers=layers).train(X, Y, epochs=1, batch_size=32, verbose="lines")
    header = capsys.readouterr().out.splitlines()[0]
    why = "step by step: layers other than Dense, each followed by at most one element-wise"
    assert (why in header) == _compiles(backend)


@pytest.mark.parametrize("setting", ["2", "maybe"])
def test_a_bad_switch_is_refused_by_name_before_training(backend, monkeypatch, setting):
    monkeypatch.setenv(compiled.ENV, setting)
    model = _model(backend)
    before = model.get_parameters()
    with pytest.raises(ValueError, match=compiled.ENV):
        model.train(X, Y, epochs=1, batch_size=32, verbose=False)
    assert model.optimizer.iterations == 0
    for (w1, b1), (w2, b2) in zip(before, model.get_parameters()):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(2, 2, 2), (7, 5, 3), (128, 64, 3), (256, 784, 96)])
def test_products_through_numpys_blas_equal_numpys_dot(dtype, shape):
    """The compiled epoch's products (xpnn.backends.numpy_blas) are NumPy's dot bit for bit:
    ``a @ w``, ``a.T @ d``, ``d @ w.T`` and a row of ones times ``d``."""
    from xpnn.backends import numpy_blas

    assert numpy_blas.load() is None
    rows, inner, columns = shape
    rng = np.random.default_rng(0)
    a, w, d = (rng.standard_normal(s).astype(dtype) for s in [(rows, inner), (inner, columns),
                                                                (rows, columns)])  # fmt: skip
    for left, right, transposed in [(a, w, (False, False)), (a, d, (True, False)),
                                    (d, w, (False, True))]:  # fmt: skip
        shown = (left.T if transposed[0] else left, right.T if transposed[1] else right)
        out = np.empty((shown[0].shape[0], shown[1].shape[1]), dtype)
        numpy_blas.product(left, right, out, *transposed)
        np.testing.assert_array_equal(out, np.dot(*shown), strict=True)
    ones, out = np.ones((1, rows), dtype), np.empty((1, columns), dtype)
    numpy_blas.column_sums(ones, d, out)
    np.testing.assert_array_equal(out, np.dot(ones, d), strict=True)


def _double(a):  # pragma: no cover - a function for the cache test below
    return 2 * a


def test_the_compiled_loops_cache_goes_stale_with_the_kernels_it_calls(tmp_path):
    """numba judges a cache entry by its function's file alone; the compiled loop's also by the
    files of the kernels it calls (``Kernel(..., sources=...)``): one changed, the stamp
    differs and the entry is compiled again."""
    from xpnn.backends import jit_cache

    kernels = tmp_path / "kernels.py"
    kernels.write_text("a = 1\n")

    def stamp():
        return jit_cache.CheckedCache(_double, (str(kernels),))._cache_file._source_stamp

    before = stamp()
    assert before != jit_cache.CheckedCache(_double)._cache_file._source_stamp
    assert stamp() == before
    kernels.write_text("a = 22\n")
    assert stamp() != before
    # The loop's sources: the modules of the kernels it calls.
    loops = {sys.modules[loop.__module__].__file__ for loop in compiled_rules.LOOPS}
    assert {os.path.basename(path) for path in loops} == {
        *("adam.py", "adamw.py", "adagrad.py", "rmsprop.py", "sgd.py")
    }
    assert set(compiled.KERNEL.sources) == {
        *loops,
        compiled_rules.__file__,
        compiled.chain.__file__,
        xpnn.backends.jit.__file__,
        xpnn.backends.numpy_blas.__file__,
        xpnn.backends.numpy_loops.__file__,
        xpnn.backends.numba_sums.__file__,
    }
    # The book's kernels call the products and sums too, and read ``_lean``'s modes.
    from xpnn.book import _kernels, _lean

    for kernel in _kernels.KERNELS.values():
        assert set(kernel.sources) == {
            xpnn.backends.numpy_blas.__file__,
            xpnn.backends.numba_sums.__file__,
            _lean.__file__,
        }
