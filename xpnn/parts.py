"""The registry of model parts: xpnn's own layers, losses, optimizers and metrics, and the
user's classes admitted with ``register``.

Saving names each part by its class name; loading builds only a class found here by that name,
so a file never names code to import or run. Adding a part to xpnn is one module and one line
in ``OWN``; tests/test_parts.py fails for an exported part that is missing here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TypeVar

from .activations import LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .layers import Dense, Dropout, Layer
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SoftmaxCategoricalCrossentropy,
)
from .metrics import Accuracy, CategoricalAccuracy, RegressionAccuracy
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["BASES", "COMBINED", "KINDS", "OWN", "classes", "kind_of", "register", "unregister"]

#: Each kind of part by the base class its classes derive from.
BASES: dict[str, type] = {
    "layer": Layer,
    "loss": Loss,
    "optimizer": Optimizer,
    "metric": Accuracy,
}
KINDS = tuple(BASES)

#: xpnn's own parts, by kind: what a file may name besides the registered classes.
OWN: dict[str, tuple[type, ...]] = {
    "layer": (Dense, Dropout, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh),
    "loss": (BinaryCrossentropy, CategoricalCrossentropy, MeanAbsoluteError, MeanSquaredError),
    "optimizer": (SGD, Adagrad, Adam, AdamW, RMSprop),
    "metric": (CategoricalAccuracy, RegressionAccuracy),
}
#: Own parts a model makes itself and a file never names: the model combines Softmax with
#: CategoricalCrossentropy (a file names those two). Their names are taken all the same.
COMBINED: tuple[type, ...] = (SoftmaxCategoricalCrossentropy,)

_own_names = {cls.__name__: cls for classes in OWN.values() for cls in (*classes, *COMBINED)}
_registered: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
_lock = threading.Lock()

P = TypeVar("P", bound=type)


def kind_of(cls: type) -> str | None:
    """The kind of part ``cls`` is ("layer", "loss", "optimizer", "metric"), or None."""
    if isinstance(cls, type):
        for kind, base in BASES.items():
            if issubclass(cls, base) and cls is not base:
                return kind
    return None


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: P) -> P:
    """Admit a user's layer, loss, optimizer or metric to saving and loading by its class name;
    ``cls`` itself back, so it serves as a decorator (``@xpnn.register``).

    Its settings are its constructor's arguments, each kept as an attribute of that name (as
    ``config()`` reads them), and must be numbers, strings, booleans or None. ``Model.load``
    builds the class from the name a file gives, once it is registered in that process.
    TypeError for what is not a part; ValueError for a name that one of xpnn's own parts or
    another registered class has (a class defined again in the same module, as a re-run
    notebook cell does, takes its place).
    """
    kind = kind_of(cls)
    if kind is None:
        raise TypeError(
            f"register takes a class derived from xpnn.Layer, xpnn.Loss, xpnn.Optimizer or "
            f"xpnn.Accuracy; got {cls!r:.80}"
        )
    name = cls.__name__
    trainable = kind == "layer" and bool(getattr(cls, "parameter_names", ()))
    if trainable and "parameter_shapes" not in _defined(cls):
        raise TypeError(
            f"register: layer {name} has parameters (parameter_names) but no classmethod "
            f"parameter_shapes(**settings), which loading needs to check a file's arrays"
        )
    with _lock:
        own = _own_names.get(name)
        if own is not None:
            raise ValueError(
                f"cannot register {_where(cls)}: {name} is the name of xpnn's own "
                f"{_where(own)}; give your class another name"
            )
        for taken in _registered.values():
            other = taken.get(name)
            if other is not None and other is not cls and _where(other) != _where(cls):
                raise ValueError(
                    f"cannot register {_where(cls)}: {name} is already registered for "
                    f"{_where(other)}; give one of them another name, or unregister it first"
                )
            taken.pop(name, None)
        _registered[kind][name] = cls
    return cls


def _defined(cls: type) -> set[str]:
    """The names ``cls`` or a base below xpnn's ``Layer`` defines."""
    return {name for c in cls.__mro__[: cls.__mro__.index(Layer)] for name in vars(c)}


def unregister(cls: type) -> None:
    """Withdraw a class that ``register`` admitted (a no-op for one it did not)."""
    name = getattr(cls, "__name__", None)
    with _lock:
        for taken in _registered.values():
            if isinstance(name, str) and taken.get(name) is cls:
                del taken[name]


class _Classes(Mapping[str, type]):
    """One kind's classes by name, own and registered, as they stand when it is read."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.own = {cls.__name__: cls for cls in OWN[kind]}

    def __getitem__(self, name: str) -> type:
        own = self.own.get(name)
        return own if own is not None else _registered[self.kind][name]

    def __iter__(self) -> Iterator[str]:
        with _lock:
            return iter([*self.own, *_registered[self.kind]])

    def __len__(self) -> int:
        return len(self.own) + len(_registered[self.kind])


def classes(kind: str) -> Mapping[str, type]:
    """The classes a file may name for a part of ``kind``, by name: xpnn's own and those
    registered (a live view, which sees later registrations)."""
    return _CLASSES[kind]


_CLASSES = {kind: _Classes(kind) for kind in KINDS}
