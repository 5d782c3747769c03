"""xpnn.datasets: nnfs's datasets, drawn from a seeded Generator instead of NumPy's global state."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import seed_model
from nnfs import datasets as nnfs_datasets

from xpnn import datasets

SIZES = [(1, 1), (1, 3), (5, 1), (7, 2), (100, 3), (33, 5)]
RANDOM = [
    (datasets.spiral_data, nnfs_datasets.spiral_data),
    (datasets.vertical_data, nnfs_datasets.vertical_data),
]
RANDOM_IDS = ["spiral", "vertical"]


def nnfs_call(function, *args):
    """nnfs's ``function(*args)`` with NumPy's global state seeded, then put back."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        return function(*args)
    finally:
        np.random.set_state(state)


def same_global_state(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def arm_angle_noise(X: np.ndarray, samples: int, c: int) -> np.ndarray:
    """The noise added to spiral arm ``c``'s ``t``, recovered from its points (r = 0 left out)."""
    arm = X[c * samples : (c + 1) * samples][1:]
    base = np.linspace(c * 4, (c + 1) * 4, samples)[1:]
    # x = r sin(2.5 t), y = r cos(2.5 t): atan2(x, y) is 2.5 t up to whole turns.
    turn = np.arctan2(arm[:, 0], arm[:, 1]) - 2.5 * base
    return np.angle(np.exp(1j * turn)) / 2.5


@pytest.mark.parametrize(("ours", "theirs"), RANDOM, ids=RANDOM_IDS)
@pytest.mark.parametrize(("samples", "classes"), SIZES)
def test_shapes_dtypes_and_labels_match_nnfs(ours, theirs, samples, classes):
    X, y = ours(samples, classes, seed=0)
    X_ref, y_ref = nnfs_call(theirs, samples, classes)
    assert isinstance(X, np.ndarray) and isinstance(y, np.ndarray)
    assert X.shape == X_ref.shape == (samples * classes, 2)
    assert y.shape == y_ref.shape == (samples * classes,)
    assert X.dtype == X_ref.dtype
    assert y.dtype == y_ref.dtype
    np.testing.assert_array_equal(y, y_ref)  # class-sorted: samples 0s, then samples 1s, ...
    assert np.bincount(y).tolist() == [samples] * classes
    assert np.all(np.isfinite(X))


@pytest.mark.parametrize(("ours", "theirs"), RANDOM, ids=RANDOM_IDS)
@pytest.mark.parametrize(("samples", "classes"), [(1, 1), (50, 3), (17, 4)])
def test_nnfs_fed_the_same_draws_gives_identical_arrays(
    ours, theirs, samples, classes, monkeypatch
):
    """The same algorithm, draw for draw: nnfs on our Generator's normals reproduces us exactly."""
    rng = np.random.default_rng(123)
    monkeypatch.setattr(np.random, "randn", lambda *shape: rng.standard_normal(shape))
    X_ref, y_ref = theirs(samples, classes)
    X, y = ours(samples, classes, seed=123)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize("function", [datasets.spiral_data, datasets.vertical_data], ids=RANDOM_IDS)
def test_same_seed_same_arrays_different_seed_different_arrays(function):
    X0, y0 = function(50, 3, seed=0)
    X0_again, y0_again = function(50, 3, seed=0)
    X1, y1 = function(50, 3, seed=1)
    np.testing.assert_array_equal(X0, X0_again)
    np.testing.assert_array_equal(y0, y0_again)
    assert not np.array_equal(X0, X1)
    np.testing.assert_array_equal(y0, y1)  # labels carry no randomness
    X_unseeded, _ = function(50, 3)
    assert not np.array_equal(X0, X_unseeded)
    X_generator, _ = function(50, 3, seed=np.random.default_rng(0))
    np.testing.assert_array_equal(X0, X_generator)


@pytest.mark.parametrize(
    "call",
    [
        lambda: datasets.spiral_data(100, 3, seed=0),
        lambda: datasets.spiral_data(100, 3),
        lambda: datasets.vertical_data(100, 3, seed=0),
        lambda: datasets.vertical_data(100, 3),
        lambda: datasets.sine_data(100),
    ],
    ids=["spiral-seeded", "spiral-unseeded", "vertical-seeded", "vertical-unseeded", "sine"],
)
def test_numpy_global_random_state_is_untouched(call):
    np.random.seed(7)
    before = np.random.get_state()
    call()
    assert same_global_state(np.random.get_state(), before)


@pytest.mark.parametrize(("samples", "classes"), [(2, 3), (100, 3), (257, 4)])
def test_spiral_radii_are_nnfs_linspace(samples, classes):
    """nnfs's radius is deterministic: linspace(0, 1, samples) on every arm."""
    X, _ = datasets.spiral_data(samples, classes, seed=0)
    X_ref, _ = nnfs_call(nnfs_datasets.spiral_data, samples, classes)
    radius = np.tile(np.linspace(0.0, 1.0, samples), classes)
    np.testing.assert_allclose(np.hypot(X[:, 0], X[:, 1]), radius, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(
        np.hypot(X[:, 0], X[:, 1]), np.hypot(X_ref[:, 0], X_ref[:, 1]), rtol=1e-14, atol=1e-15
    )


def test_spiral_angle_noise_has_nnfs_spread():
    """Each arm's t is linspace(4c, 4c + 4) plus N(0, 0.2^2), as in nnfs."""
    samples, classes = 20_000, 3
    X, _ = datasets.spiral_data(samples, classes, seed=5)
    X_ref, _ = nnfs_call(nnfs_datasets.spiral_data, samples, classes)
    for c in range(classes):
        noise, noise_ref = arm_angle_noise(X, samples, c), arm_angle_noise(X_ref, samples, c)
        # Standard errors: 0.0014 on the mean, 0.001 on the standard deviation.
        assert abs(noise.mean()) < 0.01
        assert abs(noise.std() - 0.2) < 0.01
        assert abs(noise.std() - noise_ref.std()) < 0.01


def test_vertical_blobs_have_nnfs_centres_and_spread():
    """Class c is N((c / 3, 0.5), 0.1^2 I), as in nnfs."""
    samples, classes = 20_000, 4
    X, y = datasets.vertical_data(samples, classes, seed=5)
    X_ref, _ = nnfs_call(nnfs_datasets.vertical_data, samples, classes)
    for c in range(classes):
        blob, blob_ref = X[y == c], X_ref[y == c]
        # Standard errors: 0.0007 on each mean, 0.0005 on each standard deviation.
        np.testing.assert_allclose(blob.mean(axis=0), [c / 3, 0.5], atol=0.005)
        np.testing.assert_allclose(blob.std(axis=0), [0.1, 0.1], atol=0.005)
        np.testing.assert_allclose(blob.mean(axis=0), blob_ref.mean(axis=0), atol=0.005)
        assert abs(np.corrcoef(blob.T)[0, 1]) < 0.03  # the two axes are drawn independently


@pytest.mark.parametrize("samples", [1, 2, 7, 1000])
def test_sine_data_equals_nnfs(samples):
    X, y = datasets.sine_data(samples)
    X_ref, y_ref = nnfs_datasets.sine_data(samples)
    assert X.dtype == X_ref.dtype and y.dtype == y_ref.dtype
    assert X.shape == y.shape == (samples, 1)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_sine_data_default_size_equals_nnfs():
    X, y = datasets.sine_data()
    X_ref, y_ref = nnfs_datasets.sine_data()
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_labels_stay_correct_beyond_256_classes():
    """nnfs's uint8 labels wrap past 256 classes; ours widen there instead."""
    _, y = datasets.spiral_data(2, 300, seed=0)
    assert y.dtype == np.uint16
    assert int(y.max()) == 299
    assert np.bincount(y).tolist() == [2] * 300


def test_numpy_integers_are_accepted():
    X, y = datasets.vertical_data(np.int64(4), np.int32(2), seed=0)
    assert X.shape == (8, 2) and y.shape == (8,)


BAD = [(0, ValueError), (-3, ValueError), (2.5, TypeError), ("3", TypeError), (True, TypeError)]
BAD += [(None, TypeError), (3.0, TypeError)]


@pytest.mark.parametrize(("value", "error"), BAD)
@pytest.mark.parametrize("function", [datasets.spiral_data, datasets.vertical_data], ids=RANDOM_IDS)
def test_bad_samples_or_classes_are_refused_by_name(function, value, error):
    with pytest.raises(error, match="samples must be a positive integer"):
        function(value, 3, seed=0)
    with pytest.raises(error, match="classes must be a positive integer"):
        function(3, value, seed=0)


@pytest.mark.parametrize(("value", "error"), BAD)
def test_bad_sine_samples_are_refused_by_name(value, error):
    with pytest.raises(error, match="samples must be a positive integer"):
        datasets.sine_data(value)


def test_the_seed_network_learns_the_seeded_spiral(backend):
    """The batch example's 2-64-3 network, trained 600 epochs on spiral_data(300, 3, seed=0).

    Measured (numpy and strict alike): 0.827 training accuracy (evaluate), 0.789 over the last
    epoch; asserted with margin.
    """
    X, y = datasets.spiral_data(300, 3, seed=0)
    model = seed_model(backend, seed=0, learning_rate=0.02, decay=5e-5)
    history = model.train(X, y, epochs=600, batch_size=128, verbose=False)
    assert history["accuracy"][-1] > 0.72
    assert model.evaluate(X, y)["accuracy"] > 0.75
