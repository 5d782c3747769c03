"""The parameters of the scikit-learn estimators (``xpnn.sklearn``): their names and checks.

Every error names the estimator and its own parameter (``MLPClassifier alpha ...``), never the
shared base class or a setting of the layers and optimizer the estimator builds from it. Needs
only NumPy: scikit-learn comes in with ``xpnn.sklearn``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np

from ._checks import shown
from .activations import Linear, ReLU, Sigmoid, Tanh
from .backends import check_backend_name
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

#: scikit-learn's activation names and the xpnn layer of each.
ACTIVATIONS = {"identity": Linear, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}

#: The ``optimizer`` names; "sgd" carries momentum 0.9, scikit-learn's default for its SGD.
OPTIMIZERS = {
    "adam": lambda lr, decay: Adam(learning_rate=lr, decay=decay),
    "sgd": lambda lr, decay: SGD(learning_rate=lr, decay=decay, momentum=0.9),
    "rmsprop": lambda lr, decay: RMSprop(learning_rate=lr, decay=decay),
    "adagrad": lambda lr, decay: Adagrad(learning_rate=lr, decay=decay),
    "adamw": lambda lr, decay: AdamW(learning_rate=lr, decay=decay),
}

#: scikit-learn's MLP parameters that these estimators lack, and what to use instead.
NOT_HERE = {
    "tol": "every epoch runs unless early_stopping ends the fit",
    "solver": "optimizer= picks 'adam', 'sgd', 'rmsprop', 'adagrad' or 'adamw'; no 'lbfgs'",
    "momentum": "optimizer='sgd' has momentum 0.9",
    "nesterovs_momentum": "optimizer='sgd' has momentum 0.9, not Nesterov's",
    "learning_rate": "learning_rate_init= sets the rate and decay= lowers it as training goes",
    "power_t": "decay= lowers the rate as lr / (1 + decay * step)",
    "warm_start": "partial_fit trains the fitted network on",
    "beta_1": "Adam's betas are fixed at 0.9 and 0.999",
    "beta_2": "Adam's betas are fixed at 0.9 and 0.999",
    "epsilon": "Adam's epsilon is fixed at 1e-7",
    "max_fun": "there is no 'lbfgs' solver",
}


def refuse_arguments(cls: type, args: tuple, kwargs: dict[str, Any]) -> None:
    """A TypeError naming the estimator ``cls`` where ``args`` and ``kwargs`` do not fit its
    parameters, with a word on scikit-learn's parameters that it lacks."""
    signature = inspect.signature(cls.__init__)
    try:
        signature.bind(None, *args, **kwargs)
    except TypeError as error:
        names = list(signature.parameters)[1:]
        unknown = [name for name in kwargs if name not in names]
        if not unknown:
            raise TypeError(f"{cls.__name__}(): {error}") from None
        lacks = ", ".join(
            f"{name!r} ({NOT_HERE[name]})" if name in NOT_HERE else repr(name) for name in unknown
        )
        raise TypeError(
            f"{cls.__name__} has no parameter{'s' if len(unknown) > 1 else ''} {lacks}; its "
            f"parameters are {', '.join(names)}"
        ) from None


def hidden_sizes(estimator: Any) -> tuple[int, ...]:
    """``hidden_layer_sizes`` as a tuple of widths, or a ValueError naming it."""
    sizes = estimator.hidden_layer_sizes
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        sizes = None
    if sizes is None or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise ValueError(
            f"{type(estimator).__name__} hidden_layer_sizes must be a positive integer or a "
            f"sequence of them (the width of each hidden layer); got "
            f"{estimator.hidden_layer_sizes!r}"
        )
    return tuple(int(s) for s in sizes)


def check(estimator: Any) -> None:
    """Refuse a bad parameter of ``estimator``, naming the estimator and the parameter."""
    owner = type(estimator).__name__

    def number(name: str, low: float, high: float = math.inf, *, open_low: bool = False) -> None:
        value = getattr(estimator, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{owner} {name} must be a real number; got {shown(value)}")
        too_low = value <= low if open_low else value < low
        if not math.isfinite(value) or too_low or value >= high:
            interval = f"{'(' if open_low else '['}{low:g}, {high:g})"
            raise ValueError(
                f"{owner} {name} must be a finite number in {interval}; got {shown(value)}"
            )

    def integer(name: str, extra: str = "") -> None:
        value = getattr(estimator, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(
                f"{owner} {name} must be a positive integer{extra}; got {shown(value)}"
            )

    def choice(name: str, choices: Any) -> None:
        value = getattr(estimator, name)
        if not isinstance(value, str) or value not in choices:
            raise ValueError(
                f"{owner} {name} must be one of {', '.join(map(repr, choices))}; got {shown(value)}"
            )

    def flag(name: str) -> None:
        if not isinstance(getattr(estimator, name), (bool, np.bool_)):
            raise TypeError(
                f"{owner} {name} must be True or False; got {getattr(estimator, name)!r}"
            )

    hidden_sizes(estimator)
    choice("activation", tuple(ACTIVATIONS))
    number("alpha", 0.0)
    if not (isinstance(estimator.batch_size, str) and estimator.batch_size == "auto"):
        integer("batch_size", " or 'auto'")
    number("learning_rate_init", 0.0, open_low=True)
    integer("max_iter")
    flag("shuffle")
    flag("early_stopping")
    number("validation_fraction", 0.0, 1.0, open_low=True)
    integer("n_iter_no_change")
    if not isinstance(estimator.verbose, (numbers.Integral, np.bool_)):
        raise TypeError(
            f"{owner} verbose must be True, False or an integer; got {shown(estimator.verbose)}"
        )
    choice("optimizer", tuple(OPTIMIZERS))
    number("decay", 0.0)
    number("dropout", 0.0, 1.0)
    try:
        check_backend_name(estimator.backend)  # "torch:<device>" too
    except ValueError as error:
        raise ValueError(f"{owner} {error}") from None
    fixed_dtype(estimator)
    seed = estimator.random_state
    if not (
        seed is None
        or isinstance(seed, np.random.RandomState)
        or (isinstance(seed, numbers.Integral) and 0 <= seed < 2**32)
    ):
        raise ValueError(
            f"{owner} random_state must be None, an integer in [0, 2**32 - 1] or a "
            f"numpy.random.RandomState; got {shown(seed)}"
        )


def fixed_dtype(estimator: Any) -> str | None:
    """``dtype`` as NumPy names it, or None where it follows the input."""
    if estimator.dtype is None:
        return None
    try:
        name = np.dtype(estimator.dtype).name
    except TypeError:
        name = None
    if name not in ("float32", "float64"):
        raise ValueError(
            f"{type(estimator).__name__} dtype must be None (the input's: float32 stays "
            f"float32, anything else float64), 'float32' or 'float64'; got {shown(estimator.dtype)}"
        )
    return name


def check_in_dtype(estimator: Any, dtype: str, batch: int) -> None:
    """Refuse ``alpha`` and ``learning_rate_init`` where ``dtype`` cannot hold what they
    become: the L2 penalty ``alpha / (2 * batch)`` infinite, the rate zero or infinite."""
    owner = type(estimator).__name__
    advice = ""
    if dtype == "float32":
        other = ", or float64 input" if estimator.dtype is None else ""
        advice = f" (or dtype='float64'{other})"
    alpha, rate = estimator.alpha, estimator.learning_rate_init
    with np.errstate(over="ignore", under="ignore"):
        l2 = float(np.asarray(alpha / (2 * batch), dtype=dtype))
        held = float(np.asarray(rate, dtype=dtype))
    if not math.isfinite(l2):
        raise ValueError(
            f"{owner} alpha={alpha!r} is too large for {dtype}, the dtype it computes in: its "
            f"penalty per weight, alpha / (2 * batch) with a batch of {batch}, would be "
            f"infinite; choose a smaller alpha{advice}"
        )
    if not (math.isfinite(held) and held > 0):
        large = rate > 1
        raise ValueError(
            f"{owner} learning_rate_init={rate!r} is too {'large' if large else 'small'} for "
            f"{dtype}, the dtype it computes in: it would be {held:g} there; choose a "
            f"{'smaller' if large else 'larger'} learning_rate_init{advice}"
        )


def non_finite_loss(estimator: Any, error: Any, model: Any, *, new: bool) -> str:
    """The message for a NonFiniteLossError (``error``) in a fit of ``estimator``: what became
    of the estimator, and its own parameters to change."""
    where = f"epoch {error.epoch}" + (f", step {error.step}" if error.step is not None else "")
    if new:
        kept = "the estimator is as it was before this fit"
    elif error.step is not None:
        kept = "its network keeps the parameters of the last finite step"
    else:  # found at the epoch's end, where the network goes back to the call's start
        kept = "its network is as it was before this partial_fit"
    float32 = model is not None and model.backend.dtype_name == "float32"
    return (
        f"{type(estimator).__name__}: the training loss became NaN or infinite at {where}; "
        f"{kept}. A smaller learning_rate_init (now {estimator.learning_rate_init!r}) or alpha "
        f"(now {estimator.alpha!r}), X scaled to a smaller range (StandardScaler)"
        + (", or dtype='float64'," if float32 else "")
        + " usually helps"
    )
