"""Nothing travels to the host inside a training step, nor for each epoch's validation: one read
per report, whatever the steps and epochs. Counted on array-api-strict and torch (every way
their arrays reach the host) and on the CuPy stand-in (every call that synchronises on a GPU):
conversions, printing and formatting, copies to the host, and results whose shape depends on
the data."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from helpers import dropout_model, seed_model, spiral

import xpnn

READS = ("to_device", "__float__", "__int__", "__bool__", "__index__", "__array__", "__dlpack__")
READS += ("__complex__", "__repr__", "__str__", "__format__", "__buffer__")
#: Functions whose output shape depends on the data: the device must be read to size it.
DATA_SHAPED = ("nonzero", "unique_all", "unique_counts", "unique_inverse", "unique_values")


#: Every way a torch tensor reaches the host (on a GPU, each waits for the device).
TORCH_READS = (*READS[1:], "item", "tolist", "numpy", "cpu", "__array_wrap__")


@pytest.fixture
def count_reads(backend, monkeypatch):
    """Count every way an array can reach the host (a CuPy synchronisation): on strict and torch
    through the array class and the namespace's functions, on the CuPy stand-in through its
    count of calls."""
    if backend == "cupy":
        cupy_api = sys.modules.get("cupy_api")
        if cupy_api is None or sys.modules.get("cupy") is not cupy_api._standin:
            pytest.skip("on a GPU, tests/gpu_sync.py checks this with cupyx.allow_synchronize")
        return Reads(cupy_api.syncs)
    if backend == "strict":
        import array_api_strict as xps
        from array_api_strict._array_object import Array

        namespace, host, names, is_mask = xps, xps.Device("CPU_DEVICE"), READS, xps.bool
    elif backend.startswith("torch"):
        import torch

        namespace = xpnn.get_backend(backend).xp
        Array, host, names, is_mask = torch.Tensor, None, TORCH_READS, torch.bool
    else:
        pytest.skip("NumPy arrays are on the host already")
    reads = Reads()

    def counting(original, name):
        def wrapper(self, *args, **kwargs):
            if self.device != host:  # leaving the stand-in for a GPU; torch: every read
                reads.count += 1
                reads.names.append(name)
            return original(self, *args, **kwargs)

        return wrapper

    for name in names:
        # strict: without its own __format__, format() calls __str__; torch's tensor methods
        # live on its base class
        if name in vars(Array) or (host is None and hasattr(Array, name)):
            monkeypatch.setattr(Array, name, counting(getattr(Array, name), name))
    getitem = Array.__getitem__

    def masked(self, key):
        keys = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, Array) and k.dtype == is_mask for k in keys):
            reads.count += 1
            reads.names.append("boolean mask")
        return getitem(self, key)

    monkeypatch.setattr(Array, "__getitem__", masked)
    for name in DATA_SHAPED:
        function = getattr(namespace, name)

        def data_shaped(x, *args, _function=function, _name=name, **kwargs):
            reads.count += 1
            reads.names.append(_name)
            return _function(x, *args, **kwargs)

        monkeypatch.setattr(namespace, name, data_shaped)
    return reads


class Reads:
    """A running count of host reads (``count``); on the stand-in, read from its counts."""

    def __init__(self, counted=None):
        self._counted, self._count, self.names = counted, 0, []

    @property
    def count(self) -> int:
        return self._counted() if self._counted is not None else self._count

    @count.setter
    def count(self, value: int) -> None:
        self._count = value


def _reads(backend, count_reads, epochs: int, print_every: int, validation: bool) -> int:
    X, y = spiral(100, 3)
    model = (dropout_model if validation else seed_model)(backend)  # with Dropout too
    before = count_reads.count
    history = model.train(
        X,
        y,
        epochs=epochs,
        batch_size=32,  # 10 steps per epoch
        print_every=print_every,
        validation_data=(X[::3], y[::3]) if validation else None,
        verbose=False,
    )
    reads = count_reads.count - before
    if validation:  # validated every epoch, read at the reports with the epochs' own figures
        assert not any(math.isnan(v) for v in history["val_loss"])
    return reads


@pytest.mark.parametrize("validation", [False, True], ids=["train", "dropout-with-validation"])
def test_one_host_read_per_report(backend, count_reads, validation):
    short = _reads(backend, count_reads, epochs=4, print_every=2, validation=validation)
    long = _reads(backend, count_reads, epochs=12, print_every=2, validation=validation)
    assert long - short == 4, count_reads.names  # 80 more steps, 4 more reports: one read each
    fewer = _reads(backend, count_reads, epochs=12, print_every=6, validation=validation)
    assert fewer == short, count_reads.names


@pytest.mark.parametrize(
    "read",
    [
        lambda x, xp: repr(x),
        lambda x, xp: str(x),
        lambda x, xp: f"{x}",
        lambda x, xp: complex(x),
        lambda x, xp: float(x),
        lambda x, xp: bool(x > 0),
        lambda x, xp: xp.reshape(x, (1,))[xp.reshape(x, (1,)) > 0],
        lambda x, xp: xp.nonzero(xp.reshape(x, (1,)) > 0),
    ],
    ids=["repr", "str", "f-string", "complex", "float", "bool", "mask", "nonzero"],
)
def test_every_kind_of_read_is_counted(backend, count_reads, read):
    """Each way to the host counts (what the run above would not notice otherwise)."""
    be = xpnn.get_backend(backend)
    x = be.asarray(np.ones(()))
    before = count_reads.count
    read(x, be.xp)
    assert count_reads.count > before


@pytest.mark.filterwarnings("ignore:cupyx.allow_synchronize will be removed")
def test_no_synchronisation_inside_an_epoch_on_a_gpu(backend, monkeypatch):
    """On a real GPU, CuPy itself refuses a synchronisation inside the training steps (CuPy
    detects those of its own calls: ``.get()``, conversions, copies to the host)."""
    if backend != "cupy" or "cupy_api" in sys.modules:
        pytest.skip("needs CuPy on a real GPU (cupyx.allow_synchronize)")
    import cupyx

    from xpnn import training

    epoch = training.Trainer.epoch

    def without_synchronising(self, *args, **kwargs):
        with cupyx.allow_synchronize(False):
            return epoch(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "epoch", without_synchronising)
    X, y = spiral(100, 3)
    for model in (seed_model(backend, seed=0), dropout_model(backend)):
        history = model.train(X, y, epochs=3, batch_size=32, shuffle=False, verbose=False)
        assert len(history["loss"]) == 3
