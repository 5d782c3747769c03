"""How training shows its progress: a bar, the book's lines, or nothing."""

from __future__ import annotations

import math
import sys
from typing import Any

from ._checks import shown
from .history import History

MODES = ("bar", "lines")


class Note:
    """A line said once, with the first progress or summary shown: why ``backend="auto"``
    chose as it did. ``text`` is None once taken (or if there is nothing to say)."""

    def __init__(self, text: str | None = None) -> None:
        self.text = text

    def take(self) -> str | None:
        """The text, and None from then on."""
        text, self.text = self.text, None
        return text


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where tqdm's notebook bar shows."""
    ipython = sys.modules.get("IPython")
    if ipython is None:  # never imported: not in IPython, and not worth importing to ask
        return False
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def mode(verbose: Any) -> str | None:
    """The display for ``verbose``: True picks a bar on a terminal or in a notebook, and lines
    elsewhere (logs, CI); "bar" or "lines" choose; False shows nothing."""
    if verbose is False or verbose is None or verbose == 0:
        return None
    if verbose is True or verbose == 1:
        return "bar" if sys.stdout.isatty() or in_notebook() else "lines"
    if verbose in MODES:
        return str(verbose)
    raise ValueError(f"verbose must be True, False, 'bar' or 'lines'; got {shown(verbose)}")


def number(value: float) -> str:
    """A loss as the book prints it, three decimals, unless that would hide it: below 0.1 it
    gets three significant digits (``0.0523``, ``8.7e-05``), so a small loss never reads 0.000."""
    if value == 0 or not math.isfinite(value) or abs(value) >= 0.1:
        return f"{value:.3f}"
    return f"{value:.3g}"


def figures(accuracy: float, loss: float) -> str:
    """``acc: ..., loss: ...``; without ``acc`` where there is no metric (NaN)."""
    text = f"loss: {number(loss)}"
    return text if math.isnan(accuracy) else f"acc: {accuracy:.3f}, {text}"


def line(history: History, regularized: bool) -> str:
    """The book's report line for the last epoch of ``history``."""
    last = {name: values[-1] for name, values in history.history.items()}
    text = f"epoch: {last['epoch']}, {figures(last['accuracy'], last['loss'])}"
    if regularized:
        text += (
            f" (data_loss: {number(last['data_loss'])}, "
            f"reg_loss: {number(last['regularization_loss'])})"
        )
    text += f", lr: {last['learning_rate']:.6g}"
    if not math.isnan(last["val_loss"]):
        text += f", validation {figures(last['val_accuracy'], last['val_loss'])}"
    return text


def validation_line(result: dict[str, float]) -> str:
    """The book's line after ``evaluate``: ``validation, acc: ..., loss: ...``."""
    return f"validation, {figures(result.get('accuracy', math.nan), result['loss'])}"


def bar_class() -> Any:
    """tqdm's notebook bar (a widget) in Jupyter where ipywidgets is installed, else its text
    bar."""
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401  (what the notebook bar draws with)
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


class Progress:
    """Shows a run: a tqdm bar over the epochs, with the figures of the last report, or one
    line per report. Nothing here reads the device: it shows what the reports read."""

    def __init__(self, display: str | None, first: int, last: int, header: str) -> None:
        self.display = display
        self.bar = None
        if display == "lines":
            print(header)
        elif display == "bar":
            self.bar = bar_class()(total=last - first + 1, initial=0, unit="epoch", desc="xpnn")
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
            shown = {
                "loss": history["loss"][-1],
                "acc": history["accuracy"][-1],
                "val_loss": history["val_loss"][-1],
                "val_acc": history["val_accuracy"][-1],
            }
            self.bar.set_postfix(
                {k: f"{v:.4g}" for k, v in shown.items() if not math.isnan(v)}, refresh=False
            )

    def message(self, text: str) -> None:
        """A line of text that does not disturb the bar."""
        if self.bar is not None:
            self.bar.write(text)
        elif self.display == "lines":
            print(text)

    def notice(self, text: str) -> None:
        """A line beside the run's output (on stderr), not part of its reports."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.display == "lines":
            print(text, file=sys.stderr)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
