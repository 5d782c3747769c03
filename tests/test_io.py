"""Saving and loading: round trips on every backend, exact resume, atomic and kill-safe writes,
and hostile files, which must raise XpnnFileError and nothing else."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from helpers import load_checkpoint, load_model, press_ctrl_c_at_step, spiral
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parts import OPTIMIZERS, own
from safetensors import safe_open

import xpnn
import xpnn.description
import xpnn.io
from xpnn.io import (
    FORMAT_VERSION,
    XpnnFileError,
    load_parameters,
    save_model,
    save_parameters,
)

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "xpnn"

# -- models and data --------------------------------------------------------------------------

# Output layer, loss, metric and the targets' kind for each head.
HEADS = {
    "softmax": (xpnn.Softmax, xpnn.CategoricalCrossentropy, lambda: xpnn.CategoricalAccuracy()),
    "sigmoid": (
        xpnn.Sigmoid,
        xpnn.BinaryCrossentropy,
        lambda: xpnn.CategoricalAccuracy(binary=True),
    ),
    "mse": (xpnn.Linear, xpnn.MeanSquaredError, lambda: xpnn.RegressionAccuracy()),
    "mae": (xpnn.Linear, xpnn.MeanAbsoluteError, lambda: xpnn.RegressionAccuracy(precision=0.05)),
}
#: Every head with an optimizer and every optimizer with a head, the shorter list repeated.
ROUND_TRIPS = [
    (list(HEADS)[i % len(HEADS)], list(OPTIMIZERS)[i % len(OPTIMIZERS)])
    for i in range(max(len(HEADS), len(OPTIMIZERS)))
]


def data(head: str = "softmax", samples: int = 100):
    X, labels = spiral(samples, 3)
    if head == "softmax":
        return X, labels
    if head == "sigmoid":
        return X, (labels == 0).astype(np.float64)[:, None]
    return X, (0.5 * X[:, :1] - X[:, 1:] ** 2)


def full_model(backend, head="softmax", optimizer="Adam", dtype="float32", seed=3) -> xpnn.Model:
    """Every layer kind, regularizers and weight_scale included, with the head's loss/metric."""
    output, loss, metric = HEADS[head]
    model = xpnn.Model(backend=backend, seed=seed, dtype=dtype)
    model.add(xpnn.Dense(2, 16, 1e-4, 2e-4, 3e-4, 4e-4, weight_scale=0.1))
    model.add(xpnn.LeakyReLU(alpha=0.05))
    model.add(xpnn.Dropout(0.2))
    model.add(xpnn.Dense(16, 16))
    model.add(xpnn.Tanh())
    model.add(xpnn.Dense(16, 16, weight_regularizer_l2=5e-4))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(16, 8))
    model.add(xpnn.Sigmoid())
    model.add(xpnn.Dense(8, 3 if head == "softmax" else 1))
    model.add(output())
    model.set(loss=loss(), optimizer=OPTIMIZERS[optimizer].make(), accuracy=metric())
    model.finalize()
    return model


def small_model(backend="numpy", optimizer="Adam", dropout=True, seed=0) -> xpnn.Model:
    model = xpnn.Model(backend=backend, seed=seed)
    model.add(xpnn.Dense(2, 16))
    model.add(xpnn.ReLU())
    if dropout:
        model.add(xpnn.Dropout(0.1))
    model.add(xpnn.Dense(16, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=OPTIMIZERS[optimizer].make(),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def train(model, epochs, head="softmax", samples=100):
    X, y = data(head, samples)
    return model.train(X, y, epochs=epochs, batch_size=32, verbose=False)


def flat_parameters(model) -> list[np.ndarray]:
    return [p for layer in model.get_parameters() for p in layer]


def assert_same_parameters(a, b) -> None:
    pa, pb = flat_parameters(a), flat_parameters(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        assert x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def scalars(obj) -> dict:
    """An object's plain settings and counters, read independently of xpnn.io."""
    transient = {"inputs", "output", "dinputs", "binary_mask"}  # what the last pass left
    return {
        k: v
        for k, v in vars(obj).items()
        if k not in transient and (v is None or isinstance(v, (bool, int, float, str)))
    }


def assert_same_architecture(a, b, *, state: bool) -> None:
    """Layer classes and settings, loss, optimizer hyperparameters (and counters), metric."""
    assert a.backend.dtype_name == b.backend.dtype_name
    assert a.seed == b.seed
    assert [type(x) for x in a.layers] == [type(x) for x in b.layers]
    ignored = set() if state else {"iterations", "current_learning_rate", "draws"}
    for x, y in zip(a.layers, b.layers):
        assert {k: v for k, v in scalars(x).items() if k not in ignored} == {
            k: v for k, v in scalars(y).items() if k not in ignored
        }
    assert type(a.loss) is type(b.loss)
    assert type(a.optimizer) is type(b.optimizer)
    if a.optimizer is not None:
        sa, sb = scalars(a.optimizer), scalars(b.optimizer)
        assert {k: v for k, v in sa.items() if k not in ignored} == {
            k: v for k, v in sb.items() if k not in ignored
        }
    assert type(a.accuracy) is type(b.accuracy)
    if a.accuracy is not None:
        assert scalars(a.accuracy) == scalars(b.accuracy)


def host(a) -> np.ndarray:
    return np.asarray(xpnn.to_numpy(a))


# -- round trips --------------------------------------------------------------------------------


def test_the_round_trips_cover_every_registered_part():
    """Each of xpnn's own layers, losses, metrics and optimizers is saved and loaded by a round
    trip below: a part added to the registry without a place here fails."""
    models = [full_model("numpy", head, optimizer) for head, optimizer in ROUND_TRIPS]
    seen = {type(part).__name__ for m in models for part in (*m.layers, m.loss, m.accuracy)}
    seen |= {optimizer for _, optimizer in ROUND_TRIPS}
    for kind in ("layer", "loss", "optimizer", "metric"):
        assert set(own(kind)) <= seen, kind


@pytest.mark.parametrize(("head", "optimizer"), ROUND_TRIPS)
@pytest.mark.parametrize("with_state", [False, True], ids=["model", "checkpoint"])
def test_round_trip_every_layer_loss_optimizer_and_metric(
    backend, tmp_path, head, optimizer, with_state
):
    model = full_model(backend, head, optimizer)
    train(model, 2, head)  # optimizer state exists, the regression precision is set
    path = tmp_path / "model.safetensors"
    save_model(model, path, checkpoint={"epoch": 2} if with_state else None)
    X, y = data(head)
    expected = host(model.predict(X))
    for target in dict.fromkeys(["numpy", backend]):
        loaded, info = load_checkpoint(path, backend=target)
        assert loaded.backend.name == target
        assert info == ({"epoch": 2} if with_state else None)
        assert_same_architecture(model, loaded, state=with_state)
        assert_same_parameters(model, loaded)
        predictions = host(loaded.predict(X))
        if target == backend:
            np.testing.assert_array_equal(predictions, expected)
            assert loaded.evaluate(X, y) == model.evaluate(X, y)
        else:
            np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-6)
        assert xpnn.description.describe_model(loaded) | {"backend": backend} == (
            xpnn.description.describe_model(model)
        )


def test_model_without_optimizer_or_metric(backend, tmp_path):
    model = xpnn.Model(backend=backend, seed=1, dtype="float64")
    model.add(xpnn.Dense(2, 4))
    model.add(xpnn.Linear())
    model.set(loss=xpnn.MeanSquaredError())
    model.finalize()
    save_model(model, tmp_path / "m", checkpoint={})
    loaded, info = load_checkpoint(tmp_path / "m", backend=backend)
    assert info == {}
    assert loaded.optimizer is None and loaded.accuracy is None
    assert loaded.backend.dtype_name == "float64"
    assert_same_parameters(model, loaded)


@pytest.mark.parametrize("target", ["numpy", "strict"])
def test_cross_backend(backend, tmp_path, target):
    """A file saved on any backend loads on any other, checkpoint included, and trains on."""
    model = small_model(backend)
    train(model, 2)
    save_model(model, tmp_path / "m", checkpoint={"epoch": 2})
    loaded = load_model(tmp_path / "m", backend=target)
    assert loaded.backend.name == target
    assert_same_parameters(model, loaded)
    assert loaded.optimizer.iterations == model.optimizer.iterations
    X, _ = data()
    np.testing.assert_allclose(host(loaded.predict(X)), host(model.predict(X)), rtol=1e-5)
    if backend == "cupy":
        return  # CuPy draws its dropout masks on the device, other ones than the host's
    train(model, 1)
    train(loaded, 1)
    for a, b in zip(flat_parameters(model), flat_parameters(loaded)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_dtype_override(tmp_path):
    model = small_model()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m", dtype="float64")
    assert loaded.backend.dtype_name == "float64"
    for a, b in zip(flat_parameters(model), flat_parameters(loaded)):
        assert b.dtype == np.float64
        np.testing.assert_array_equal(a.astype(np.float64), b)


def test_parameters_round_trip(backend, tmp_path):
    source = small_model(backend, seed=1)
    train(source, 1)
    target = small_model(backend, seed=2, dropout=False)  # same parameter shapes
    save_parameters(source, tmp_path / "p")
    load_parameters(target, tmp_path / "p")
    assert_same_parameters(source, target)
    X, _ = data()
    np.testing.assert_array_equal(host(target.predict(X)), host(source.predict(X)))
    # A model file holds the parameters too, checkpoint state or not.
    save_model(source, tmp_path / "m", checkpoint={"epoch": 1})
    other = small_model(backend, seed=5)
    load_parameters(other, tmp_path / "m")
    assert_same_parameters(source, other)


# -- exact resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_resume_is_exact(backend, tmp_path, optimizer, dropout):
    """Saved after K epochs, loaded and trained N more: bit for bit the run that never stopped."""
    K, N = 3, 2
    path = tmp_path / "checkpoint.safetensors"
    saved = small_model(backend, optimizer, dropout)
    train(saved, K)
    save_model(saved, path, checkpoint={"epoch": K})
    resumed, info = load_checkpoint(path, backend=backend)
    assert info == {"epoch": K}
    history = train(resumed, N)
    # The saving model goes on the same way (on CuPy, saving reseeds Dropout's generator).
    train(saved, N)
    assert_same_parameters(saved, resumed)
    if backend != "cupy" or not dropout:
        uninterrupted = small_model(backend, optimizer, dropout)
        full = train(uninterrupted, K + N)
        assert_same_parameters(uninterrupted, resumed)
        assert history["epoch"] == full["epoch"][K:]
        assert history["loss"] == full["loss"][K:]
        assert history["accuracy"] == full["accuracy"][K:]
        assert history["learning_rate"] == full["learning_rate"][K:]
        assert resumed.optimizer.iterations == uninterrupted.optimizer.iterations
        assert resumed.epochs_trained == uninterrupted.epochs_trained == K + N
        assert resumed.rng.bit_generator.state == uninterrupted.rng.bit_generator.state


def test_resume_restores_regression_precision(tmp_path):
    model = full_model("numpy", "mse", "Adam")
    train(model, 1, "mse")
    precision = model.accuracy.precision
    assert precision is not None
    save_model(model, tmp_path / "m", checkpoint={"epoch": 1})
    assert load_model(tmp_path / "m").accuracy.precision == precision


# -- atomic writes ------------------------------------------------------------------------------


class HalfWriter:
    """A file whose write stops half way with a full disk."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        self.file.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


@pytest.mark.parametrize("failure", ["write", "fsync", "replace"])
def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "model.safetensors"
    old = small_model(seed=1)
    save_model(old, path, checkpoint={"epoch": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(5, f"{failure} failed")

    if failure == "write":
        fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: HalfWriter(fdopen(*a, **k)))
    else:
        monkeypatch.setattr(os, failure, boom)
    new = small_model(seed=2)
    with pytest.raises(OSError):
        save_model(new, path, checkpoint={"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left
    loaded, info = load_checkpoint(path)
    assert info == {"epoch": 1}
    assert_same_parameters(old, loaded)


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        save_model(small_model(), tmp_path / "m")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_unsaveable_model_leaves_the_file_alone(tmp_path):
    path = tmp_path / "m"
    save_model(small_model(), path)
    before = path.read_bytes()
    broken = small_model()
    broken.layers[0].weights[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        save_model(broken, path)
    assert path.read_bytes() == before


def test_save_through_a_symlink_replaces_its_target(tmp_path):
    real = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    save_model(small_model(seed=1), real)
    link.symlink_to(real)
    model = small_model(seed=2)
    save_model(model, link)
    assert link.is_symlink()
    assert_same_parameters(model, load_model(real))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill server forks")
def test_killed_saves_never_lose_the_file(backend, tmp_path):
    """SIGKILL a saving process at each point of the write in turn (tests/kill_save.py), twice
    over: the file always loads (here on ``backend``), whole, as the previous version when the
    kill came before the rename and as the new one after it."""
    sys.path.insert(0, str(TESTS))
    try:
        from kill_save import BEFORE_THE_REPLACE, POINTS
    finally:
        sys.path.remove(str(TESTS))
    path = tmp_path / "checkpoint.safetensors"
    server = subprocess.Popen(
        [sys.executable, str(TESTS / "kill_save.py"), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
    )
    saved, seen = 0, []  # the epoch the file must hold; (point, epoch found, leftovers)
    try:
        assert server.stdout.readline().strip() == "ready"
        for epoch, point in enumerate(POINTS * 2, start=1):
            server.stdin.write(f"kill {epoch} {point}\n")
            server.stdin.flush()
            assert server.stdout.readline().split() == ["dead", str(-signal.SIGKILL)], point
            if point not in BEFORE_THE_REPLACE:
                saved = epoch
            leftovers = sorted(p.name for p in tmp_path.iterdir() if p != path)
            for name in leftovers:
                (tmp_path / name).unlink()
            model, info = load_checkpoint(path, backend=backend)
            values = {float(v) for p in flat_parameters(model) for v in np.unique(p)}
            assert values == {float(info["epoch"])}, point  # one version, whole
            seen.append((point, info["epoch"], len(leftovers)))
            assert info["epoch"] == saved, seen
            if point in ("created", "writing", "fsync", "replace"):  # the temporary file
                assert len(leftovers) == 1 and leftovers[0].startswith(f".{path.name}."), seen
            else:
                assert leftovers == [], seen
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    assert len(seen) == 2 * len(POINTS) and server.returncode == 0


# -- hostile files ------------------------------------------------------------------------------


@cache
def reference_file() -> bytes:
    """A small checkpoint with every section: Dropout state, Adam buffers, an epoch."""
    model = small_model()
    train(model, 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m"
        save_model(model, path, checkpoint={"epoch": 1})
        return path.read_bytes()


def reference_model(path: Path) -> xpnn.Model:
    path.write_bytes(reference_file())
    return load_model(path)


def header_length(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 2**16), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**16)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 16)),
    st.tuples(st.just("swap"), st.integers(0, 2**16), st.integers(0, 2**16)),
    st.tuples(st.just("length"), st.integers(0, 2**64 - 1)),
)


def mutate(data: bytes, mutations) -> bytes:
    b = bytearray(data)
    for kind, *args in mutations:
        if not b:
            b = bytearray(b"\0")
        if kind == "flip":
            b[args[0] % len(b)] ^= 1 << args[1]
        elif kind == "set":
            b[args[0] % len(b)] = args[1]
        elif kind == "truncate":
            del b[args[0] % len(b) :]
        elif kind == "append":
            b += args[0]
        elif kind == "insert":
            i = args[0] % (len(b) + 1)
            b[i:i] = args[1]
        elif kind == "delete":
            i = args[0] % len(b)
            del b[i : i + args[1]]
        elif kind == "swap":  # two bytes of the header, where the parsing happens
            n = min(len(b), header_length(data))
            i, j = args[0] % n, args[1] % n
            b[i], b[j] = b[j], b[i]
        elif kind == "length":
            b[:8] = args[0].to_bytes(8, "little")
    return bytes(b)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_files_fail_cleanly(backend, tmp_path, mutations):
    """Random damage: XpnnFileError, or (damage that changes nothing) the very same model."""
    original = reference_file()
    path = tmp_path / "mutated"
    path.write_bytes(mutate(original, mutations))
    try:
        model, info = load_checkpoint(path, backend=backend)
    except XpnnFileError as error:
        assert str(path) in str(error)
        return
    reference = reference_model(tmp_path / "reference")
    assert info == {"epoch": 1}
    assert_same_parameters(reference, model)
    assert xpnn.description.describe_model(model) | {"backend": "numpy"} == (
        xpnn.description.describe_model(reference)
    )


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, -1, 2**63, 10**30, 0.0, -0.5, 1e308])
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["Dense", "Dropout", "ReLU", "Adam", "PCG64", "eval", "os.system"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def read_file(path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="np") as f:
        return f.metadata(), {name: f.get_tensor(name) for name in f.keys()}


def resign(path, metadata, tensors) -> None:
    """Write a file with a valid checksum, as a deliberate tamperer would."""
    tensors = {name: np.ascontiguousarray(t) for name, t in tensors.items()}
    metadata = {k: v for k, v in metadata.items() if k != "sha256"}
    metadata["sha256"] = xpnn.io.format.digest(metadata, tensors)
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(draws=st.data())
def test_tampered_json_fails_cleanly(backend, tmp_path, draws):
    """Re-signed edits of the architecture or state: XpnnFileError or a consistent model."""
    source = tmp_path / "source"
    source.write_bytes(reference_file())
    metadata, tensors = read_file(source)
    key = draws.draw(st.sampled_from(["model", "state"]))
    document = json.loads(metadata[key])
    parent, node, name = None, document, None
    while isinstance(node, (dict, list)) and node and draws.draw(st.booleans()):
        parent = node
        name = draws.draw(
            st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
        )
        node = node[name]
    action = draws.draw(st.sampled_from(["replace", "delete", "add"]))
    if parent is None:  # the whole document
        if action == "replace":
            document = draws.draw(JSON)
        elif action == "delete":
            document = {}
        else:
            document[draws.draw(st.text(max_size=6))] = draws.draw(JSON)
    elif action == "replace":
        parent[name] = draws.draw(JSON)
    elif action == "delete":
        del parent[name]
    else:
        target = node if isinstance(node, dict) else parent
        if isinstance(target, dict):
            target[draws.draw(st.text(max_size=6))] = draws.draw(JSON)
        else:
            target.append(draws.draw(JSON))
    metadata[key] = json.dumps(document)
    path = tmp_path / "tampered"
    resign(path, metadata, tensors)
    try:
        model, _ = load_checkpoint(path, backend=backend)
    except XpnnFileError as error:
        assert str(path) in str(error)
        return
    # Loaded: whole and consistent.
    reference = reference_model(tmp_path / "reference")
    assert_same_parameters(reference, model)
    for p in flat_parameters(model):
        assert np.all(np.isfinite(p))
    X, _ = data()
    assert tuple(model.predict(X).shape) == (X.shape[0], 3)


# One test per kind of problem, each with the words its message must contain.


def edit_json(metadata, key, edit):
    document = json.loads(metadata[key])
    edit(document)
    metadata[key] = json.dumps(document)


def layer(document, index):
    return document["layers"][index]["settings"]


def reference_path(tmp_path) -> Path:
    path = tmp_path / "good.safetensors"
    path.write_bytes(reference_file())
    return path


def tampered(tmp_path, edit) -> Path:
    metadata, tensors = read_file(reference_path(tmp_path))
    edit(metadata, tensors)
    path = tmp_path / "bad.safetensors"
    resign(path, metadata, tensors)
    return path


def expect_error(path, *words, loader=load_model):
    with pytest.raises(XpnnFileError) as excinfo:
        loader(path)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert excinfo.value.path == str(path)
    assert str(path) in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def test_error_missing_file(tmp_path):
    expect_error(tmp_path / "nothing.safetensors", "no such file")


def test_error_directory(tmp_path):
    expect_error(tmp_path, "a directory, not a regular file")


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 3, b"hello, world\n" * 10, b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}"],
    ids=["empty", "short", "text", "npy"],
)
def test_error_not_safetensors(tmp_path, content):
    path = tmp_path / "f"
    path.write_bytes(content)
    expect_error(path, "not a valid safetensors file")


@pytest.mark.parametrize("cut", [1, 100, 1000])
def test_error_truncated(tmp_path, cut):
    path = tmp_path / "f"
    path.write_bytes(reference_file()[:-cut])
    expect_error(path, "truncated")


def test_error_huge_declared_header(tmp_path):
    path = tmp_path / "f"
    path.write_bytes((2**63).to_bytes(8, "little") + reference_file()[8:])
    expect_error(path, "not a valid safetensors file")


def test_error_another_safetensors_file(tmp_path):
    path = tmp_path / "f"
    safetensors.numpy.save_file({"weight": np.ones((2, 2), np.float32)}, str(path))
    expect_error(path, "not one xpnn wrote")
    safetensors.numpy.save_file({"w": np.ones(2)}, str(path), metadata={"format": "pt"})
    expect_error(path, "not one xpnn wrote")


def test_error_corrupted_tensor_data(tmp_path):
    data = bytearray(reference_file())
    data[-3] ^= 0x10  # a bit of the last tensor
    path = tmp_path / "f"
    path.write_bytes(bytes(data))
    expect_error(path, "corrupted", "checksum")


def test_error_corrupted_metadata(tmp_path):
    data = reference_file()
    at = data.index(b'rate\\":0.1') + len(b'rate\\":0.')
    path = tmp_path / "f"
    path.write_bytes(data[:at] + b"2" + data[at + 1 :])  # Dropout(0.1) -> Dropout(0.2)
    expect_error(path, "corrupted")


def test_error_newer_version(tmp_path):
    path = tampered(tmp_path, lambda m, t: m.update(version=str(FORMAT_VERSION + 1)))
    expect_error(path, "format version 2", "newer", "upgrade")


@pytest.mark.parametrize("version", ["", "1.0", "one", "0"])
def test_error_bad_version(tmp_path, version):
    path = tampered(tmp_path, lambda m, t: m.update(version=version))
    expect_error(path, "version")


def test_error_metadata_not_json(tmp_path):
    path = tampered(tmp_path, lambda m, t: m.update(model="{not json"))
    expect_error(path, "'model' metadata is not valid JSON")


def test_error_metadata_missing_model(tmp_path):
    path = tampered(tmp_path, lambda m, t: m.pop("model"))
    expect_error(path, "no 'model' entry")


def test_error_parameters_file_to_load_model(tmp_path):
    save_parameters(small_model(), tmp_path / "p")
    expect_error(tmp_path / "p", "parameters only", "load_parameters")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda d: d["layers"][1].update({"class": "Evil"}),
            ["layer 1", "names the class 'Evil', which is neither xpnn's own nor registered"],
        ),
        (
            lambda d: d["layers"][1].update({"class": "os.system"}),
            ["neither xpnn's own nor registered"],
        ),
        (lambda d: d["loss"].update({"class": "Pickle"}), ["loss", "xpnn.register"]),
        (lambda d: d["optimizer"].update({"class": "Adamax"}), ["optimizer", "xpnn.register"]),
        (lambda d: d["accuracy"].update({"class": "F1"}), ["accuracy", "xpnn.register"]),
        (lambda d: layer(d, 2).update(rate=-0.5), ["layer 2 Dropout", "invalid settings", "rate"]),
        (lambda d: layer(d, 2).update(rate="0.1"), ["invalid settings", "rate"]),
        (lambda d: layer(d, 2).update(rate=[0.1]), ["rate must be a number"]),
        (lambda d: layer(d, 2).update(evil=1), ["unknown settings ['evil']"]),
        (lambda d: layer(d, 2).pop("rate"), ["lacks the settings ['rate']"]),
        (lambda d: layer(d, 0).update(n_neurons=10**30), ["params.0.weights", "shape"]),
        (
            lambda d: layer(d, 0).update(n_inputs=2.0),
            ["layer 0 Dense", "invalid settings", "n_inputs must be a positive integer"],
        ),
        (lambda d: d["optimizer"]["settings"].update(beta_1=1.5), ["optimizer", "beta_1"]),
        (lambda d: d.update(dtype="float16"), ["dtype 'float16'"]),
        (lambda d: d.update(seed=-1), ["seed"]),
        (lambda d: d.update(layers=[]), ["no layers"]),
        (lambda d: d.pop("loss"), ["keys"]),
        (lambda d: d["layers"][1].update({"class": "Tanh"}), []),  # another consistent model
    ],
)
def test_error_architecture(tmp_path, edit, words):
    path = tampered(tmp_path, lambda m, t: edit_json(m, "model", edit))
    if not words:
        model = load_model(path)
        assert [type(x).__name__ for x in model.layers] == [
            "Dense",
            "Tanh",
            "Dropout",
            "Dense",
            "Softmax",
        ]
        return
    expect_error(path, *words)


def test_error_inconsistent_architecture(tmp_path):
    def edit(metadata, tensors):
        edit_json(metadata, "model", lambda d: layer(d, 3).update(n_inputs=8))
        tensors["params.1.weights"] = tensors["params.1.weights"][:8]

    expect_error(tampered(tmp_path, edit), "architecture is inconsistent", "takes 8 inputs")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda t: t.pop("params.1.biases"), ["'params.1.biases' is missing"]),
        (lambda t: t.update(extra=np.ones(2, np.float32)), ["unexpected tensors ['extra']"]),
        (
            lambda t: t.update({"params.1.biases": np.ones((1, 4), np.float32)}),
            ["'params.1.biases' has shape (1, 4)", "needs (1, 3)"],
        ),
        (
            lambda t: t.update({"params.0.weights": t["params.0.weights"].astype(np.float64)}),
            ["'params.0.weights' has dtype float64, not float32"],
        ),
        (
            lambda t: t.update({"params.0.weights": t["params.0.weights"].astype(np.int32)}),
            ["dtype int32"],
        ),
        (
            lambda t: t["params.0.biases"].__setitem__((0, 1), np.inf),
            ["'params.0.biases' holds NaN or infinity"],
        ),
        (
            lambda t: t["params.1.weights"].__setitem__((0, 1), np.nan),
            ["'params.1.weights' holds NaN or infinity"],
        ),
        (
            lambda t: t.update({"optimizer.param_cache": t["optimizer.param_cache"][:-1]}),
            ["'optimizer.param_cache' has shape"],
        ),
        (
            lambda t: t["optimizer.param_cache"].__setitem__(0, -1.0),
            ["'optimizer.param_cache' holds negative values"],
        ),
        (
            lambda t: t["optimizer.param_momentums"].__setitem__(0, np.nan),
            ["'optimizer.param_momentums' holds NaN"],
        ),
        (
            lambda t: t.update({"optimizer.param_velocity": t["optimizer.param_cache"]}),
            ["'optimizer.param_velocity' is not state of Adam"],
        ),
    ],
)
def test_error_tensors(tmp_path, edit, words):
    def change(metadata, tensors):
        for name in list(tensors):
            tensors[name] = np.array(tensors[name])  # writable copies
        edit(tensors)

    expect_error(tampered(tmp_path, change), *words)


def test_error_state_of_another_optimizer(tmp_path):
    def edit(metadata, tensors):
        edit_json(metadata, "model", lambda d: d.update(optimizer={"class": "SGD", "settings": {}}))

    expect_error(tampered(tmp_path, edit), "'optimizer.param_cache' is not state of SGD")


def test_error_optimizer_state_without_training_state(tmp_path):
    expect_error(tampered(tmp_path, lambda m, t: m.pop("state")), "optimizer state")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda s: s["checkpoint"].update(epoch=-3), ["epoch", ">= 0"]),
        (lambda s: s["checkpoint"].update(epoch="12"), ["epoch", "integer"]),
        (lambda s: s.update(checkpoint=[1]), ["checkpoint information"]),
        (lambda s: s["optimizer"].update(iterations=-1), ["iterations"]),
        (lambda s: s["optimizer"].update(iterations=1.5), ["iterations"]),
        (lambda s: s["optimizer"].update(current_learning_rate=-1), ["current_learning_rate"]),
        (lambda s: s.update(optimizer=None), ["optimizer state"]),
        (lambda s: s["rng"].update(bit_generator="MT19937"), ["generator state", "PCG64"]),
        (lambda s: s["rng"]["state"].update(state=-1), ["PCG64"]),
        (lambda s: s["rng"]["state"].update(inc=2**200), ["PCG64"]),
        (lambda s: s["rng"].pop("uinteger"), ["PCG64"]),
        (lambda s: s.update(dropout={}), ["Dropout generator states", "['2']"]),
        (lambda s: s["dropout"].update({"0": s["dropout"]["2"]}), ["Dropout generator states"]),
        (lambda s: s["dropout"]["2"].update(state=1), ["layer 2"]),
        (lambda s: s["dropout"]["2"].update(draws=-1), ["masks drawn by layer 2"]),
        (lambda s: s["dropout"]["2"].update(draws=1.0), ["masks drawn by layer 2"]),
        (lambda s: s["dropout"].update({"2": {"seed": -1}}), ["seed of layer 2"]),
        (
            lambda s: s["dropout"].update({"2": {"state": dict(s["rng"], has_uint32=2)}}),
            ["layer 2", "PCG64"],
        ),
        (lambda s: s.update(extra=1), ["training state", "keys"]),
        (lambda s: s.update(epochs_trained=-1), ["epochs_trained"]),
        (lambda s: s.update(epochs_trained=2.0), ["epochs_trained"]),
    ],
)
def test_error_training_state(tmp_path, edit, words):
    expect_error(tampered(tmp_path, lambda m, t: edit_json(m, "state", edit)), *words)


def test_dropout_entries_from_older_files_load(tmp_path):
    """Files from before keyed masks hold a generator: a seed (CuPy's) or a NumPy PCG64 state.
    Both load, and the masks start afresh from the seed they give, alike at every load."""
    path = tampered(
        tmp_path,
        lambda m, t: edit_json(m, "state", lambda s: s["dropout"].update({"2": {"seed": 7}})),
    )
    assert load_model(path).layers[2].random_state() == {"seed": 7, "draws": 0}
    state = np.random.default_rng(5).bit_generator.state
    path = tampered(
        tmp_path,
        lambda m, t: edit_json(m, "state", lambda s: s["dropout"].update({"2": {"state": state}})),
    )
    seed = int(np.random.default_rng(5).integers(2**63))
    for _ in range(2):
        assert load_model(path).layers[2].random_state() == {"seed": seed, "draws": 0}


def test_load_parameters_errors_leave_the_model_untouched(tmp_path):
    bigger = small_model()
    bigger.add(xpnn.Dense(3, 3))  # three layers with parameters
    bigger.add(xpnn.Softmax())
    bigger.finalize()
    save_parameters(bigger, tmp_path / "three")
    model = small_model()
    before = flat_parameters(model)
    expect_error(
        tmp_path / "three",
        "parameters for 3 layers",
        "2 layers with parameters",
        loader=lambda p: load_parameters(model, p),
    )
    wide = small_model()
    wide.layers[-2] = xpnn.Dense(16, 4)
    wide.layers[-1] = xpnn.Softmax()
    wide.finalize()
    save_parameters(wide, tmp_path / "wide")
    expect_error(
        tmp_path / "wide",
        "'params.1.weights' has shape (16, 4)",
        loader=lambda p: load_parameters(model, p),
    )
    expect_error(tmp_path / "missing", "no such file", loader=lambda p: load_parameters(model, p))
    for a, b in zip(before, flat_parameters(model)):
        np.testing.assert_array_equal(a, b)


# -- arguments and saving errors ------------------------------------------------------------


def test_argument_errors_come_before_the_file(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of") as excinfo:
        load_model(tmp_path / "missing", backend="bogus")
    assert not isinstance(excinfo.value, XpnnFileError)
    with pytest.raises(ValueError, match="dtype"):
        load_model(tmp_path / "missing", dtype="float16")


def test_paths_must_be_file_names(tmp_path):
    model = small_model()
    for call in (
        lambda: save_model(model, 3),
        lambda: load_model(3),
        lambda: load_parameters(model, None),
        lambda: save_parameters(model, 2.5),
    ):
        with pytest.raises(TypeError, match="path must be a file name"):
            call()
    save_model(model, str(tmp_path / "a"))
    save_model(model, os.fsencode(tmp_path / "b"))
    assert_same_parameters(model, load_model(os.fsencode(tmp_path / "a")))
    assert_same_parameters(model, load_model(str(tmp_path / "b")))


def test_save_errors(tmp_path):
    unfinished = xpnn.Model()
    unfinished.add(xpnn.Dense(2, 2))
    with pytest.raises(ValueError, match="finalize"):
        save_model(unfinished, tmp_path / "m")
    with pytest.raises(TypeError, match="Model"):
        save_model("model", tmp_path / "m")

    class Custom(xpnn.ReLU):
        pass

    model = small_model()
    model.layers[1] = Custom()
    with pytest.raises(TypeError, match="neither xpnn's own nor registered"):
        save_model(model, tmp_path / "m")
    model = small_model()
    with pytest.raises(TypeError, match="JSON"):
        save_model(model, tmp_path / "m", checkpoint={"epoch": object()})
    with pytest.raises(ValueError, match="epoch"):
        save_model(model, tmp_path / "m", checkpoint={"epoch": -1})
    with pytest.raises(TypeError, match="dict"):
        save_model(model, tmp_path / "m", checkpoint=3)
    assert not (tmp_path / "m").exists()


def tiny_model(seed, optimizer=None) -> xpnn.Model:
    model = xpnn.Model(seed=seed)
    model.add(xpnn.Dense(2, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=optimizer or xpnn.Adam())
    model.finalize()
    return model


def test_what_save_writes_load_reads_at_the_bounds(tmp_path):
    """The largest seed and counts a file stores round-trip; one more is refused by the save,
    naming the setting, with nothing written."""
    path = tmp_path / "m"
    model = tiny_model(2**512 - 1)
    train(model, 1)  # Adam's state, which a checkpoint after a step must hold
    model.optimizer.iterations = 2**63 - 1
    model.epochs_trained = 2**63 - 1
    model.save(path)
    loaded = xpnn.Model.load(path)
    assert loaded.seed == 2**512 - 1
    assert loaded.optimizer.iterations == loaded.epochs_trained == 2**63 - 1
    path.unlink()
    with pytest.raises(ValueError, match=r"seeded with an int below 2\*\*512.* 513 bits"):
        tiny_model(2**512).save(path)
    with pytest.raises(ValueError, match=r"seeded with an int below 2\*\*512.* 1329 bits"):
        tiny_model(10**400).save(path)  # beyond a float: the message does not overflow
    with pytest.raises(TypeError, match=r"seed must be None or a non-negative integer"):
        tiny_model(np.random.SeedSequence(1))  # refused as the model is made, not at saving
    model = tiny_model(0)
    model.seed = np.random.SeedSequence(1)  # set by hand: saving still refuses it
    with pytest.raises(TypeError, match=r"seeded with an int .* its seed is a SeedSequence"):
        model.save(path)
    for setting in ("optimizer.iterations", "epochs_trained"):
        model = tiny_model(0)
        owner = model.optimizer if setting.startswith("optimizer") else model
        setattr(owner, setting.split(".")[-1], 2**63)
        with pytest.raises(ValueError, match=rf"cannot save {setting}=9223372036854775808"):
            model.save(path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("optimizer", "dropped"),
    [
        ("Adam", ["optimizer.param_momentums", "optimizer.param_cache"]),
        *(
            (name, [f"optimizer.param_{state}"])
            for name, rule in OPTIMIZERS.items()
            for state in rule.make().kept_states()
        ),
    ],
)
def test_a_checkpoint_without_its_optimizer_state_is_refused(tmp_path, optimizer, dropped):
    """Without its state an optimizer would resume from zeros: a different run."""
    model = small_model(optimizer=optimizer)
    train(model, 1)
    path = tmp_path / "m"
    save_model(model, path, checkpoint={})
    metadata, tensors = read_file(path)
    for name in dropped:
        del tensors[name]
    resign(path, metadata, tensors)
    message = expect_error(path, "optimizer state tensors", "missing", "after 10 steps")
    assert str(dropped) in message


def test_optimizer_state_that_is_not_kept_yet_or_at_all_may_be_absent(tmp_path):
    """Before the first step there is none; SGD without momentum keeps none."""
    path = tmp_path / "m"
    model = small_model()
    save_model(model, path, checkpoint={})
    assert not any(name.startswith("optimizer.") for name in read_file(path)[1])
    assert load_checkpoint(path)[0].optimizer.iterations == 0
    model = small_model()
    model.set(optimizer=xpnn.SGD(learning_rate=0.1))
    model.finalize()
    train(model, 1)
    save_model(model, path, checkpoint={})
    assert not any(name.startswith("optimizer.") for name in read_file(path)[1])
    assert load_checkpoint(path)[0].optimizer.iterations == 10
    # Before the first step, one state of two is not a state Adam ever had.
    model = small_model()
    train(model, 1)
    save_model(model, path, checkpoint={})
    metadata, tensors = read_file(path)
    del tensors["optimizer.param_cache"]
    edit_json(metadata, "state", lambda s: s["optimizer"].update(iterations=0))
    resign(path, metadata, tensors)
    expect_error(path, "['optimizer.param_cache'] are missing, while others are there")


@pytest.mark.parametrize(
    ("key", "edit", "twice"),
    [
        ("model", lambda text: text[:-1] + ',"seed":7}', "seed"),
        ("model", lambda text: text.replace('"class":', '"class":"ReLU","class":', 1), "class"),
        ("state", lambda text: text[:-1] + ',"epochs_trained":9}', "epochs_trained"),
        ("state", lambda text: text.replace('"epoch":1', '"epoch":1,"epoch":5'), "epoch"),
    ],
    ids=["seed", "class", "epochs_trained", "checkpoint's epoch"],
)
def test_duplicate_keys_in_the_metadata_json_are_refused(tmp_path, key, edit, twice):
    """As in the header: json would keep the last, a reader that takes the first sees another
    model."""

    def change(metadata, tensors):
        text = metadata[key]
        metadata[key] = edit(text)
        assert metadata[key] != text

    expect_error(tampered(tmp_path, change), f"its {key!r} metadata names the key {twice!r} twice")


def test_what_save_writes_load_reads_odd_but_reachable_states(tmp_path):
    """States a model reaches through the API, which a save writes and a load must read."""
    path = tmp_path / "m"
    # Trained, then finalized again: fresh weights, no optimizer state yet, the steps counted.
    model = small_model()
    train(model, 1)
    model.finalize()
    model.save(path)
    loaded = xpnn.Model.load(path)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 10
    train(model, 1)
    train(loaded, 1)
    assert_same_parameters(model, loaded)
    # A rate decayed below the smallest float64: 0, where a step changes nothing.
    model = xpnn.Model(seed=0, dtype="float64")
    model.add(xpnn.Dense(2, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=1e-300, decay=1e300),
    )
    model.finalize()
    train(model, 1)
    assert model.optimizer.current_learning_rate == 0.0
    model.save(path)
    assert xpnn.Model.load(path).optimizer.current_learning_rate == 0.0
    metadata, tensors = read_file(path)  # without decay, nothing makes the rate 0
    edit_json(metadata, "model", lambda d: d["optimizer"]["settings"].update(decay=0.0))
    resign(path, metadata, tensors)
    expect_error(path, "current_learning_rate is 0, but it has no decay to make it so")
    # NumPy integers for the counts, as arithmetic on them gives.
    model = small_model()
    train(model, 1)
    model.epochs_trained = np.uint64(3)
    model.optimizer.iterations = np.int64(10)
    model.save(path)
    loaded, info = load_checkpoint(path)
    assert (loaded.epochs_trained, loaded.optimizer.iterations, info) == (3, 10, {"epoch": 3})


def test_counts_and_checkpoint_dicts_a_file_cannot_store_are_refused(tmp_path):
    path = tmp_path / "m"
    model = small_model()
    train(model, 1)
    model.optimizer.iterations = 10.5
    with pytest.raises(TypeError, match=r"cannot save optimizer.iterations=10.5: it is not an"):
        model.save(path)
    model.optimizer.iterations = 10
    model.epochs_trained = -1
    with pytest.raises(ValueError, match=r"cannot save epochs_trained=-1: a saved count"):
        model.save(path)
    model.epochs_trained = 1

    def nested(depth):
        value = 0
        for level in range(depth):
            value = {"a": value} if level % 2 else [value]
        return {"deep": value}

    for depth in (100, 990, 5000):  # JSON readers recurse: 990 once loaded, 5000 saved
        with pytest.raises(ValueError, match="checkpoint nests lists and dicts more than 100"):
            save_model(model, path, checkpoint=nested(depth))
    assert not path.exists()
    save_model(model, path, checkpoint=nested(99))
    assert load_checkpoint(path)[1] == json.loads(json.dumps(nested(99)))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_the_checkpoint_dict_are_refused(tmp_path, constant):
    """Python's json reads them, but a save never writes them: a checkpoint dict holding one
    would load and then not save."""

    def change(metadata, tensors):
        assert '"epoch":1' in metadata["state"]
        metadata["state"] = metadata["state"].replace('"epoch":1', f'"epoch":1,"x":[{constant}]')

    expect_error(tampered(tmp_path, change), "the checkpoint information holds NaN or infinity")


def stopped_inside_an_epoch(tmp_path, monkeypatch) -> tuple[Path, int]:
    """A checkpoint that Ctrl-C wrote inside epoch 2, with its shuffled order; and its length."""
    X, y = data()
    model = small_model()
    press_ctrl_c_at_step(model, 6, monkeypatch)
    path = tmp_path / "stopped"
    model.train(X, y, epochs=3, batch_size=64, checkpoint=path, verbose=False)
    assert (
        model.network.epoch_in_progress is not None
        and model.network.epoch_in_progress.order is not None
    )
    return path, X.shape[0]


def test_an_order_with_one_sample_out_of_range_is_refused(tmp_path, monkeypatch):
    path, samples = stopped_inside_an_epoch(tmp_path, monkeypatch)
    assert load_model(path).network.epoch_in_progress.done == 64
    metadata, tensors = read_file(path)
    order = tensors["state.epoch_order"]
    assert sorted(order) == list(range(samples))
    for value in (samples, -1, 2**40, -(2**63)):
        for index in (0, samples // 2, samples - 1):
            bad = np.array(order)
            bad[index] = value  # one sample out of range; one left out
            target = tmp_path / "bad"
            resign(target, metadata, {**tensors, "state.epoch_order": bad})
            expect_error(target, "'state.epoch_order' is not an order of the samples")


def test_exception_is_one_documented_value_error():
    assert issubclass(XpnnFileError, ValueError)
    assert "XpnnFileError" in xpnn.io.__all__
    error = XpnnFileError("a/b.safetensors", "it is corrupted")
    assert str(error) == "cannot load a/b.safetensors: it is corrupted"
    assert (error.path, error.problem) == ("a/b.safetensors", "it is corrupted")


# -- nothing runs from a file -------------------------------------------------------------------


def test_no_pickle_anywhere():
    sources = {
        path.relative_to(PACKAGE).as_posix(): path.read_text()
        for path in sorted(PACKAGE.glob("**/*.py"))
    }
    io_modules = [name for name in sources if name.startswith("io/")]
    assert "io/__init__.py" in io_modules and len(io_modules) > 1
    for name, text in sources.items():
        code = re.sub(r'"""(.|\n)*?"""|#.*', "", text)  # prose may say "no pickle"; code may not
        assert "pickle" not in code.lower(), f"xpnn/{name} uses pickle"
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, f"xpnn/{name}: {call}"
    loader = "".join(sources[name] for name in io_modules)
    for dangerous in ("eval(", "exec(", "__import__", "importlib", "marshal", "shelve"):
        assert dangerous not in loader, dangerous


def test_file_is_plain_safetensors(tmp_path):
    """Any safetensors reader sees the tensors and the JSON architecture."""
    model = small_model()
    train(model, 1)
    save_model(model, tmp_path / "m", checkpoint={"epoch": 1})
    metadata, tensors = read_file(tmp_path / "m")
    assert metadata["format"] == "xpnn" and metadata["version"] == str(FORMAT_VERSION)
    spec = json.loads(metadata["model"])
    assert [entry["class"] for entry in spec["layers"]] == [
        "Dense",
        "ReLU",
        "Dropout",
        "Dense",
        "Softmax",
    ]
    assert sorted(tensors) == [
        "optimizer.param_cache",
        "optimizer.param_momentums",
        "params.0.biases",
        "params.0.weights",
        "params.1.biases",
        "params.1.weights",
    ]
    np.testing.assert_array_equal(tensors["params.0.weights"], model.get_parameters()[0][0])
    assert math.isclose(
        json.loads(metadata["state"])["optimizer"]["current_learning_rate"],
        model.optimizer.current_learning_rate,
    )
    assert copy.deepcopy(json.loads(metadata["state"])["checkpoint"]) == {"epoch": 1}
