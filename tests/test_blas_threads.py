"""The BLAS thread count in force while xpnn trains, evaluates and predicts (xpnn.blas_threads).

A layer in the model reads the limit from inside each step. The tests set the limit before
each run themselves (threadpoolctl), so that they do not depend on the machine's cores.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

import xpnn
from xpnn import blas_threads

WAIT = 120  # seconds: only a guard against a hang; every wait is released by the other side


def blas_limits() -> list[int]:
    """The thread limit of NumPy's BLAS libraries (those xpnn sets)."""
    paths = {lib.filepath for lib in blas_threads._blas()}
    libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    return [lib.get_num_threads() for lib in libraries if lib.filepath in paths]


class Watch(xpnn.ReLU):
    """A ReLU that records the BLAS limits at each forward pass and may call ``during``."""

    def __init__(self, during=None) -> None:
        super().__init__()
        self.seen: list[list[int]] = []
        self.during = during

    def forward(self, inputs, training: bool = False):
        self.seen.append(blas_limits())
        if self.during is not None:
            self.during()
        return super().forward(inputs, training)


def model_of(backend, widths, during=None):
    """Dense layers of ``widths`` with a Watch after the first; the model and the Watch."""
    watch = Watch(during)
    model = xpnn.Model(backend=backend, seed=0)
    for index in range(len(widths) - 1):
        model.add(xpnn.Dense(widths[index], widths[index + 1]))
        if index < len(widths) - 2:
            model.add(watch if index == 0 else xpnn.ReLU())
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=1e-3),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model, watch


def data(widths, samples):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((samples, widths[0])).astype(np.float32)
    return X, rng.integers(0, widths[-1], samples)


DIGITS = (64, 128, 128, 10)  # the digits MLP, at batch 32: largest product 32 x 128 x 128
W2 = (784, 512, 512, 10)  # at batch 256: 256 x 784 x 512
MEDIUM = (256, 256, 10)  # at batch 256: two threads' worth


def host_blas(backend) -> bool:
    return backend in ("numpy", "strict")


@pytest.fixture(autouse=True)
def auto(monkeypatch):
    monkeypatch.delenv(blas_threads.ENV, raising=False)


def test_choice_from_the_products_size(backend):
    small, _ = model_of(backend, DIGITS)
    large, _ = model_of(backend, W2)
    assert blas_threads.choose(small, 32) == 1
    assert blas_threads.choose(large, 256) >= 2
    assert blas_threads.choose(large, 1) == 1  # predicting one row at a time
    assert blas_threads.choose(model_of(backend, MEDIUM)[0], 256) == 2


@pytest.mark.parametrize(("widths", "batch", "inside"), [(DIGITS, 32, 1), (W2, 256, 2)])
def test_limit_inside_a_training_step(backend, widths, batch, inside):
    model, watch = model_of(backend, widths)
    with threadpool_limits(limits=2, user_api="blas"):
        model.train(*data(widths, batch), epochs=1, batch_size=batch, verbose=False)
        after = blas_limits()
    assert watch.seen
    expected = inside if host_blas(backend) else 2  # on CuPy host BLAS is left alone
    assert all(seen == [expected] * len(seen) for seen in watch.seen)
    assert after == [2] * len(after)


def test_never_above_the_limit_before(backend):
    model, watch = model_of(backend, W2)
    with threadpool_limits(limits=1, user_api="blas"):
        model.train(*data(W2, 256), epochs=1, batch_size=256, verbose=False)
    assert all(set(seen) == {1} for seen in watch.seen)


@pytest.mark.parametrize(("widths", "batch", "value"), [(DIGITS, 32, "3"), (W2, 256, " 1 ")])
def test_the_users_setting_wins(backend, monkeypatch, widths, batch, value):
    monkeypatch.setenv(blas_threads.ENV, value)
    model, watch = model_of(backend, widths)
    with threadpool_limits(limits=2, user_api="blas"):
        model.train(*data(widths, batch), epochs=1, batch_size=batch, verbose=False)
        model.evaluate(*data(widths, batch))
        model.predict(data(widths, batch)[0])
        after = blas_limits()
    expected = int(value) if host_blas(backend) else 2
    assert len(watch.seen) == 3
    assert all(set(seen) == {expected} for seen in watch.seen)
    assert set(after) == {2}


def test_off_leaves_blas_alone(backend, monkeypatch):
    monkeypatch.setenv(blas_threads.ENV, "OFF")
    model, watch = model_of(backend, DIGITS)
    with threadpool_limits(limits=2, user_api="blas"):
        model.train(*data(DIGITS, 32), epochs=1, batch_size=32, verbose=False)
    assert all(set(seen) == {2} for seen in watch.seen)


@pytest.mark.parametrize("call", ["train", "evaluate", "predict"])
def test_previous_limits_restored(backend, call):
    model, watch = model_of(backend, DIGITS)
    X, y = data(DIGITS, 64)
    run = {
        "train": lambda: model.train(X, y, epochs=2, batch_size=32, verbose=False),
        "evaluate": lambda: model.evaluate(X, y, batch_size=32),
        "predict": lambda: model.predict(X, batch_size=32),
    }[call]
    with threadpool_limits(limits=3, user_api="blas"):
        run()
        after = blas_limits()
    assert watch.seen
    expected = 1 if host_blas(backend) else 3
    assert all(set(seen) == {expected} for seen in watch.seen)
    assert set(after) == {3}


def test_restored_when_a_step_raises(backend):
    def fail():
        raise RuntimeError("inside a step")

    model, watch = model_of(backend, DIGITS, during=fail)
    with threadpool_limits(limits=3, user_api="blas"):
        with pytest.raises(RuntimeError, match="inside a step"):
            model.train(*data(DIGITS, 32), epochs=1, batch_size=32, verbose=False)
        after = blas_limits()
    assert len(watch.seen) == 1
    assert set(after) == {3}


@pytest.mark.parametrize(
    "value", ["0", "-1", "+2", "1.5", "two", "auto2", "1e3", "\u00b2", "\u0663"]
)
@pytest.mark.parametrize("call", ["train", "evaluate", "predict"])
def test_bad_setting_refused_before_anything_changes(backend, monkeypatch, value, call):
    model, watch = model_of(backend, DIGITS)
    X, y = data(DIGITS, 32)
    before = [xpnn.to_numpy(array).copy() for layer in model.get_parameters() for array in layer]
    monkeypatch.setenv(blas_threads.ENV, value)
    run = {
        "train": lambda: model.train(X, y, epochs=1, batch_size=32, verbose=False),
        "evaluate": lambda: model.evaluate(X, y),
        "predict": lambda: model.predict(X),
    }[call]
    with threadpool_limits(limits=3, user_api="blas"):
        with pytest.raises(ValueError, match=f"{blas_threads.ENV} must be a positive integer"):
            run()
        after = blas_limits()
    assert watch.seen == []
    assert model.optimizer.iterations == 0
    assert model.epochs_trained == 0
    now = [xpnn.to_numpy(array) for layer in model.get_parameters() for array in layer]
    assert all(np.array_equal(a, b) for a, b in zip(before, now))
    assert set(after) == {3}


def test_nested_run_keeps_the_outer_limit(backend):
    """An evaluation inside a training step: after it the training's limit still holds."""
    inner, _ = model_of(backend, W2)
    X_inner = data(W2, 256)
    inside: list[list[int]] = []

    def evaluate_inside():
        inner.evaluate(*X_inner)
        inside.append(blas_limits())

    model, _ = model_of(backend, DIGITS, during=evaluate_inside)
    with threadpool_limits(limits=2, user_api="blas"):
        model.train(*data(DIGITS, 32), epochs=1, batch_size=32, verbose=False)
        after = blas_limits()
    expected = 1 if host_blas(backend) else 2
    assert inside and all(set(seen) == {expected} for seen in inside)
    assert set(after) == {2}


def test_overlapping_runs_from_two_threads(backend):
    """A large model trains while a small one is inside a step in another thread: the smaller
    choice holds while they overlap, the first to end leaves the other's limit, and the last
    puts the limit from before both back."""
    small_inside, large_done = threading.Event(), threading.Event()
    large_seen: list[list[int]] = []
    after_large: list[list[int]] = []

    def hold():
        if not small_inside.is_set():
            small_inside.set()
            assert large_done.wait(WAIT)
            after_large.append(blas_limits())  # the large run has ended; this one goes on

    small, _ = model_of(backend, DIGITS, during=hold)
    large, large_watch = model_of(backend, W2)
    errors: list[BaseException] = []

    def train_small():
        try:
            small.train(*data(DIGITS, 32), epochs=1, batch_size=32, verbose=False)
        except BaseException as error:
            errors.append(error)
            small_inside.set()

    with threadpool_limits(limits=2, user_api="blas"):
        thread = threading.Thread(target=train_small)
        thread.start()
        try:
            assert small_inside.wait(WAIT)
            large.train(*data(W2, 256), epochs=1, batch_size=256, verbose=False)
            large_seen.extend(large_watch.seen)
        finally:
            large_done.set()
            thread.join(WAIT)
        after = blas_limits()
    assert not errors
    on_host = host_blas(backend)
    assert large_seen and all(set(seen) == {1 if on_host else 2} for seen in large_seen)
    assert after_large == [[1 if on_host else 2] * len(after_large[0])]
    assert set(after) == {2}


class PerThreadLibrary:
    """A stand-in for an OpenMP build of OpenBLAS, whose limit belongs to each thread."""

    threading_layer = "openmp"
    filepath = "per-thread stand-in"

    def __init__(self, default: int) -> None:
        self.default, self.local = default, threading.local()

    def get_num_threads(self) -> int:
        return getattr(self.local, "threads", self.default)

    def set_num_threads(self, threads: int) -> None:
        self.local.threads = threads


def test_per_thread_limits_set_and_put_back_in_the_running_thread(backend, monkeypatch):
    """With a per-thread library, a run limits its own thread only, and puts it back there,
    while a large model trains in another thread meanwhile."""
    library = PerThreadLibrary(default=4)
    monkeypatch.setattr(blas_threads, "_libraries", [library])
    seen: dict[str, list[int]] = {"small": [], "large": [], "large after": []}

    def train_large():
        def record():
            seen["large"].append(library.get_num_threads())

        large, _ = model_of(backend, MEDIUM, during=record)
        large.train(*data(MEDIUM, 256), epochs=1, batch_size=256, verbose=False)
        seen["large after"].append(library.get_num_threads())

    def inside_small():
        seen["small"].append(library.get_num_threads())
        if len(seen["small"]) == 1:  # a whole large run in another thread, meanwhile
            thread = threading.Thread(target=train_large)
            thread.start()
            thread.join(WAIT)
            seen["small"].append(library.get_num_threads())

    small, _ = model_of(backend, DIGITS, during=inside_small)
    small.train(*data(DIGITS, 32), epochs=1, batch_size=32, verbose=False)
    on_host = host_blas(backend)
    assert seen["small"] == [1 if on_host else 4] * 2
    assert seen["large"] == [2 if on_host else 4] and seen["large after"] == [4]
    assert library.get_num_threads() == 4
