"""A model's summary: its layers, their output widths and parameter counts, as a text table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Model
    from .progress import Note

__all__ = ["SummaryText", "table"]


class SummaryText(str):
    """The table ``Model.summary`` printed, as a str: Jupyter and IPython show nothing more when
    it is a cell's last value (the printed table is shown once, not again as an escaped
    string). ``print`` it to show it again."""

    def _ipython_display_(self) -> None:
        """Show nothing: the table was printed when made."""


def table(model: Model, note: Note | None = None) -> str:
    """The table ``Model.summary`` prints: one row per layer (its number and repr, output width,
    parameter count), then the totals, the backend and the dtype (with ``note``, why
    ``backend="auto"`` chose it, if not said yet), and the parts set."""
    rows = [("#", "Layer", "Output width", "Parameters")]
    width = model.n_inputs
    total = 0
    for number, layer in enumerate(model.layers, 1):
        width = getattr(layer, "n_neurons", width)
        count = sum(math.prod(getattr(layer, p).shape) for _, p, _ in layer.parameter_names)
        total += count
        rows.append((str(number), repr(layer), "?" if width is None else str(width), f"{count:,}"))
    sizes = [max(len(row[i]) for row in rows) for i in range(4)]
    aligned = [
        "  ".join(
            cell.rjust(size) if i in (0, 3) else cell.ljust(size)
            for i, (cell, size) in enumerate(zip(row, sizes))
        ).rstrip()
        for row in rows
    ]
    rule = "=" * max(len(line) for line in aligned)
    backend = model.backend
    itemsize = 8 if backend.dtype_name == "float64" else 4
    where = f"{backend.name} ({backend.device})"
    chosen = None if note is None else note.take()  # here, or with the first progress shown
    if chosen is not None:
        where += f", chosen by backend='auto': {chosen}"
    lines = [
        f"Model: {_count(len(model.layers), 'layer')}, {_count(model.n_inputs, 'input')}",
        rule,
        aligned[0],
        rule,
        *aligned[1:],
        rule,
        f"Total parameters: {total:,} ({_size(total * itemsize)})",
        f"Backend: {where}",
        f"Dtype: {backend.dtype_name}",
    ]
    for name, part in (("Loss", model.loss), ("Optimizer", model.optimizer)):
        if part is not None:
            lines.append(f"{name}: {part!r}")
    if model.accuracy is not None:
        lines.append(f"Accuracy: {model.accuracy!r}")
    if model.network is None:
        lines.append("Not finalized yet: the parameters are drawn again by finalize()")
    return "\n".join(lines)


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    if nbytes < 1024**2:
        return f"{nbytes / 1024:.2f} KiB"
    return f"{nbytes / 1024**2:.2f} MiB"


def _count(n: int | None, noun: str) -> str:
    return f"{'?' if n is None else n} {noun}{'' if n == 1 else 's'}"
