"""History: the per-epoch figures of a training run, and their plot."""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._checks import shown

__all__ = ["History"]

NAMES = (
    "epoch",
    "loss",
    "data_loss",
    "regularization_loss",
    "accuracy",
    "learning_rate",
    "val_loss",
    "val_data_loss",
    "val_accuracy",
    "seconds",
)


class History:
    """Per-epoch figures of a run: ``history["loss"][i]`` belongs to ``history["epoch"][i]``.

    ``loss`` is ``data_loss + regularization_loss``; ``seconds`` is the time since ``train``
    began. Validation figures are NaN on the epochs where validation did not run.

    Examples:
        >>> history = History()
        >>> history.append(epoch=1, loss=0.75, accuracy=0.5)
        >>> history.append(epoch=2, loss=0.5, accuracy=0.625)
        >>> len(history), history["loss"]
        (2, [0.75, 0.5])
        >>> history["val_loss"]  # no validation: NaN
        [nan, nan]
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {name: [] for name in NAMES}

    def append(self, **figures: float) -> None:
        """Add one epoch; names not given are NaN. An unknown name, or a figure that is not a
        real number, is refused before anything is added."""
        unknown = sorted(set(figures) - set(NAMES))
        if unknown:
            raise ValueError(f"History has no figure {unknown}; it keeps {list(NAMES)}")
        for name, value in figures.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number; got {shown(value)}")
        for name, values in self.history.items():
            values.append(figures.get(name, math.nan))

    def __getitem__(self, name: str) -> list[float]:
        try:
            return self.history[name]
        except (KeyError, TypeError):
            raise KeyError(f"History has no figure {name!r}; it keeps {list(NAMES)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.history

    def __iter__(self) -> Iterator[str]:
        """The figures' names, as a dict's keys."""
        return iter(self.history)

    def __len__(self) -> int:
        return len(self.history["epoch"])

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v and not math.isnan(v[-1])}
        return f"History({len(self)} epochs, last={last})"

    def plot(self, path: str | Path | None = None, *, title: str | None = None) -> Any:
        """The loss, accuracy and learning-rate curves: written to ``path`` as a PNG (and the
        path returned), or, without a path, the matplotlib Figure, which a notebook shows inline.

        The figure is made without pyplot, so it neither changes matplotlib's backend nor
        stays open in pyplot, and a notebook shows it once, as a PNG, with no
        ``%matplotlib inline``. ``title`` goes above the three panels. Needs matplotlib
        (``pip install "xpnn[plot]"``).
        """
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError as error:
            raise ImportError('History.plot needs matplotlib: pip install "xpnn[plot]"') from error
        if not len(self):
            raise ValueError("the history is empty: there is nothing to plot")
        if path is not None:
            path = _png_path(path)
        epochs = self.history["epoch"]
        panels: list[tuple[str, list[tuple[str, str | None]]]] = [
            ("loss", [("loss", "training"), ("val_loss", "validation")]),
            ("accuracy", [("accuracy", "training"), ("val_accuracy", "validation")]),
            ("learning rate", [("learning_rate", None)]),
        ]
        figure = _notebook_figure(Figure)(figsize=(13, 3.8))
        axes = figure.subplots(1, 3)
        for axis, (panel, curves) in zip(axes, panels):
            for name, label in curves:
                points = [(e, v) for e, v in zip(epochs, self.history[name]) if not math.isnan(v)]
                if points:
                    xs, ys = zip(*points)
                    axis.plot(xs, ys, marker="o" if len(points) < 30 else None, label=label)
            axis.set_title(panel)
            axis.set_xlabel("epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # no epoch 0.5
            axis.grid(alpha=0.3)
            if any(label for _, label in curves) and axis.get_legend_handles_labels()[0]:
                axis.legend()
        if title is not None:
            figure.suptitle(title)
        figure.tight_layout()
        if path is None:
            return figure
        figure.savefig(path, dpi=100)
        return path

    def as_dict(self) -> dict[str, list[Any]]:
        """The figures as a plain dict of lists (copies)."""
        return {name: list(values) for name, values in self.history.items()}


@functools.cache
def _notebook_figure(figure_class: type) -> type:
    """A Figure subclass that Jupyter shows as a PNG (``_repr_png_``) without pyplot's inline
    backend, which only registers its display for figures once pyplot is imported."""

    class HistoryFigure(figure_class):  # type: ignore[misc]
        """A matplotlib Figure that a notebook shows as a PNG."""

        def _repr_png_(self) -> bytes:
            from io import BytesIO

            buffer = BytesIO()
            self.savefig(buffer, format="png", dpi=100)
            return buffer.getvalue()

    return HistoryFigure


def _png_path(path: str | Path) -> Path:
    """Where ``plot`` writes: ``path``, with ``.png`` added where it has no suffix (as
    matplotlib adds it); an error naming ``path`` where no file can be written there."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path; got {shown(path)}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder: give a file name, such as curves.png")
    if not path.suffix:
        path = path.with_suffix(".png")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"path {str(path)!r}: the folder {str(path.parent)!r} does not exist"
        )
    return path
