"""Hostile files and odd paths: loading reads nothing it has not checked, saving replaces only
regular files, write errors name the user's file, and train(checkpoint=...) checks its path
before the first step."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from helpers import load_checkpoint, load_model, spiral
from safetensors import safe_open

import xpnn
import xpnn.files
import xpnn.io
from xpnn.files import check_writable
from xpnn.io import XpnnFileError, load_parameters, save_model

TESTS = Path(__file__).resolve().parent
MiB = 2**20


def small_model(backend="numpy", seed=0) -> xpnn.Model:
    model = xpnn.Model(backend=backend, seed=seed)
    model.add(xpnn.Dense(2, 16))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.1))
    model.add(xpnn.Dense(16, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=0.01),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def flat(model) -> list[np.ndarray]:
    return [a for pair in model.get_parameters() for a in pair]


def checkpoint_bytes(tmp_path) -> bytes:
    model = small_model()
    X, y = spiral(20, 3)
    model.train(X, y, epochs=1, batch_size=16, verbose=False)
    path = tmp_path / "reference.safetensors"
    save_model(model, path, checkpoint={"epoch": 1})
    data = path.read_bytes()
    path.unlink()
    return data


def split(data: bytes) -> tuple[dict, bytes]:
    """The JSON header and the data region of a safetensors file's bytes."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def resigned(metadata: dict, tensors: dict) -> bytes:
    metadata = {k: v for k, v in metadata.items() if k != "sha256"}
    metadata["sha256"] = xpnn.io.format.digest(metadata, tensors)
    return safetensors.numpy.save(tensors, metadata=metadata)


def read_file(path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="np") as f:
        return f.metadata(), {name: f.get_tensor(name) for name in f.keys()}


def refused(path, *words, loader=load_model) -> str:
    with pytest.raises(XpnnFileError) as excinfo:
        loader(path)
    message = str(excinfo.value)
    assert excinfo.value.path == os.fsdecode(path)
    assert f"cannot load {os.fsdecode(path)}: " in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


@pytest.fixture
def no_tensor_read(monkeypatch):
    """Fail the test if any tensor's bytes are read."""

    def read_tensors(*args, **kwargs):
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(xpnn.io.reader, "read_tensors", read_tensors)


def sparse(path: Path, prefix: bytes, size: int) -> Path:
    """``prefix`` followed by zeros up to ``size`` bytes, as a sparse file (no disk used)."""
    path.write_bytes(prefix)
    os.truncate(path, size)
    return path


def peak_memory(call) -> int:
    """The largest Python and NumPy allocation total while ``call`` runs, in bytes: the second
    time, the first importing what a first load imports (the backend's modules, some 20 MB)."""
    call()
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- what is not a regular file is never opened ---------------------------------------------------


def special_files(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "special"
    folder.mkdir()
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    found = {"directory": folder / "dir", "FIFO": fifo}
    found["directory"].mkdir()
    (folder / "to-fifo").symlink_to(fifo)
    found["symlink to a FIFO"] = folder / "to-fifo"
    (folder / "to-dir").symlink_to(found["directory"])
    found["symlink to a directory"] = folder / "to-dir"
    if len(str(folder / "socket")) < 100:  # AF_UNIX names are short
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(folder / "socket"))
        server.close()  # the socket file stays
        found["socket"] = folder / "socket"
    for device in ("/dev/zero", "/dev/null", "/dev/urandom"):
        if os.path.exists(device) and stat.S_ISCHR(os.stat(device).st_mode):
            link = folder / f"to-{os.path.basename(device)}"
            link.symlink_to(device)
            found[f"symlink to {device}"] = link
    return found


KINDS = {
    "directory": "a directory",
    "FIFO": "a FIFO",
    "socket": "a socket",
    "symlink to a FIFO": "which is a FIFO",
    "symlink to a directory": "which is a directory",
    "symlink to /dev/zero": "a symlink to /dev/zero, which is a character device",
    "symlink to /dev/null": "a symlink to /dev/null, which is a character device",
    "symlink to /dev/urandom": "which is a character device",
}


def test_files_that_are_not_regular_are_refused_unopened(tmp_path, monkeypatch):
    files = special_files(tmp_path)
    assert {"directory", "FIFO", "symlink to a FIFO"} <= set(files)
    opened = []
    real_open = os.open

    def guarded_open(path, *args, **kwargs):
        if os.fsdecode(path).startswith(str(tmp_path / "special")):
            opened.append(path)
            raise AssertionError(f"{path} was opened")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    model = small_model()
    for kind, path in files.items():
        for loader in (load_model, lambda p: load_parameters(model, p)):
            message = refused(path, KINDS[kind], "not a regular file", loader=loader)
            assert "cannot be read" not in message
    assert opened == []


def test_a_fifo_swapped_in_after_the_check_is_refused_without_blocking(tmp_path, monkeypatch):
    """The file opened is checked again (fstat): a FIFO that takes a regular file's place
    between the two looks is opened without blocking and refused."""
    path = tmp_path / "m"
    path.write_bytes(b"x" * 100)
    real_stat = os.stat

    def stat_then_swap(name, *args, **kwargs):
        result = real_stat(name, *args, **kwargs)
        if os.fsdecode(name) == str(path):
            path.unlink()
            os.mkfifo(path)
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    refused(path, "a FIFO", "not a regular file")


# -- the header is read and checked first, and bounded ------------------------------------------


def test_a_foreign_1_gb_file_is_refused_from_its_header(tmp_path, no_tensor_read):
    n = 250_000_000  # one float32 tensor of 1 GB, written by another program
    header = {
        "__metadata__": {"format": "pt"},
        "weight": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
    }
    prefix = join(header)
    path = sparse(tmp_path / "foreign.safetensors", prefix, len(prefix) + 4 * n)
    with safe_open(str(path), framework="np") as f:  # a valid safetensors file
        assert list(f.keys()) == ["weight"]
    peak = peak_memory(lambda: refused(path, "not one xpnn wrote"))
    assert peak < 50 * MiB, f"{peak / MiB:.0f} MiB to refuse a foreign file"


EIGHT_GIB = 8 * 2**30


def test_8_gib_sparse_files_are_refused_in_little_memory(tmp_path, no_tensor_read):
    valid = checkpoint_bytes(tmp_path)
    header, _ = split(valid)
    metadata = header["__metadata__"]
    # A huge tensor whose offsets fit the file, but not the architecture.
    huge = {
        "__metadata__": metadata,
        "params.0.weights": {"dtype": "F32", "shape": [2, 2**30], "data_offsets": [0, 2**33]},
    }
    huge_prefix = join(huge)
    cases = {
        "zeros": (b"", "not a valid safetensors file"),
        "a valid file with zeros appended": (valid, "bytes follow its last tensor"),
        "a huge tensor": (huge_prefix, "'params.0.weights' has shape (2, 1073741824)"),
        "a huge header": ((2**40).to_bytes(8, "little"), "more than the"),
    }
    for name, (prefix, words) in cases.items():
        size = EIGHT_GIB + (len(huge_prefix) if name == "a huge tensor" else 0)
        path = sparse(tmp_path / name.replace(" ", "_"), prefix, size)
        peak = peak_memory(lambda: refused(path, words))  # noqa: B023
        assert peak < 50 * MiB, f"{name}: {peak / MiB:.0f} MiB"
        path.unlink()


def test_a_header_longer_than_the_bound_is_not_read(tmp_path, no_tensor_read):
    bound = xpnn.io.MAX_HEADER_BYTES
    assert 2 * MiB <= bound <= 64 * MiB
    length = bound + 1
    path = sparse(tmp_path / "f", length.to_bytes(8, "little") + b"{", 8 + length + 100)
    peak = peak_memory(lambda: refused(path, "not a valid safetensors file", "more than"))
    assert peak < bound // 2


def test_a_model_whose_header_would_pass_the_bound_is_not_saved(tmp_path, monkeypatch):
    model = small_model()
    path = tmp_path / "m"
    save_model(model, path)
    before = path.read_bytes()
    monkeypatch.setattr(xpnn.io.format, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(ValueError, match="more than the 1000 an xpnn file may have"):
        save_model(model, path, checkpoint={"epoch": 0})
    assert path.read_bytes() == before


def test_the_header_is_checked_before_any_tensor(tmp_path, no_tensor_read):
    """Every damage to the tensor table is named from the header alone."""
    header, data = split(checkpoint_bytes(tmp_path))
    by_offset = sorted(
        (n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"]
    )
    a, b = by_offset[:2]  # the first two tensors in the data
    end_of_a = header[a]["data_offsets"][1]
    cases = {
        "not an object": (lambda h: h.update({a: [1, 2]}), "is not a tensor's"),
        "extra key": (lambda h: h[a].update(extra=1), "is not a tensor's"),
        "missing key": (lambda h: h[a].pop("shape"), "is not a tensor's"),
        "float16": (lambda h: h[a].update(dtype="F16"), "has dtype float16"),
        "bfloat16": (lambda h: h[a].update(dtype="BF16"), "has dtype bfloat16"),
        "int32": (lambda h: h[a].update(dtype="I32"), "has dtype int32"),
        "unknown dtype": (lambda h: h[a].update(dtype="Q9"), "has dtype 'Q9'"),
        "dtype a number": (lambda h: h[a].update(dtype=4), "has dtype ?"),
        "negative dimension": (lambda h: h[a].update(shape=[-1, 16]), "invalid shape"),
        "float dimension": (lambda h: h[a].update(shape=[2.0, 16]), "invalid shape"),
        "bool dimension": (lambda h: h[a].update(shape=[True, 16]), "invalid shape"),
        "shape a string": (lambda h: h[a].update(shape="2x16"), "invalid shape"),
        "rank 9": (lambda h: h[a].update(shape=[1] * 9), "invalid shape"),
        "offsets reversed": (
            lambda h: h[a].update(data_offsets=[end_of_a, 0]),
            "invalid data offsets",
        ),
        "negative offset": (lambda h: h[a].update(data_offsets=[-4, 0]), "invalid data offsets"),
        "three offsets": (lambda h: h[a].update(data_offsets=[0, 4, 8]), "invalid data offsets"),
        "float offsets": (
            lambda h: h[a].update(data_offsets=[0.0, float(end_of_a)]),
            "invalid data offsets",
        ),
        "offsets not the size": (
            lambda h: h[a].update(data_offsets=[0, end_of_a + 4]),
            "data offsets span",
        ),
        "overlap": (
            lambda h: h[b].update(data_offsets=h[a]["data_offsets"], shape=h[a]["shape"]),
            "not a valid safetensors file",
        ),
        "far offsets": (
            lambda h: h[a].update(shape=[2**40], data_offsets=[2**62, 2**62 + 2**42]),
            "starts at byte",
        ),
        "a tensor of 2**70 bytes": (
            lambda h: h[a].update(shape=[2**35, 2**33], data_offsets=[0, 2**70]),
            "starts at byte",
        ),
        "metadata not text": (lambda h: h["__metadata__"].update(kind=3), "not text"),
        "metadata missing": (lambda h: h.pop("__metadata__"), "not one xpnn wrote"),
        "metadata a list": (
            lambda h: h.update(__metadata__=[["format", "xpnn"]]),
            "not one xpnn wrote",
        ),
        "another format": (lambda h: h["__metadata__"].update(format="pt"), "not one xpnn"),
        "newer version": (
            lambda h: h["__metadata__"].update(version="99"),
            "format version 99, newer",
        ),
    }
    for name, (edit, words) in cases.items():
        edited = json.loads(json.dumps(header))
        edit(edited)
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(join(edited, data))
        refused(path, words)


def test_damaged_headers_and_data_regions(tmp_path, no_tensor_read):
    valid = checkpoint_bytes(tmp_path)
    header, data = split(valid)
    raw = json.dumps(header).encode()
    twice = raw[:-1] + b', "__metadata__": {"format": "xpnn"}}'
    cases = {
        "empty": (b"", "not a valid safetensors file"),
        "7 bytes": (b"\x10" * 7, "fewer than the header's 8"),
        "length only": ((100).to_bytes(8, "little"), "only 0 follow"),
        "header cut": (valid[:40], "only 32 follow"),
        "not UTF-8": (join_raw(b"\xff" + raw[1:], data), "not JSON"),
        "not JSON": (join_raw(b"{abc}", b""), "not JSON"),
        "a JSON list": (join_raw(b"[]", b""), "not a JSON object"),
        "nested deeply": (join_raw(b"[" * 100_000 + b"]" * 100_000, b""), "not JSON"),
        "a key twice": (join_raw(twice, data), "its header names the key '__metadata__' twice"),
        "data cut": (valid[:-1], "truncated"),
        "data appended": (valid + b"\0", "1 bytes follow its last tensor"),
        "a gap": (join(header, b"\0" * 8 + data), "8 bytes follow"),
    }
    for name, (content, words) in cases.items():
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(content)
        refused(path, words)


def join_raw(raw: bytes, data: bytes) -> bytes:
    return len(raw).to_bytes(8, "little") + raw + data


# -- every declared tensor is checked against the architecture before it is read ----------------


def test_declared_tensors_are_checked_against_the_architecture_first(tmp_path, no_tensor_read):
    source = tmp_path / "source"
    source.write_bytes(checkpoint_bytes(tmp_path))
    metadata, tensors = read_file(source)
    cases = {
        "wider weights": (
            lambda t: t.update({"params.0.weights": np.zeros((2, 17), np.float32)}),
            "'params.0.weights' has shape (2, 17), but the model needs (2, 16)",
        ),
        "float64 biases": (
            lambda t: t.update({"params.1.biases": np.zeros((1, 3), np.float64)}),
            "'params.1.biases' has dtype float64, not float32",
        ),
        "int64 weights": (
            lambda t: t.update({"params.1.weights": np.zeros((16, 3), np.int64)}),
            "has dtype int64, not float32",
        ),
        "a longer optimizer buffer": (
            lambda t: t.update({"optimizer.param_cache": np.zeros(10**6, np.float32)}),
            "'optimizer.param_cache' has shape (1000000,), but the model needs (99,)",
        ),
        "a missing parameter": (lambda t: t.pop("params.0.biases"), "is missing"),
        "a stray tensor": (
            lambda t: t.update(stray=np.zeros(10**6, np.float32)),
            "unexpected tensors ['stray']",
        ),
        "a stray epoch order": (
            lambda t: t.update({"state.epoch_order": np.arange(60)}),
            "unexpected tensors ['state.epoch_order']",
        ),
    }
    for name, (edit, words) in cases.items():
        changed = dict(tensors)
        edit(changed)
        path = tmp_path / name.replace(" ", "_")
        path.write_bytes(resigned(metadata, changed))
        refused(path, words)


def test_load_parameters_checks_declared_tensors_before_reading(tmp_path, no_tensor_read):
    source = tmp_path / "source"
    source.write_bytes(checkpoint_bytes(tmp_path))
    metadata, tensors = read_file(source)
    model = small_model(seed=5)
    before = flat(model)
    # Another model's optimizer buffer: it must fit the file's own architecture.
    changed = dict(tensors, **{"optimizer.param_momentums": np.zeros(7, np.float32)})
    (tmp_path / "bad").write_bytes(resigned(metadata, changed))
    refused(
        tmp_path / "bad", "'optimizer.param_momentums' has shape (7,)", loader=model.load_parameters
    )
    changed = dict(tensors, **{"params.0.weights": np.zeros((2, 15), np.float32)})
    (tmp_path / "narrow").write_bytes(resigned(metadata, changed))
    refused(tmp_path / "narrow", "has shape (2, 15)", loader=model.load_parameters)
    for a, b in zip(before, flat(model)):
        np.testing.assert_array_equal(a, b)


def test_tensors_a_load_does_not_keep_are_hashed_in_chunks(tmp_path, monkeypatch):
    """load_parameters keeps the parameters only; the optimizer state, checked and hashed, is
    read a chunk at a time, so the checksum still covers it."""
    monkeypatch.setattr(xpnn.io.reader, "_CHUNK", 64)  # several chunks per buffer
    path = tmp_path / "m"
    path.write_bytes(checkpoint_bytes(tmp_path))
    model = small_model(seed=5)
    model.load_parameters(path)
    np.testing.assert_array_equal(flat(model)[0], flat(load_model(path))[0])
    data = bytearray(path.read_bytes())
    header, _ = split(bytes(data))
    begin = header["optimizer.param_cache"]["data_offsets"][0]
    start = 8 + int.from_bytes(data[:8], "little")
    data[start + begin + 200] ^= 1  # a bit of the optimizer state, not kept
    path.write_bytes(bytes(data))
    refused(path, "checksum", loader=model.load_parameters)


# -- nothing but XpnnFileError ---------------------------------------------------------------


def test_read_failures_are_xpnn_file_errors(tmp_path, monkeypatch):
    path = tmp_path / "m"
    path.write_bytes(checkpoint_bytes(tmp_path))

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    with monkeypatch.context() as patch:
        patch.setattr(xpnn.io.reader, "read_tensors", out_of_memory)
        refused(path, "not enough memory")

    def broken_disk(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(xpnn.io.reader, "_read_into", broken_disk)
        refused(path, "cannot be read", "Input/output error")

    # The file shrinks between reading its header and reading its tensors.
    read_header = xpnn.io.reader._read_header

    def then_shrink(file, size):
        opened = read_header(file, size)
        os.truncate(path, size - 10)
        return opened

    with monkeypatch.context() as patch:
        patch.setattr(xpnn.io.reader, "_read_header", then_shrink)
        refused(path, "truncated", "became shorter")

    refused(os.fsencode(tmp_path / "nul\0byte"), "not a file name")


def test_loading_work_grows_linearly_with_the_layers(tmp_path, monkeypatch):
    """Counted in Python calls, not timed: twice the layers, about twice the calls (a scan of
    all layers per layer, as before, gave four times). Model.add's own check is left out."""

    def add(self, layer):
        self.layers.append(layer)
        self._network = None

    monkeypatch.setattr(xpnn.Model, "add", add)

    def calls(layers: int) -> int:
        model = xpnn.Model(seed=0)
        for _ in range(layers // 2):
            model.add(xpnn.Dense(2, 2))
            model.add(xpnn.Tanh())
        model.set(loss=xpnn.MeanSquaredError(), optimizer=xpnn.SGD())
        model.finalize()
        path = tmp_path / f"{layers}.xpnn"
        save_model(model, path, checkpoint={})
        count = 0

        def profile(frame, event, arg):
            nonlocal count
            count += event in ("call", "c_call")

        sys.setprofile(profile)
        try:
            load_model(path)
        finally:
            sys.setprofile(None)
        return count

    small, large = calls(400), calls(1600)
    assert large < 4.6 * small, f"{small} calls for 400 layers, {large} for 1600"


# -- files written before this version ------------------------------------------------------


def test_format_1_checkpoint_of_the_previous_version_loads():
    path = TESTS / "data" / "format1_checkpoint.safetensors"
    metadata, tensors = read_file(path)
    assert metadata["version"] == "1" and "epoch_in_progress" not in metadata["state"]
    model, info = load_checkpoint(path)
    assert info == {"epoch": 2}
    assert model.epochs_trained == 2 and model.optimizer.iterations == 8
    assert model.network.epoch_in_progress is None
    np.testing.assert_array_equal(flat(model)[0], tensors["params.0.weights"])
    X, y = spiral(20, 3)
    history = model.train(X, y, epochs=1, batch_size=16, verbose=False)
    assert history["epoch"] == [3] and np.isfinite(history["loss"][0])


# -- saving replaces regular files only --------------------------------------------------------


def savers(model):
    return {
        "save_model": lambda p: save_model(model, p),
        "checkpoint": lambda p: save_model(model, p, checkpoint={"epoch": 0}),
        "Model.save": model.save,
        "save_parameters": model.save_parameters,
    }


def test_saving_refuses_a_target_that_is_not_a_regular_file(tmp_path):
    files = special_files(tmp_path)
    model = small_model()
    for kind, path in files.items():
        if kind.startswith("symlink to /dev"):
            continue  # never write toward real devices, even to test a refusal
        before = os.lstat(path)
        for name, save in savers(model).items():
            with pytest.raises(ValueError, match="not a regular file") as excinfo:
                save(path)
            message = str(excinfo.value)
            assert not isinstance(excinfo.value, XpnnFileError)
            assert f"cannot save to {path}: it " in message, (kind, name, message)
            assert "nothing was written" in message
            assert KINDS[kind] in message
        after = os.lstat(path)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert sorted(os.listdir(tmp_path / "special")) == sorted(p.name for p in files.values())


def test_saving_refuses_names_that_are_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = small_model()
    X, y = spiral(10, 3)
    for path, words in (
        ("", "is an empty file name"),
        (f"model{os.sep}", "ends with a path separator"),
        (tmp_path, "is a directory"),
        ("a\0b", "holds a NUL character"),
    ):
        with pytest.raises(ValueError, match=words):
            model.save(path)
        with pytest.raises(ValueError, match=f"checkpoint: .*{words}"):
            model.train(X, y, checkpoint=path, verbose=False)
    with pytest.raises(ValueError, match="holds a NUL character"):
        model.save(os.fsencode(tmp_path / "a\0b"))
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OSError, match=r"cannot save .*loop: Too many levels"):
        model.save(tmp_path / "loop")
    with pytest.raises(ValueError, match=r"checkpoint: .*loop.*: Too many levels"):
        model.train(X, y, checkpoint=tmp_path / "loop", verbose=False)
    assert sorted(os.listdir(tmp_path)) == ["loop"] and model.optimizer.iterations == 0


def test_saving_through_a_symlink_to_nothing_yet_creates_the_file(tmp_path):
    link = tmp_path / "latest.xpnn"
    link.symlink_to(tmp_path / "run-1.xpnn")
    model = small_model()
    save_model(model, link)
    assert link.is_symlink() and (tmp_path / "run-1.xpnn").is_file()
    np.testing.assert_array_equal(flat(load_model(tmp_path / "run-1.xpnn"))[0], flat(model)[0])


def test_a_refused_save_changes_nothing_in_the_model(tmp_path, monkeypatch):
    """The target is checked before the state is gathered (on CuPy, gathering reseeds the
    Dropout generators): a refused save leaves them alone."""
    model = small_model()
    gathered = []
    monkeypatch.setattr(xpnn.io.checkpoints, "training_state", lambda *a: gathered.append(a))
    with pytest.raises(ValueError, match="a directory"):
        save_model(model, tmp_path, checkpoint={"epoch": 0})
    assert gathered == []


WRITE_FAILURES = {
    "disk full in write": ("write", errno.ENOSPC, OSError, "No space left on device"),
    "disk full in fsync": ("fsync", errno.ENOSPC, OSError, "No space left on device"),
    "quota in fsync": ("fsync", errno.EDQUOT, OSError, "quota"),
    "I/O error in close": ("close", errno.EIO, OSError, "Input/output error"),
    "permission in the folder": ("open", errno.EACCES, PermissionError, "Permission denied"),
    "read-only file system": ("open", errno.EROFS, OSError, "Read-only file system"),
    "rename refused": ("replace", errno.EPERM, PermissionError, "Operation not permitted"),
}


class FailingFile:
    """A temporary file whose ``write`` or ``close`` fails as a full or broken disk does."""

    def __init__(self, file, where, code):
        self.file, self.where, self.code = file, where, code

    def _fail(self):
        raise OSError(self.code, os.strerror(self.code))

    def write(self, data):
        if self.where == "write":
            self.file.write(data[: len(data) // 3])
            self._fail()
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        if self.where == "close" and exc[0] is None:
            self._fail()


@pytest.mark.parametrize("case", WRITE_FAILURES)
def test_write_errors_name_the_file_and_keep_the_old_one(tmp_path, monkeypatch, case):
    where, code, kind, words = WRITE_FAILURES[case]
    path = tmp_path / "model.xpnn"
    old = small_model(seed=1)
    save_model(old, path, checkpoint={"epoch": 1})
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), *(args[:1] if where != "fsync" else ()))

    if where in ("write", "close"):
        fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: FailingFile(fdopen(*a, **k), where, code))
    elif where == "open":
        real_open = os.open

        def open_fails_in_the_folder(name, flags, *args, **kwargs):
            if flags & os.O_CREAT and os.path.dirname(os.fsdecode(name)) == str(tmp_path):
                fail(name)
            return real_open(name, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_fails_in_the_folder)
    else:
        monkeypatch.setattr(os, where, fail)
    with pytest.raises(OSError) as excinfo:
        save_model(small_model(seed=2), path, checkpoint={"epoch": 2})
    monkeypatch.undo()
    error = excinfo.value
    assert isinstance(error, kind) and error.errno == code
    message = str(error)
    assert f"cannot save {path}: " in message and words.lower() in message.lower()
    assert ".tmp" not in message and "unchanged" in message
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left
    assert load_checkpoint(path)[1] == {"epoch": 1}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_folder_that_cannot_be_written_for_real():
    """/proc takes no new file, from root neither, whom its permissions (0o555) and os.access
    let write there: the refusal is the file system's own, as on a read-only mount."""
    folder = Path("/proc")
    path = folder / f"xpnn-test-{os.getpid()}"
    assert folder.is_dir() and not path.exists()
    if os.geteuid() == 0:
        assert os.access(folder, os.W_OK)  # what a check of the permissions alone believes
    with pytest.raises(OSError) as excinfo:
        save_model(small_model(), path)
    error = excinfo.value
    assert error.errno in (errno.ENOENT, errno.EACCES)  # root's answer, a user's
    message = str(error)
    assert f"cannot save {path}: {os.strerror(error.errno)}" in message
    assert ".tmp" not in message and "unchanged" in message
    X, y = spiral(10, 3)
    model = small_model()
    before = flat(model)
    with pytest.raises(
        ValueError, match=r"checkpoint: no file can be written in the folder '/proc'"
    ):
        model.train(X, y, epochs=2, checkpoint=path, verbose=False)
    assert_untouched(model, before)
    assert not path.exists()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_checks_saves_and_loads_leave_no_descriptor_open(tmp_path, monkeypatch):
    """Every path through them, the failing ones too, closes what it opened."""
    model = small_model()
    path, folder = tmp_path / "m.xpnn", tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "damaged").write_bytes(b"\0" * 100)
    save_model(model, path)
    real_open = os.open

    def read_only(name, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), name)
        return real_open(name, flags, *args, **kwargs)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before = open_descriptors()
    for _ in range(20):
        check_writable(path, "checkpoint")
        check_writable(tmp_path / "new.xpnn", "checkpoint")
        save_model(model, path)
        load_model(path)
        for refused in (folder, tmp_path / "no" / "m"):
            with pytest.raises(ValueError, match="checkpoint: "):
                check_writable(refused, "checkpoint")
        with pytest.raises(XpnnFileError):
            load_model(tmp_path / "damaged")
        with monkeypatch.context() as patch:
            patch.setattr(os, "open", read_only)
            with pytest.raises(ValueError, match="no file can be written"):
                check_writable(path, "checkpoint")
        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", full)
            with pytest.raises(OSError, match="No space left"):
                save_model(model, path)
    assert open_descriptors() == before
    assert sorted(os.listdir(tmp_path)) == ["damaged", "folder", "m.xpnn"]


NAME_MAX = 255  # bytes, on the file systems tests run on


@pytest.mark.parametrize(
    "name",
    [
        "a" * 237,
        "a" * 238,
        "b" * 254 + ".",
        "c" * NAME_MAX,
        "é" * 127,  # 254 bytes of UTF-8, a character cut by the shortening
        "x" + "€" * 84,  # 253 bytes
    ],
    ids=["237 bytes", "238 bytes", "255 bytes, a dot last", "255 bytes", "é", "€"],
)
def test_the_longest_file_names_can_be_saved(tmp_path, name):
    """The temporary file's name, which adds 18 bytes to the target's, is shortened to fit the
    folder, and stays unique there."""
    assert len(os.fsencode(name)) <= NAME_MAX
    path = tmp_path / name
    model = small_model()
    check_writable(path, "checkpoint")
    save_model(model, path, checkpoint={"epoch": 3})
    save_model(model, os.fsencode(path), checkpoint={"epoch": 4})  # over the file, as bytes
    assert load_checkpoint(path)[1] == {"epoch": 4}
    X, y = spiral(10, 3)
    model.train(X, y, epochs=1, checkpoint=path, verbose=False)
    assert load_checkpoint(path)[1] == {"epoch": 1}
    assert os.listdir(tmp_path) == [name]
    made = []
    for _ in range(3):
        fd, temporary = xpnn.files._create_temporary(str(tmp_path), name)
        os.close(fd)
        made.append(temporary)
    assert len(set(made)) == 3 and all(os.path.dirname(t) == str(tmp_path) for t in made)
    assert all(len(os.fsencode(os.path.basename(t))) <= NAME_MAX for t in made)
    assert all(os.path.basename(t).startswith(".") for t in made)


def test_a_name_longer_than_the_folder_takes_is_refused_before_writing(tmp_path):
    path = tmp_path / ("d" * (NAME_MAX + 1))
    with pytest.raises(OSError, match=f"cannot save {path}: File name too long") as excinfo:
        save_model(small_model(), path)
    assert excinfo.value.errno == errno.ENAMETOOLONG
    with pytest.raises(ValueError, match=r"checkpoint: .*File name too long"):
        small_model().train(*spiral(10, 3), checkpoint=path, verbose=False)
    assert os.listdir(tmp_path) == []


# -- train(checkpoint=...) checks its path before the first step ----------------------------


def assert_untouched(model, before):
    assert model.optimizer.iterations == 0 and model.epochs_trained == 0
    for a, b in zip(before, flat(model)):
        np.testing.assert_array_equal(a, b)


def test_train_refuses_a_checkpoint_path_it_cannot_write_before_the_first_step(tmp_path):
    X, y = spiral(20, 3)
    files = special_files(tmp_path)
    model = small_model()
    before = flat(model)
    for kind, path in files.items():
        with pytest.raises(ValueError, match="checkpoint: ") as excinfo:
            model.train(X, y, epochs=2, checkpoint=path, verbose=False)
        assert str(path) in str(excinfo.value) and "not a regular file" in str(excinfo.value)
        assert KINDS[kind] in str(excinfo.value)
    with pytest.raises(ValueError, match=r"checkpoint: the folder .* does not exist"):
        model.train(X, y, checkpoint=tmp_path / "no" / "c.xpnn", verbose=False)
    assert_untouched(model, before)


def test_train_probes_the_checkpoint_folder(tmp_path, monkeypatch):
    """Root passes os.access everywhere: a file is created in the folder and removed."""
    X, y = spiral(20, 3)
    model = small_model()
    before = flat(model)
    real_open = os.open

    def read_only(name, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.dirname(os.fsdecode(name)) == str(tmp_path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(
        ValueError, match=r"checkpoint: no file can be written in the folder .*Read-only"
    ):
        model.train(X, y, epochs=2, checkpoint=tmp_path / "c.xpnn", verbose=False)
    assert_untouched(model, before)
    monkeypatch.undo()
    model.train(X, y, epochs=1, checkpoint=tmp_path / "c.xpnn", verbose=False)
    assert os.listdir(tmp_path) == ["c.xpnn"]  # the probe left nothing behind


class Custom(xpnn.ReLU):
    """A layer of the user's own, which a file cannot name."""


def test_train_refuses_a_model_it_could_not_save_before_the_first_step(tmp_path):
    """A checkpoint that would fail epochs later fails before the first step instead."""
    X, y = spiral(20, 3)
    path = tmp_path / "c.xpnn"
    cases = {
        "a SeedSequence": (dict(set_seed=np.random.SeedSequence(5)), TypeError, "SeedSequence"),
        "a seed of 2**512": (dict(seed=2**512), ValueError, "below 2\\*\\*512"),
        "2**63 epochs": (dict(epochs_trained=2**63), ValueError, "epochs_trained=9223372036854"),
        "a layer of the user's": (
            dict(layer=Custom()),
            TypeError,
            "Custom is neither xpnn's own nor registered",
        ),
        "an MT19937 model.rng": (dict(rng="MT19937"), TypeError, "model.rng must be .* PCG64"),
    }
    for case, (change, error, words) in cases.items():
        model = xpnn.Model(seed=change.get("seed", 0))
        model.add(xpnn.Dense(2, 8))
        model.add(change.get("layer", xpnn.ReLU()))
        model.add(xpnn.Dense(8, 3))
        model.add(xpnn.Softmax())
        model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
        model.finalize()
        model.epochs_trained = change.get("epochs_trained", 0)
        if "set_seed" in change:  # refused by Model(seed=...): set by hand after
            model.seed = change["set_seed"]
        if "rng" in change:
            model.rng = np.random.Generator(np.random.MT19937(0))
        before = flat(model)
        with pytest.raises(error, match=f"checkpoint: the model cannot be saved: .*{words}"):
            model.train(X, y, epochs=3, checkpoint=path, verbose=False)
        assert model.optimizer.iterations == 0, case
        for a, b in zip(before, flat(model)):
            np.testing.assert_array_equal(a, b)
        assert not path.exists()
        history = model.train(X, y, epochs=2, verbose=False)  # without a checkpoint it trains
        assert len(history["epoch"]) == 2 and model.optimizer.iterations == 2, case
