"""xpnn.sklearn: scikit-learn's own estimator checks, labels, outputs, pickling, grid search.

Needs scikit-learn 1.6 or newer (the ``sklearn`` extra; the ``test`` extra brings it) and
skips with that reason without it. The estimator checks run on each backend of the backend
fixture's set (``XPNN_TEST_BACKENDS``), in float32 and float64; every other test takes the
fixture.
"""

from __future__ import annotations

import copy
import inspect
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip(
    "sklearn", minversion="1.6", reason="xpnn.sklearn needs scikit-learn>=1.6 (xpnn[sklearn])"
)

from conftest import _backend_params
from helpers import tolerance
from parts import own
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs
from sklearn.model_selection import (
    GridSearchCV,
    cross_val_score,
    cross_validate,
    train_test_split,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

import xpnn
from xpnn.sklearn import ACTIVATIONS, MLPClassifier, MLPRegressor, expected_failed_checks
from xpnn.sklearn_params import OPTIMIZERS

# -- scikit-learn's estimator checks, on every backend under test ------------------------------

#: Backend name -> why its checks skip (the fixture's reason), for those it marks skipped.
_SKIPPED = {
    p.values[0]: next(m.kwargs["reason"] for m in p.marks) for p in _backend_params() if p.marks
}
#: Small networks and few epochs keep the checks quick; they still clear the checks' scores
#: (classifiers above 0.83 accuracy, regressors above 0.5 R^2) by a wide margin: 0.92 and 0.79
#: at the least over random states 0 to 9.
_QUICK = {"hidden_layer_sizes": (16,), "learning_rate_init": 0.01, "max_iter": 50}


# With dtype=None (the default) the estimators compute in the input's dtype, as scikit-learn's
# do, and every check must pass, none declared. With dtype="float32" two checks may fail where
# the CPU's BLAS moves a last bit (expected_failed_checks says why).
@parametrize_with_checks(
    [
        estimator(**_QUICK, backend=p.values[0], dtype=dtype)
        for p in _backend_params()
        for dtype in (None, "float32")
        for estimator in (MLPClassifier, MLPRegressor)
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    if estimator.backend in _SKIPPED:
        pytest.skip(_SKIPPED[estimator.backend])
    check(estimator)


def test_check_estimator_passes_the_default_estimators(backend):
    """``check_estimator(MLPClassifier())`` as a user runs it: every check passes, none
    declared (only the backend is set)."""
    if backend in _SKIPPED:
        pytest.skip(_SKIPPED[backend])
    for estimator in (MLPClassifier(backend=backend), MLPRegressor(backend=backend)):
        results = check_estimator(estimator, on_fail=None)
        assert len(results) > 50
        assert [r["check_name"] for r in results if r["status"] != "passed"] == []


def test_the_default_estimators_declare_no_expected_failure():
    for estimator in (MLPClassifier, MLPRegressor):
        assert estimator().dtype is None
        assert expected_failed_checks(estimator()) == {}
        assert expected_failed_checks(estimator(dtype=np.float64)) == {}
        assert set(expected_failed_checks(estimator(dtype="float32"))) == {
            "check_methods_subset_invariance",
            "check_methods_sample_order_invariance",
        }


# -- dtype ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "dtype", "computed"),
    [
        (np.float64, None, "float64"),
        (np.float32, None, "float32"),
        (np.int64, None, "float64"),  # as scikit-learn: anything but float32 in float64
        (np.float16, None, "float64"),
        (np.float64, "float32", "float32"),
        (np.float32, np.float64, "float64"),
    ],
)
def test_the_dtype_follows_the_input_unless_fixed(backend, given, dtype, computed):
    X, y = _blobs(3)
    X = (X * 4).astype(given)
    for estimator in (MLPClassifier, MLPRegressor):
        fitted = estimator((4,), max_iter=2, random_state=0, backend=backend, dtype=dtype)
        fitted.fit(X, y.astype(float) if estimator is MLPRegressor else y)
        assert fitted.model_.backend.dtype_name == computed
        assert all(w.dtype == computed for w in fitted.coefs_)
        assert fitted.dtype is dtype  # the parameter is left as given
    grown = MLPClassifier((4,), backend=backend, dtype=dtype).partial_fit(X, y, classes=[0, 1, 2])
    grown.partial_fit(X.astype(np.float64), y)  # the first call decided
    assert grown.model_.backend.dtype_name == computed and grown.n_iter_ == 2


def test_a_float32_model_predicts_float64_input(backend):
    X, y = _blobs(3)
    clf = MLPClassifier((8,), max_iter=3, random_state=0, backend=backend)
    clf.fit(X.astype(np.float32), y)
    assert clf.model_.backend.dtype_name == "float32"
    # float64 input is converted to float32, the dtype the network computes in; the outputs
    # come back as float64, as always.
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_array_equal(proba, clf.predict_proba(X.astype(np.float32)))
    np.testing.assert_array_equal(clf.predict(X), clf.predict(X.astype(np.float32)))
    # A value float32 cannot hold is refused, named, rather than computed with as infinity.
    huge = X.copy()
    huge[5, 1] = 1e300
    with pytest.raises(ValueError, match=r"X holds values beyond float32's range"):
        clf.predict(huge)
    reg = MLPRegressor((8,), max_iter=3, random_state=0, backend=backend, dtype="float32")
    reg.fit(X, y.astype(float))
    np.testing.assert_array_equal(reg.predict(X), reg.predict(X.astype(np.float32)))


# -- classification -----------------------------------------------------------------------------


def _blobs(classes: int, samples: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs, one per class, in 4 features."""
    X, y = make_blobs(samples, n_features=4, centers=classes, cluster_std=0.8, random_state=seed)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["no", "yes"]),  # binary, strings
        np.array([-3, 7]),  # binary, integers that are not 0 and 1
        np.array(["cat", "dog", "emu", "yak"]),  # multiclass, strings
        np.array([-5, 2, 40]),  # multiclass, integers with gaps
    ],
    ids=["binary-str", "binary-int", "multi-str", "multi-int"],
)
def test_classifier_encodes_and_decodes_labels(backend, labels):
    X, index = _blobs(len(labels))
    y = labels[index]
    clf = MLPClassifier((16,), learning_rate_init=0.01, max_iter=60, random_state=0)
    clf.set_params(backend=backend).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    predicted = clf.predict(X)
    assert type(predicted) is np.ndarray and predicted.dtype == y.dtype
    assert set(predicted) <= set(labels)
    assert np.mean(predicted == y) > 0.9  # the blobs separate at 0.99 or more
    proba = clf.predict_proba(X)
    assert type(proba) is np.ndarray and proba.dtype == np.float64
    assert proba.shape == (len(y), len(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], predicted)
    assert clf.score(X, y) == np.mean(predicted == y)


def test_classifier_fitted_attributes(backend):
    pd = pytest.importorskip("pandas", reason="feature_names_in_ needs a DataFrame (pandas)")
    X, y = _blobs(3)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = MLPClassifier((8, 8), learning_rate_init=0.01, max_iter=15, random_state=1)
    clf.set_params(backend=backend).fit(frame, y)
    assert clf.n_features_in_ == 4
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c", "d"])
    assert clf.n_iter_ == 15 and len(clf.loss_curve_) == 15  # no tol: every epoch runs
    assert all(isinstance(loss, float) for loss in clf.loss_curve_)
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert isinstance(clf.model_, xpnn.Model)
    assert clf.model_.backend.name == backend
    widths = [(w.shape, b.shape) for w, b in zip(clf.coefs_, clf.intercepts_)]
    assert widths == [((4, 8), (8,)), ((8, 8), (8,)), ((8, 3), (3,))]
    assert all(type(w) is np.ndarray for w in clf.coefs_)
    with (
        pytest.warns(UserWarning, match="X does not have valid feature names"),
        pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"),
    ):
        clf.predict(X[:, :3])


def test_classifier_refuses_one_class_and_unknown_labels(backend):
    X, y = _blobs(3)
    clf = MLPClassifier((4,), max_iter=2, backend=backend)
    with pytest.raises(ValueError, match="one class"):
        clf.fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match=r"labels \[2\] that are not among classes"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(clf, "model_") and not hasattr(clf, "classes_")


def test_partial_fit_is_fit_one_epoch_at_a_time(backend):
    X, y = _blobs(3)
    whole = MLPClassifier((8,), max_iter=4, random_state=3, backend=backend).fit(X, y)
    steps = MLPClassifier((8,), max_iter=99, random_state=3, backend=backend)
    for epoch in range(1, 5):
        steps.partial_fit(X, y, classes=[2, 0, 1] if epoch == 1 else None)
        assert steps.n_iter_ == epoch and len(steps.loss_curve_) == epoch
    # The same seed, the same shuffles, Adam's state carried on: the same network.
    tol = tolerance("float32")
    np.testing.assert_allclose(steps.loss_curve_, whole.loss_curve_, **tol)
    np.testing.assert_allclose(steps.predict_proba(X), whole.predict_proba(X), **tol)
    with pytest.raises(ValueError, match="differs from the classes of the first fit"):
        steps.partial_fit(X, y, classes=[0, 1, 2, 3])


def test_early_stopping_holds_out_data_and_stops(backend):
    # Overlapping classes: a wide network soon fits the training noise, and the held-out loss
    # turns up.
    X, y = make_blobs(300, n_features=2, centers=3, cluster_std=2.5, random_state=0)
    clf = MLPClassifier(
        (64,),
        learning_rate_init=0.05,
        max_iter=500,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        random_state=0,
        backend=backend,
    ).fit(X, y)
    assert clf.n_iter_ < 500  # the validation loss stops improving long before
    assert len(clf.validation_loss_curve_) == clf.n_iter_ == len(clf.loss_curve_)
    best = min(clf.validation_loss_curve_)
    assert clf.validation_loss_curve_[-4] == best  # 3 epochs without improvement after it
    assert clf.score(X, y) > 0.5  # chance is 1/3; 0.59 to 0.66 over random states 0 to 3


def test_every_optimizer_of_xpnn_is_offered():
    """The estimators' ``optimizer`` names each of xpnn's registered optimizers."""
    offered = {type(make(0.01, 0.0)).__name__ for make in OPTIMIZERS.values()}
    assert offered == set(own("optimizer"))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_dropout_and_optimizers_build_the_network(backend, optimizer):
    X, y = _blobs(3)
    kind = type(OPTIMIZERS[optimizer](0.01, 0.0))
    clf = MLPClassifier(
        (16, 16),
        activation="tanh",
        dropout=0.2,
        optimizer=optimizer,
        learning_rate_init=0.01,
        decay=1e-3,
        max_iter=40,
        random_state=0,
        backend=backend,
    ).fit(X, y)
    layers = [type(layer).__name__ for layer in clf.model_.layers]
    hidden = ["Dense", "Tanh", "Dropout"]
    assert layers == [*hidden, *hidden, "Dense", "Softmax"]
    assert kind.__name__.lower() == optimizer  # each named after its class
    assert type(clf.model_.optimizer) is kind and clf.model_.optimizer.decay == 1e-3
    assert clf.score(X, y) > 0.9, optimizer
    if optimizer == "sgd":
        assert clf.model_.optimizer.momentum == 0.9


def test_alpha_is_scikit_learns_penalty(backend):
    """Full batch: the penalty is alpha / 2 * sum(w ** 2) / n_samples, as scikit-learn's."""
    X, y = _blobs(2, samples=100)
    alpha = 0.5
    clf = MLPClassifier(
        (6,), alpha=alpha, batch_size=100, max_iter=3, backend=backend, dtype="float64"
    )
    clf.fit(X, y)
    expected = alpha / 2 * sum(np.sum(w**2) for w in clf.coefs_) / len(X)
    figures = clf.model_.evaluate(X, np.searchsorted(clf.classes_, y))
    np.testing.assert_allclose(figures["regularization_loss"], expected, rtol=1e-9)
    heavy = clone(clf).set_params(alpha=50.0, max_iter=60, learning_rate_init=0.01).fit(X, y)
    light = clone(clf).set_params(alpha=0.0, max_iter=60, learning_rate_init=0.01).fit(X, y)
    norm = [sum(np.sum(w**2) for w in c.coefs_) for c in (heavy, light)]
    assert norm[0] < 0.5 * norm[1]


# -- regression ---------------------------------------------------------------------------------


def _waves(samples: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Two smooth targets of two features."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (samples, 2))
    return X, np.stack([np.sin(2 * X[:, 0]) + X[:, 1], X[:, 0] * X[:, 1]], axis=1)


@pytest.mark.parametrize("outputs", [1, 2])
def test_regressor_single_and_multi_output(backend, outputs):
    X, Y = _waves()
    y = Y[:, 0] if outputs == 1 else Y
    reg = MLPRegressor((32,), learning_rate_init=0.01, max_iter=150, random_state=0)
    reg.set_params(backend=backend).fit(X, y)
    predicted = reg.predict(X)
    assert type(predicted) is np.ndarray and predicted.dtype == np.float64
    assert predicted.shape == y.shape
    assert reg.model_.n_outputs == outputs
    assert reg.score(X, y) > 0.8  # about 0.97 to 0.99
    assert reg.n_iter_ == 150 and reg.loss_curve_[-1] < 0.2 * reg.loss_curve_[0]
    with pytest.raises(ValueError, match="targets per sample but the network was fitted"):
        reg.partial_fit(X, np.ones((len(X), outputs + 1)))


# -- pickling -----------------------------------------------------------------------------------


def test_pickle_holds_xpnn_file_bytes(backend, tmp_path):
    X, y = _blobs(3)
    clf = MLPClassifier((8,), max_iter=10, random_state=0, backend=backend).fit(X, y)
    state = clf.__getstate__()
    assert isinstance(state["model_"], bytes) and isinstance(clf.model_, xpnn.Model)
    path = tmp_path / "model.xpnn"
    path.write_bytes(state["model_"])  # an xpnn file as Model.save writes it
    loaded = xpnn.Model.load(path)
    expected = clf.predict_proba(X)
    np.testing.assert_allclose(xpnn.to_numpy(loaded.predict(X)), expected, **tolerance("float32"))
    for copied in (pickle.loads(pickle.dumps(clf)), copy.deepcopy(clf)):
        assert copied.model_.backend.name == backend
        np.testing.assert_array_equal(copied.predict_proba(X), expected)
        np.testing.assert_array_equal(copied.classes_, clf.classes_)
        assert copied.loss_curve_ == clf.loss_curve_
        copied.partial_fit(X, y)  # it trains on from the restored network and optimizer
        assert copied.n_iter_ == 11
    # The file keeps Adam's moments and step count: the copies go on as the original does.
    clf.partial_fit(X, y)
    assert copied.model_.optimizer.iterations == clf.model_.optimizer.iterations
    np.testing.assert_array_equal(copied.predict_proba(X), clf.predict_proba(X))
    assert copied.loss_curve_ == clf.loss_curve_
    # An unfitted estimator pickles as its parameters alone.
    assert pickle.loads(pickle.dumps(clone(clf))).get_params() == clf.get_params()


def test_pickle_round_trips_every_layer_and_optimizer(backend):
    X, y = _blobs(3)
    optimizers, activations = list(OPTIMIZERS), list(ACTIVATIONS)
    pairs = max(len(optimizers), len(activations))  # each of both, the shorter list repeated
    for i in range(pairs):
        optimizer, activation = optimizers[i % len(optimizers)], activations[i % len(activations)]
        clf = MLPClassifier(
            (8, 8),
            activation=activation,
            optimizer=optimizer,
            dropout=0.3,
            decay=1e-3,
            max_iter=3,
            random_state=0,
            backend=backend,
        ).fit(X, y)
        copied = pickle.loads(pickle.dumps(clf))
        assert [repr(layer) for layer in copied.model_.layers] == [
            repr(layer) for layer in clf.model_.layers
        ]
        assert type(copied.model_.optimizer) is type(clf.model_.optimizer)
        np.testing.assert_array_equal(copied.predict_proba(X), clf.predict_proba(X))


# -- in practice --------------------------------------------------------------------------------


def test_pipeline_grid_search_on_digits(backend):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    pipeline = make_pipeline(
        StandardScaler(),
        MLPClassifier(max_iter=30, learning_rate_init=0.005, random_state=0, backend=backend),
    )
    grid = {
        "mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
        "mlpclassifier__alpha": [1e-4, 1e-1],
    }
    search = GridSearchCV(pipeline, grid, cv=3).fit(X_train, y_train)
    assert len(search.cv_results_["params"]) == 4
    # Every setting learns: 0.958 to 0.973 in cross-validation, 0.973 to 0.982 on the test
    # set, over random states 0 to 3.
    assert search.cv_results_["mean_test_score"].min() > 0.9
    assert search.score(X_test, y_test) > 0.9
    assert search.best_estimator_[-1].model_.backend.name == backend


def test_fitted_estimators_come_back_from_worker_processes(backend):
    """joblib's worker processes pickle each fitted estimator to send it back."""
    if backend == "cupy" and os.environ.get("XPNN_CUPY_API") == "1":
        pytest.skip("the CuPy API stand-in is in place in this process only, not in workers")
    X, y = _blobs(3)
    clf = MLPClassifier((8,), learning_rate_init=0.05, max_iter=20, random_state=0)
    found = cross_validate(
        clf.set_params(backend=backend), X, y, cv=2, n_jobs=2, return_estimator=True
    )
    for fitted, test in zip(found["estimator"], found["test_score"]):
        assert isinstance(fitted.model_, xpnn.Model) and fitted.model_.backend.name == backend
        assert fitted.n_iter_ == 20 and test > 0.9


def test_cross_val_score(backend):
    X, y = _blobs(3)
    scores = cross_val_score(
        MLPClassifier((8,), learning_rate_init=0.05, max_iter=30, backend=backend), X, y, cv=3
    )
    assert scores.shape == (3,) and scores.min() > 0.9


# -- parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("hidden_layer_sizes", (10, 0), ValueError, "hidden_layer_sizes must be a positive"),
        ("hidden_layer_sizes", "wide", ValueError, "hidden_layer_sizes must be a positive"),
        ("activation", "gelu", ValueError, "activation must be one of 'identity'"),
        ("activation", ["relu"], ValueError, "activation must be one of 'identity'"),
        ("alpha", -1.0, ValueError, r"alpha must be a finite number in \[0, inf\)"),
        ("alpha", "big", TypeError, "alpha must be a real number"),
        ("batch_size", 0, ValueError, "batch_size must be a positive integer or 'auto'"),
        ("batch_size", "AUTO", ValueError, "batch_size must be a positive integer or 'auto'"),
        ("learning_rate_init", 0.0, ValueError, r"learning_rate_init must .* \(0, inf\)"),
        ("max_iter", 2.5, ValueError, "max_iter must be a positive integer"),
        ("shuffle", "yes", TypeError, "shuffle must be True or False"),
        ("early_stopping", 1, TypeError, "early_stopping must be True or False"),
        ("validation_fraction", 1.0, ValueError, r"validation_fraction must .* \(0, 1\)"),
        ("n_iter_no_change", 0, ValueError, "n_iter_no_change must be a positive integer"),
        ("verbose", "loud", TypeError, "verbose must be True, False or an integer"),
        ("optimizer", "lbfgs", ValueError, "optimizer must be one of 'adam'"),
        ("decay", float("nan"), ValueError, "decay must be a finite number"),
        ("dropout", 1.0, ValueError, r"dropout must be a finite number in \[0, 1\)"),
        (
            "backend",
            "tensorflow",
            ValueError,
            "backend must be one of 'numpy', 'cupy', 'torch', 'strict', 'auto' or 'torch:<device>'",
        ),
        ("dtype", "float16", ValueError, "dtype must be None .*, 'float32' or 'float64'"),
        ("dtype", "double-ish", ValueError, "dtype must be None .*, 'float32' or 'float64'"),
        ("random_state", "seed", ValueError, r"random_state must be None, an integer in \[0"),
        ("random_state", -1, ValueError, r"random_state must be None, an integer in \[0"),
        ("random_state", 2**32, ValueError, r"random_state must be None, an integer in \[0"),
        ("random_state", np.random.default_rng(0), ValueError, "random_state must be None"),
    ],
)
@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_bad_parameters_are_named_before_anything_changes(
    backend, estimator, name, value, error, message
):
    X, y = _blobs(3)
    fitted = estimator((4,), max_iter=2, random_state=0, backend=backend)
    fitted.fit(X, y.astype(float) if estimator is MLPRegressor else y)
    before = fitted.predict(X)
    with pytest.raises(error, match=f"^{estimator.__name__} {message}"):
        fitted.set_params(**{name: value}).fit(X, y)
    assert fitted.n_iter_ == 2
    np.testing.assert_array_equal(fitted.predict(X), before)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alpha": 1e300}, r"alpha=1e\+300 is too large for float32, the dtype it computes in"),
        ({"alpha": 1e42}, r"alpha=1e\+42 .* batch of 120, would be infinite"),  # 1e42 / 240
        ({"learning_rate_init": 1e300}, r"learning_rate_init=1e\+300 is too large for float32"),
        ({"learning_rate_init": 1e-50}, r"learning_rate_init=1e-50 is too small for float32"),
    ],
)
@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_settings_float32_cannot_hold_are_named_as_the_estimators(
    backend, estimator, settings, message
):
    """Where the dtype cannot hold what ``alpha`` or ``learning_rate_init`` become, the error
    names the estimator's parameter, not the Dense layer's or the optimizer's setting."""
    X, y = _blobs(3, samples=120)
    y = y.astype(float) if estimator is MLPRegressor else y
    fixed = estimator((4,), max_iter=2, backend=backend, dtype="float32", **settings)
    with pytest.raises(ValueError, match=rf"^{estimator.__name__} {message}.*dtype='float64'\)$"):
        fixed.fit(X, y)
    # Float32 input computes in float32 with dtype=None: the same error, and float64 input or
    # dtype='float64' offered.
    following = estimator((4,), max_iter=2, backend=backend, **settings)
    with pytest.raises(ValueError, match=r"dtype='float64', or float64 input\)$"):
        following.fit(X.astype(np.float32), y)
    assert not hasattr(following, "model_") and not hasattr(following, "n_features_in_")
    # In float64 these values are held (alpha=1e300 too, though Adam's squared gradients
    # then overflow float64).
    if settings in ({"alpha": 1e42}, {"learning_rate_init": 1e-50}):
        following.fit(X, y)
        assert following.model_.backend.dtype_name == "float64"


def test_unknown_parameters_name_the_estimator():
    with pytest.raises(TypeError, match=r"^MLPClassifier has no parameter 'tol' \(every epoch"):
        MLPClassifier(tol=1e-4)
    with pytest.raises(TypeError, match=r"^MLPRegressor has no parameter 'solver' \(optimizer="):
        MLPRegressor(solver="sgd")
    with pytest.raises(TypeError, match=r"no parameter 'width'; its parameters are hidden_layer"):
        MLPClassifier(width=3)
    with pytest.raises(TypeError, match=r"no parameters 'tol' \(every .*\), 'width'; its param"):
        MLPClassifier(tol=0.0, width=3)
    with pytest.raises(TypeError, match=r"^MLPClassifier\(\): too many positional arguments"):
        MLPClassifier((4,), "relu", 1e-4)
    with pytest.raises(TypeError, match=r"^MLPRegressor\(\): multiple values for argument"):
        MLPRegressor((4,), hidden_layer_sizes=(5,))
    with pytest.raises(ValueError, match=r"Invalid parameter 'tol' for estimator MLPClassifier"):
        MLPClassifier().set_params(tol=1e-4)
    # The signature shown (help, IDEs, scikit-learn's own checks) is the parameters'.
    for estimator in (MLPClassifier, MLPRegressor):
        shown = inspect.signature(estimator)
        assert list(shown.parameters)[:2] == ["hidden_layer_sizes", "activation"]
        assert sorted(shown.parameters) == sorted(estimator().get_params(deep=False))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_a_loss_that_turns_nan_names_the_estimators_settings(backend):
    X, y = _blobs(3)
    clf = MLPClassifier(
        (4,), max_iter=5, learning_rate_init=3e38, random_state=0, dtype="float32", backend=backend
    )
    with pytest.raises(
        xpnn.NonFiniteLossError,
        match=r"^MLPClassifier: the training loss became NaN or infinite at epoch \d+"
        r"(, step \d+)?; the estimator is as it was before this fit\. A smaller "
        r"learning_rate_init \(now 3e\+38\) or alpha \(now 0\.0001\), X scaled to a smaller "
        r"range \(StandardScaler\), or dtype='float64', usually helps$",
    ):
        clf.fit(X, y)
    assert not hasattr(clf, "model_") and not hasattr(clf, "n_features_in_")
    # partial_fit trains the fitted network itself: what it keeps is said. Found at the step
    # (NumPy) the last finite step's parameters are kept; found at the epoch's end (a device),
    # the network goes back to the start of the call.
    reg = MLPRegressor((4,), max_iter=2, random_state=0, backend=backend).fit(X, y.astype(float))
    before = reg.coefs_
    kept = "its network keeps the parameters of the last finite step"
    if not reg.model_.backend.on_host:
        kept = "its network is as it was before this partial_fit"
    with pytest.raises(
        xpnn.NonFiniteLossError,
        match=rf"^MLPRegressor: .* at epoch 3(, step 1)?; {kept}\. .* \(StandardScaler\) "
        r"usually helps$",  # float64: no dtype advice
    ):
        reg.partial_fit(X * 1e160, y.astype(float))  # squares beyond float64's range
    assert reg.n_iter_ == 2
    for weights, kept_weights in zip(reg.coefs_, before):  # it failed at the first step
        np.testing.assert_array_equal(weights, kept_weights)


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_early_stopping_names_bad_data_as_x_or_y_wherever_it_falls(backend, estimator):
    """The held-out part is checked with the rest: a value the dtype cannot hold is named as
    part of X or y whether it fell in the training rows or the held-out ones."""
    X, y = _blobs(2, samples=16)
    y = y.astype(float) if estimator is MLPRegressor else y
    settings = dict(early_stopping=True, validation_fraction=0.5, random_state=0, dtype="float32")
    for row in range(len(X)):  # about half of the rows are held out
        bad = X.copy()
        bad[row, 0] = 1e300
        with pytest.raises(ValueError, match=r"^X holds values beyond float32's range"):
            estimator((4,), backend=backend, **settings).fit(bad, y)
        if estimator is MLPRegressor:
            large = y.copy()
            large[row] = 1e19
            with pytest.raises(ValueError, match=r"^y holds values up to 1e\+19 .* 16 samples"):
                estimator((4,), backend=backend, **settings).fit(X, large)


def test_a_validation_split_that_cannot_be_made_changes_nothing(backend):
    X, y = _blobs(3)
    clf = MLPClassifier((4,), max_iter=2, random_state=0, backend=backend).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(early_stopping=True, validation_fraction=0.005)  # 2 samples, 3 classes
    with pytest.raises(ValueError, match=r"early_stopping=True holds out .*number of classes"):
        clf.fit(X, y)
    assert clf.n_iter_ == 2 and not hasattr(clf, "validation_loss_curve_")
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_a_fit_that_fails_leaves_the_estimator_as_it_was(backend):
    X, y = _blobs(3)
    clf = MLPClassifier((4,), max_iter=2, random_state=0, backend=backend).fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="one class"):  # other data, found wanting
        clf.fit(X[:, :3], np.zeros(len(X)))
    reg = MLPRegressor((4,), max_iter=2, backend=backend, dtype="float32").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="would overflow float32"):  # refused by Model.train
        reg.fit(X[:, :3], np.full(len(X), 1e19))
    for estimator in (clf, reg):
        assert estimator.n_features_in_ == 4 and estimator.n_iter_ == 2
        assert estimator.model_.n_inputs == 4
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def test_verbose_prints_a_line_per_epoch(backend, capsys):
    X, y = _blobs(3)
    MLPClassifier((4,), max_iter=3, verbose=True, backend=backend).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert [line.split(",")[0] for line in lines] == ["epoch: 1", "epoch: 2", "epoch: 3"]


def test_float64_survives_pickling(backend):
    X, y = _waves()
    reg = MLPRegressor((8,), max_iter=3, dtype="float64", backend=backend).fit(X, y)
    copied = pickle.loads(pickle.dumps(reg))
    assert copied.model_.backend.dtype_name == "float64"
    np.testing.assert_array_equal(copied.predict(X), reg.predict(X))


def test_import_xpnn_leaves_sklearn_alone():
    code = "import sys, xpnn; assert 'xpnn.sklearn' not in sys.modules; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
    # Without scikit-learn the module says which extra to install.
    code = "import sys; sys.modules['sklearn'] = None; import xpnn.sklearn"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and 'pip install "xpnn[sklearn]"' in done.stderr
