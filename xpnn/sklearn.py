"""scikit-learn estimators with xpnn underneath: ``MLPClassifier`` and ``MLPRegressor``.

They follow scikit-learn's estimator contract (``fit``, ``partial_fit``, ``predict``,
``predict_proba``, ``score``, ``get_params`` / ``set_params``, cloning, pickling), so an xpnn
network works inside Pipelines, ``GridSearchCV`` and ``cross_val_score``, on the CPU or, with
``backend="cupy"`` or ``"auto"``, on a CUDA GPU. Their parameters are scikit-learn's where the
meaning is the same, plus xpnn's own (``optimizer``, ``decay``, ``dropout``, ``backend``,
``dtype``); as scikit-learn's, they compute in the input's dtype unless ``dtype`` is given.
Needs scikit-learn: ``pip install "xpnn[sklearn]"``; ``import xpnn`` never imports this
module.

A pickled estimator holds its fitted network as the bytes of an xpnn file (``Model.save``):
tensors and JSON, no pickle inside, and it loads back through ``Model.load``.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import tempfile
from typing import Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'xpnn.sklearn needs scikit-learn 1.6 or newer: pip install "xpnn[sklearn]"'
    ) from error

from . import data
from .activations import Softmax
from .backends import Backend, get_backend, to_numpy
from .history import History
from .layers import Dense, Dropout
from .losses import CategoricalCrossentropy, MeanSquaredError
from .metrics import CategoricalAccuracy
from .model import Model
from .sklearn_params import (
    ACTIVATIONS,
    OPTIMIZERS,
    check_in_dtype,
    fixed_dtype,
    hidden_sizes,
    non_finite_loss,
    refuse_arguments,
)
from .sklearn_params import check as check_params
from .training import NonFiniteLossError

__all__ = ["MLPClassifier", "MLPRegressor", "expected_failed_checks"]

_FILE = "model.xpnn"  # the file's name inside a temporary folder, for pickling

#: Why a float32 estimator may fail the two checks that compare outputs across row counts: on
#: some CPUs OpenBLAS computes a float32 product's rows with other kernels for other row counts
#: (seen with OPENBLAS_CORETYPE=Haswell on 2 threads: one output in 60 off by 1.8e-7).
_LAST_BIT = (
    "float32: a batch of another size may move an output's last bit (BLAS kernels differ by "
    "row count), and the check's tolerance, 1e-7, is float32's resolution; float64 passes"
)


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The scikit-learn estimator checks that ``estimator`` may fail, each with its reason,
    for ``parametrize_with_checks(..., expected_failed_checks=expected_failed_checks)`` or
    ``check_estimator(estimator, expected_failed_checks=...)``.

    An empty dict with ``dtype=None`` (the default: the checks' float64 data is
    computed in float64) or ``dtype="float64"``. With ``dtype="float32"``, the two checks
    whose tolerance lies below float32's resolution: a batch of another size may change an
    output's last bit.
    """
    dtype = getattr(estimator, "dtype", None)
    if dtype is None or np.dtype(dtype).name != "float32":
        return {}
    return {
        "check_methods_subset_invariance": _LAST_BIT,
        "check_methods_sample_order_invariance": _LAST_BIT,
    }


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, building, training, pickling."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _BaseMLP:
        """Arguments that do not fit the parameters are refused naming the estimator (not this
        shared base class), with a word on scikit-learn's parameters that it lacks."""
        refuse_arguments(cls, args, kwargs)
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each estimator's signature is its ``__init__``'s (``inspect.signature`` and ``help``
        would otherwise show ``__new__``'s ``*args, **kwargs``)."""
        super().__init_subclass__(**kwargs)
        init = inspect.signature(cls.__init__)
        parameters = list(init.parameters.values())[1:]
        cls.__signature__ = init.replace(parameters=parameters, return_annotation=init.empty)

    def __init__(
        self,
        hidden_layer_sizes: int | tuple[int, ...] = (100,),
        activation: str = "relu",
        *,
        alpha: float = 1e-4,
        batch_size: int | str = "auto",
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: int | np.random.RandomState | None = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        verbose: bool | int = False,
        optimizer: str = "adam",
        decay: float = 0.0,
        dropout: float = 0.0,
        backend: str = "numpy",
        dtype: str | type | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.verbose = verbose
        self.optimizer = optimizer
        self.decay = decay
        self.dropout = dropout
        self.backend = backend
        self.dtype = dtype

    # -- building and training --------------------------------------------------------------------

    def _build(
        self, backend: Backend, n_features: int, n_outputs: int, batch: int, seed: int
    ) -> Model:
        """The network: Dense layers with ``activation`` (and Dropout) between, and the output.

        Weights start at Glorot's scale, ``sqrt(2 / (fan_in + fan_out))`` times N(0, 1), so a
        deep stack trains as scikit-learn's does. ``alpha`` penalises the weights as scikit-learn
        does, ``alpha / 2 * sum(w ** 2)`` per batch of ``batch`` samples: an L2 regularizer of
        ``alpha / (2 * batch)`` on xpnn's mean loss; biases are not penalised.
        """
        model = Model(backend=backend, seed=seed)
        widths = (n_features, *hidden_sizes(self), n_outputs)
        l2 = self.alpha / (2 * batch)
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            scale = math.sqrt(2.0 / (fan_in + fan_out))
            model.add(Dense(fan_in, fan_out, weight_regularizer_l2=l2, weight_scale=scale))
            if index < len(widths) - 2:
                model.add(ACTIVATIONS[self.activation]())
                if self.dropout:
                    model.add(Dropout(self.dropout))
        self._add_output(model)
        model.set(optimizer=OPTIMIZERS[self.optimizer](self.learning_rate_init, self.decay))
        model.finalize()
        return model

    def _batch(self, samples: int) -> int:
        """Samples per step: ``batch_size``, or ``min(200, samples)`` for "auto" as in sklearn."""
        return min(200 if self.batch_size == "auto" else self.batch_size, samples)

    def _seeds(self) -> tuple[int, int]:
        """The model's seed and the validation split's, drawn from ``random_state``."""
        rng = check_random_state(self.random_state)
        return int(rng.randint(2**31 - 1)), int(rng.randint(2**31 - 1))

    def _train(
        self, model: Model, X: np.ndarray, y: np.ndarray, epochs: int, validation: tuple | None
    ) -> History:
        """Train ``model`` for ``epochs`` (fewer if early stopping ends it); its History."""
        return model.train(
            X,
            y,
            epochs=epochs,
            batch_size=self._batch(X.shape[0]),
            shuffle=bool(self.shuffle),
            validation_data=validation,
            early_stopping=None if validation is None else self.n_iter_no_change,
            print_every=1 if self.verbose else 100,
            verbose="lines" if self.verbose else False,
        )

    def _fit(self, X: Any, y: Any, *, partial: bool, classes: Any = None) -> _BaseMLP:
        """``fit`` (a new network, ``max_iter`` epochs) or ``partial_fit`` (one more epoch).

        Every parameter and the data are checked first. A new network computes in ``dtype``,
        or with ``dtype=None`` in the input's, as scikit-learn's estimators do: float32 input in
        float32, any other in float64. ``fit`` trains a new network and only then replaces the
        fitted one: a fit that fails leaves the estimator as it was.
        """
        check_params(self)  # a bad one named, before anything changes
        first = not partial or not hasattr(self, "model_")
        classifier = isinstance(self, ClassifierMixin)
        seen = ("n_features_in_", "feature_names_in_")  # validate_data's, set on a first fit
        kept = {name: self.__dict__[name] for name in seen if name in self.__dict__}
        try:
            X, y = validate_data(
                self,
                X,
                y,
                reset=first,
                dtype=(np.float64, np.float32),  # float32 kept, any other made float64
                multi_output=not classifier,
                y_numeric=not classifier,
            )
            targets, n_outputs, fitted = self._targets(
                y, first=first, partial=partial, classes=classes
            )
            validation, model = None, getattr(self, "model_", None)
            if first:
                dtype = fixed_dtype(self) or X.dtype.name
                backend = get_backend(self.backend, dtype)  # ImportError/RuntimeError if unusable
                seed, split = self._seeds()
                rows = None
                if not partial and self.early_stopping:  # held out, stratified for classes
                    try:
                        rows = train_test_split(
                            np.arange(X.shape[0]),
                            test_size=self.validation_fraction,
                            random_state=split,
                            stratify=targets if classifier else None,
                        )
                    except ValueError as error:  # too few samples (of a class) to hold out
                        held = "of each class " if classifier else ""
                        raise ValueError(
                            f"{type(self).__name__}: early_stopping=True holds out "
                            f"validation_fraction={self.validation_fraction} of the samples "
                            f"{held}for validation, and these cannot be split so ({error}); "
                            "give more samples, another validation_fraction, or "
                            "early_stopping=False"
                        ) from None
                batch = self._batch(X.shape[0] if rows is None else len(rows[0]))
                check_in_dtype(self, dtype, batch)
                model = self._build(backend, X.shape[1], n_outputs, batch, seed)
                if rows is not None:
                    X, targets, validation = self._split(model, X, targets, *rows)
            history = self._train(model, X, targets, 1 if partial else self.max_iter, validation)
        except BaseException as error:
            for name in seen:
                self.__dict__.pop(name, None)
            self.__dict__.update(kept)
            if isinstance(error, NonFiniteLossError):
                error.args = (non_finite_loss(self, error, model, new=first),)
            raise
        if first:
            for name in ("n_iter_", "loss_curve_", "validation_loss_curve_"):
                self.__dict__.pop(name, None)
            self.__dict__.update(fitted)
            self.model_ = model
        self.n_iter_ = getattr(self, "n_iter_", 0) + len(history)
        self.loss_curve_ = [*getattr(self, "loss_curve_", []), *history["loss"]]
        if validation is not None:
            self.validation_loss_curve_ = list(history["val_loss"])
        return self

    @staticmethod
    def _split(
        model: Model, X: np.ndarray, targets: np.ndarray, rows: np.ndarray, held_out: np.ndarray
    ) -> tuple[Any, Any, tuple[Any, Any]]:
        """The training rows and the held-out ``(X, y)``, on the model's device.

        The data is checked whole before the split, so that a value the model cannot take is
        named as part of ``X`` or ``y`` wherever it falls, and moves to the device once.
        """
        X, targets = data.prepare(model, X, targets)
        backend = model.backend

        def take(a: Any, indices: np.ndarray) -> Any:
            return backend.xp.take(a, backend.asarray(indices, dtype=backend.index_dtype), axis=0)

        return take(X, rows), take(targets, rows), (take(X, held_out), take(targets, held_out))

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for ``X``, as a float64 NumPy array whatever the backend.

        The network computes in the dtype it was fitted in: other input is converted to it,
        and values beyond its range (above 3.4e38 for float32) are refused, named.
        """
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return np.asarray(to_numpy(self.model_.predict(X)), dtype=np.float64)

    # -- fitted values, as scikit-learn's MLP names them ----------------------------------------

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Each Dense layer's weights, ``(fan_in, fan_out)``, as NumPy copies."""
        check_is_fitted(self, "model_")
        return [weights for weights, _ in self.model_.get_parameters()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Each Dense layer's biases, ``(fan_out,)``, as NumPy copies."""
        check_is_fitted(self, "model_")
        return [biases.reshape(-1) for _, biases in self.model_.get_parameters()]

    # -- pickling ---------------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if "model_" in state:  # the network as xpnn's file: tensors and JSON, no pickle
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, _FILE)
                state["model_"].save(path)
                with open(path, "rb") as file:
                    state["model_"] = file.read()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if isinstance(state.get("model_"), bytes):  # loaded on the estimator's backend
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, _FILE)
                with open(path, "wb") as file:
                    file.write(state["model_"])
                state["model_"] = Model.load(path, backend=state.get("backend", "numpy"))
        super().__setstate__(state)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by xpnn: softmax outputs, cross-entropy.

    Labels may be of any type scikit-learn takes (strings, integers with gaps, ...): they are
    encoded as class indices and ``predict`` decodes them. Two classes or more.

    Parameters as scikit-learn's ``MLPClassifier`` where they mean the same:

    - ``hidden_layer_sizes``: width of each hidden layer; ``activation``: "relu", "tanh",
      "logistic" or "identity" after each.
    - ``alpha``: L2 penalty on the weights, scaled as scikit-learn scales it.
    - ``batch_size``: samples per step ("auto": ``min(200, n_samples)``); ``learning_rate_init``.
    - ``max_iter``: epochs. There is no ``tol``: every epoch runs, unless early stopping ends
      the fit.
    - ``shuffle``, ``random_state`` (initial weights, shuffles, dropout and the validation split).
    - ``early_stopping``: hold out ``validation_fraction`` of the data (stratified) and stop once
      its loss has not improved for ``n_iter_no_change`` epochs, with the best epoch's
      parameters restored (a fit that reaches ``max_iter`` first keeps its last epoch's).
    - ``verbose``: the book's line per epoch.

    And xpnn's own: ``optimizer`` ("adam", "sgd" with momentum 0.9, "rmsprop", "adagrad",
    "adamw" with weight decay 0.01),
    ``decay`` (the book's learning-rate decay), ``dropout`` (rate after each hidden layer),
    ``backend`` ("numpy", "cupy", "auto", "strict"), ``dtype``: None (the default) computes in
    the input's dtype as scikit-learn's estimators do, float32 input in float32 and any other
    (float64, integers) in float64; "float32" or "float64" (or NumPy's types) fix it. A fitted
    network keeps its dtype: ``predict`` converts other input to it (values beyond float32's
    range refused, named) and returns float64 NumPy arrays either way.

    A bad parameter, or one scikit-learn's ``MLPClassifier`` has and this one lacks (``tol``,
    ``solver``, ...), raises a ``ValueError`` or ``TypeError`` naming the estimator and the
    parameter, before anything changes.

    Fitted attributes: ``classes_``, ``n_features_in_``, ``feature_names_in_`` (for input with
    column names), ``loss_curve_`` (training loss per epoch), ``n_iter_`` (epochs run),
    ``validation_loss_curve_`` (with early stopping), ``model_`` (the xpnn ``Model``), and
    ``coefs_``, ``intercepts_`` (NumPy copies of the parameters).
    """

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a new network on ``(X, y)`` for ``max_iter`` epochs."""
        return self._fit(X, y, partial=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One more epoch over ``(X, y)``; the first call builds the network and needs
        ``classes``, every label that will ever be seen."""
        return self._fit(X, y, partial=True, classes=classes)

    def _targets(
        self, y: np.ndarray, *, first: bool, partial: bool, classes: Any
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        """Labels as class indices, the number of classes, and ``classes_`` on a first fit."""
        check_classification_targets(y)
        known = getattr(self, "classes_", None)
        if first:
            if partial and classes is None:
                raise ValueError(
                    "classes must be given to the first partial_fit: every label the "
                    "classifier will ever see"
                )
            known = np.unique(y if classes is None else np.asarray(classes))
            if known.shape[0] < 2:
                raise ValueError(
                    f"y holds one class ({known.tolist()}): a classifier needs samples of at "
                    "least 2 classes"
                )
        elif classes is not None and not np.array_equal(np.unique(classes), known):
            raise ValueError(
                f"classes={classes!r} differs from the classes of the first fit, {known!r}"
            )
        unknown = np.setdiff1d(y, known)
        if unknown.size:
            raise ValueError(
                f"y holds labels {unknown.tolist()} that are not among classes {known!r}"
            )
        fitted = {"classes_": known} if first else {}
        return np.searchsorted(known, y), known.shape[0], fitted

    def _add_output(self, model: Model) -> None:
        model.add(Softmax())
        model.set(loss=CategoricalCrossentropy(), accuracy=CategoricalAccuracy())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Each class's probability, a row per sample, columns in the order of ``classes_``."""
        return self._outputs(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, as a label of ``classes_``."""
        probabilities = self.predict_proba(X)  # checks that the estimator is fitted
        return self.classes_[np.argmax(probabilities, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by xpnn: linear outputs, mean squared error.

    One output for 1-D ``y``, one per column for 2-D ``y``. The parameters, the fitted
    attributes (but ``classes_``) and the methods (but ``predict_proba``) are
    ``MLPClassifier``'s; ``predict`` gives a 1-D array where the network has one output, as
    scikit-learn's does.
    """

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train a new network on ``(X, y)`` for ``max_iter`` epochs."""
        return self._fit(X, y, partial=False)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One more epoch over ``(X, y)``; the first call builds the network."""
        return self._fit(X, y, partial=True)

    def _targets(
        self, y: np.ndarray, *, first: bool, partial: bool, classes: Any
    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        """Targets as ``(samples, outputs)``, and the number of outputs."""
        targets = y.reshape(-1, 1) if y.ndim == 1 else y
        if not first and targets.shape[1] != self.model_.n_outputs:
            raise ValueError(
                f"y has {targets.shape[1]} targets per sample but the network was fitted with "
                f"{self.model_.n_outputs}"
            )
        return targets, targets.shape[1], {}

    def _add_output(self, model: Model) -> None:
        model.set(loss=MeanSquaredError())

    def predict(self, X: Any) -> np.ndarray:
        """The predicted targets: ``(samples,)`` for one output, else ``(samples, outputs)``."""
        outputs = self._outputs(X)
        return outputs.reshape(-1) if outputs.shape[1] == 1 else outputs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # 2-D targets: one output per column
        return tags
