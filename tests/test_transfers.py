"""Nothing travels to the host inside a training step, nor for each epoch's validation: one read
per report, whatever the steps and epochs."""

from __future__ import annotations

import math

import pytest
from helpers import seed_model, spiral

READS = ("to_device", "__float__", "__int__", "__bool__", "__index__", "__array__", "__dlpack__")
#: Every way a torch tensor reaches the host (on a GPU, each waits for the device).
TORCH_READS = (
    *READS[1:], "__format__", "item", "tolist", "numpy", "cpu", "__array_wrap__", "__repr__",
)  # fmt: skip


@pytest.fixture
def count_reads(monkeypatch, backend):
    """Count every way an array-api-strict array (a CuPy synchronisation), or a torch tensor,
    can reach the host."""
    if backend == "strict":
        import array_api_strict as xps
        from array_api_strict._array_object import Array

        host, names = xps.Device("CPU_DEVICE"), READS
    elif backend.startswith("torch"):
        import torch

        Array, host, names = torch.Tensor, None, TORCH_READS
    else:
        pytest.skip("counts reads through array-api-strict's and torch's array classes")
    counts = {"reads": 0}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            counts["reads"] += self.device != host  # leaving the stand-in for a GPU
            return original(self, *args, **kwargs)

        return wrapper

    for name in names:
        monkeypatch.setattr(Array, name, counting(getattr(Array, name)))
    return counts


def _reads(backend, count_reads, epochs: int, print_every: int, validation: bool) -> int:
    X, y = spiral(100, 3)
    model = seed_model(backend, seed=0)
    before = count_reads["reads"]
    history = model.train(
        X,
        y,
        epochs=epochs,
        batch_size=32,  # 10 steps per epoch
        print_every=print_every,
        validation_data=(X[::3], y[::3]) if validation else None,
        verbose=False,
    )
    reads = count_reads["reads"] - before
    if validation:  # validated every epoch, read at the reports with the epochs' own figures
        assert not any(math.isnan(v) for v in history["val_loss"])
    return reads


@pytest.mark.parametrize("validation", [False, True], ids=["train", "with-validation"])
def test_one_host_read_per_report(backend, count_reads, validation):
    short = _reads(backend, count_reads, 4, print_every=2, validation=validation)  # 2 reports
    long = _reads(backend, count_reads, 12, print_every=2, validation=validation)  # 6 reports
    assert long - short == 4  # 80 more steps, 4 more reports: one read each
    fewer = _reads(backend, count_reads, 12, print_every=6, validation=validation)  # 2 reports
    assert fewer == short
