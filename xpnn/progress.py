"""How training shows its progress: a bar, the book's lines, or nothing."""

from __future__ import annotations

import math
import sys
from typing import Any

from .history import History

MODES = ("bar", "lines")


def mode(verbose: Any) -> str | None:
    """The display for ``verbose``: True picks a bar on a terminal and lines elsewhere (logs,
    CI, saved notebook output); "bar" or "lines" choose; False shows nothing."""
    if verbose is False or verbose is None or verbose == 0:
        return None
    if verbose is True or verbose == 1:
        return "bar" if sys.stdout.isatty() else "lines"
    if verbose in MODES:
        return verbose
    raise ValueError(f"verbose must be True, False, 'bar' or 'lines'; got {verbose!r}")


def line(history: History, regularized: bool) -> str:
    """The book's report line for the last epoch of ``history``."""
    last = {name: values[-1] for name, values in history.history.items()}
    text = f"epoch: {last['epoch']}, acc: {last['accuracy']:.3f}, loss: {last['loss']:.3f}"
    if regularized:
        text += (
            f" (data_loss: {last['data_loss']:.3f}, reg_loss: {last['regularization_loss']:.3f})"
        )
    text += f", lr: {last['learning_rate']:.6g}"
    if not math.isnan(last["val_loss"]):
        text += f", validation acc: {last['val_accuracy']:.3f}, loss: {last['val_loss']:.3f}"
    return text


class Progress:
    """Shows a run: a tqdm bar over the epochs, with the figures of the last report, or one
    line per report. Nothing here reads the device: it shows what the reports read."""

    def __init__(self, display: str | None, first: int, last: int, header: str) -> None:
        self.display = display
        self.bar = None
        if display == "lines":
            print(header)
        elif display == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=last - first + 1, initial=0, unit="epoch", desc="xpnn")
            self.bar.write(header)

    def epoch(self) -> None:
        """One more epoch done."""
        if self.bar is not None:
            self.bar.update(1)

    def report(self, history: History, regularized: bool) -> None:
        """Show the figures just read."""
        if self.display == "lines":
            print(line(history, regularized))
        elif self.bar is not None:
            figures = {"loss": history["loss"][-1], "acc": history["accuracy"][-1]}
            if not math.isnan(history["val_loss"][-1]):
                figures["val_loss"] = history["val_loss"][-1]
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in figures.items()}, refresh=False)

    def message(self, text: str) -> None:
        """A line of text that does not disturb the bar."""
        if self.bar is not None:
            self.bar.write(text)
        elif self.display == "lines":
            print(text)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
