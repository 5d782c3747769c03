"""Figures over data: the sums a step or a pass leaves on the device, read in one transfer,
and the passes without training (``evaluate``, ``predict``).

``Sums`` stay on the device until ``read_sums`` reads all of a report's at once: inside a step
nothing travels to the host.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import blas_threads, progress
from .._checks import positive_int
from ..backends import Backend, to_numpy

if TYPE_CHECKING:
    from ..building import ModelFace

__all__ = ["Sums", "count_correct", "evaluate", "predict", "read", "read_sums", "slices", "sums"]


@dataclasses.dataclass
class Sums:
    """Loss and accuracy figures over some data: 0-d device arrays until ``read_sums`` makes
    them Python floats.

    ``data_loss`` is the mean data loss, ``correct`` the right predictions among ``compared``
    (a host int), ``regularization`` the penalty (None for validation data, which takes the
    epoch's).
    """

    data_loss: Any
    correct: Any
    compared: int
    regularization: Any = None


#: The fields of ``Sums`` that live on the device, in the order they are read.
_ON_DEVICE = ("data_loss", "correct", "regularization")


def read(backend: Backend, arrays: list[Any]) -> list[float]:
    """0-d device arrays as Python floats, in one transfer to the host."""
    xp = backend.xp
    return to_numpy(xp.stack([xp.astype(a, xp.float64) for a in arrays])).tolist()


def read_sums(backend: Backend, sums: list[Sums]) -> list[Sums]:
    """``sums`` with their device figures read as Python floats, all in one transfer."""
    fields = [[name for name in _ON_DEVICE if getattr(s, name) is not None] for s in sums]
    values = iter(read(backend, [getattr(s, n) for s, names in zip(sums, fields) for n in names]))
    return [
        dataclasses.replace(s, **{name: next(values) for name in names})
        for s, names in zip(sums, fields)
    ]


def count_correct(model: ModelFace, output: Any, y: Any) -> tuple[Any, int]:
    """Right predictions in a batch (an integer, on the device) and how many were compared."""
    comparisons = model.accuracy.compare(model.layers[-1].predictions(output), y)
    return model.backend.xp.count_nonzero(comparisons), math.prod(comparisons.shape)


def slices(X: Any, y: Any, batch_size: int | None) -> Iterator[tuple[Any, Any]]:
    """``(X, y)`` in order, in batches of ``batch_size`` (None: all at once); y may be None."""
    samples = X.shape[0]
    size = samples if batch_size is None else positive_int(batch_size, "batch_size")
    for start in range(0, samples, size):
        stop = min(start + size, samples)
        yield X[start:stop, ...], None if y is None else y[start:stop, ...]


def sums(model: ModelFace, X: Any, y: Any, batch_size: int | None) -> Sums:
    """Mean data loss and right predictions over ``(X, y)``, left on the device."""
    backend, xp = model.backend, model.backend.xp
    loss_sum = backend.zeros(())
    correct, compared = backend.zeros((), backend.index_dtype), 0
    for batch_X, batch_y in slices(X, y, batch_size):
        output = model.forward(batch_X)
        loss_sum = loss_sum + xp.sum(model.loss.forward(output, batch_y))
        if model.accuracy is not None:
            right, count = count_correct(model, output, batch_y)
            correct, compared = correct + right, compared + count
    return Sums(loss_sum / X.shape[0], correct, compared)


def evaluate(
    model: ModelFace, X: Any, y: Any, batch_size: int | None, *, verbose: bool = False
) -> dict[str, float]:
    """``Model.evaluate`` over prepared ``(X, y)``: the figures, read in one transfer; with
    ``verbose``, the book's validation line too."""
    if batch_size is not None:  # before rows() reads it
        batch_size = positive_int(batch_size, "batch_size")
    with blas_threads.limited(model, blas_threads.rows(X, batch_size)):
        figures = sums(model, X, y, batch_size)
        figures.regularization = model.regularization_loss()
        (figures,) = read_sums(model.backend, [figures])
    if not math.isfinite(figures.data_loss):
        raise ValueError(
            f"X, y: the loss over these data is {figures.data_loss}: the model's computation "
            f"overflows {model.backend.dtype_name} on them; scale X (and y) to a smaller range"
        )
    result = {
        "loss": figures.data_loss + figures.regularization,
        "data_loss": figures.data_loss,
        "regularization_loss": figures.regularization,
    }
    if model.accuracy is not None:
        result["accuracy"] = figures.correct / figures.compared
    if verbose:
        print(progress.validation_line(result))
    return result


def predict(model: ModelFace, X: Any, batch_size: int | None) -> Any:
    """``Model.predict`` over prepared ``X``: the outputs, checked finite in one read."""
    xp = model.backend.xp
    if batch_size is not None:  # before rows() reads it
        batch_size = positive_int(batch_size, "batch_size")
    with blas_threads.limited(model, blas_threads.rows(X, batch_size)):
        outputs = [model.forward(batch_X) for batch_X, _ in slices(X, None, batch_size)]
    outputs = outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=0)
    if not read(model.backend, [xp.all(xp.isfinite(outputs))])[0]:  # one read per call
        raise ValueError(
            f"X: the model's outputs for it hold NaN or infinity: its computation overflows "
            f"{model.backend.dtype_name} on these inputs; scale X to a smaller range"
        )
    return outputs
