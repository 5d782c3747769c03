"""A model's summary: its layers, their output widths and parameter counts, as a text table."""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .building import ModelFace
    from .progress import Note

__all__ = ["SummaryText", "label", "table"]


class SummaryText(str):
    """The table ``Model.summary`` printed, as a str: Jupyter and IPython show nothing more when
    it is a cell's last value (the printed table is shown once, not again as an escaped
    string). ``print`` it to show it again."""

    def _ipython_display_(self) -> None:
        """Show nothing: the table was printed when made."""


def table(model: ModelFace, note: Note | None = None) -> str:
    """The table ``Model.summary`` prints: one row per layer (its number and ``label``, output
    width, parameter count), then the totals, the backend and the dtype (with ``note``, why
    ``backend="auto"`` chose it, if not said yet), and the parts set (each ``repr``, every
    setting)."""
    rows = [("#", "Layer", "Output width", "Parameters")]
    width = model.n_inputs
    total = 0
    for number, layer in enumerate(model.layers, 1):
        width = _output_width(layer, width)
        count = sum(math.prod(getattr(layer, p).shape) for _, p, _ in layer.parameter_names)
        total += count
        rows.append((str(number), label(layer), "?" if width is None else str(width), f"{count:,}"))
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


def label(part: Any) -> str:
    """``part``'s class and the settings that differ from their defaults, as scikit-learn's
    ``print_changed_only`` shows an estimator; required settings by value while they come
    first, as the book writes them: ``Dense(2, 64, weight_regularizer_l2=0.0005)``. A row of
    the summary stays readable; ``repr(part)`` shows every setting."""
    parameters = inspect.signature(type(part).__init__).parameters
    shown, in_order = [], True
    for name, value in part.config().items():
        value = value.item() if isinstance(value, np.generic) else value
        parameter = parameters[name]
        if parameter.default is inspect.Parameter.empty:
            in_order = in_order and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            shown.append(repr(value) if in_order else f"{name}={value!r}")
            continue
        in_order = False
        if not _is_default(value, parameter.default):
            shown.append(f"{name}={value!r}")
    return f"{type(part).__name__}({', '.join(shown)})"


def _is_default(value: Any, default: Any) -> bool:
    if isinstance(value, bool) != isinstance(default, bool):  # True == 1, yet not the same
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # a setting without a plain comparison: shown
        return False


def _output_width(layer: Any, width: int | None) -> int | None:
    """How many outputs ``layer`` gives, as its ``widths`` says, else as many as it takes."""
    try:
        given = type(layer).widths(**layer.config())[1]
    except (KeyError, TypeError, ValueError):  # a layer of one's own may not say
        return width
    return given if isinstance(given, int) else width


def _size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    if nbytes < 1024**2:
        return f"{nbytes / 1024:.2f} KiB"
    return f"{nbytes / 1024**2:.2f} MiB"


def _count(n: int | None, noun: str) -> str:
    return f"{'?' if n is None else n} {noun}{'' if n == 1 else 's'}"
