"""The book's toy datasets, reproducible without touching NumPy's global random state.

These follow the algorithms of ``nnfs.datasets`` (shapes, dtypes, class-sorted labels and the
order of the random draws), but every random number comes from ``np.random.default_rng(seed)``:
the same seed always gives the same arrays, and no caller's ``np.random.seed`` is disturbed.
They return host NumPy arrays; a model moves them to its own device and dtype.

``seed`` is anything ``np.random.default_rng`` accepts: ``None`` (fresh entropy), an int, a
``SeedSequence`` or a ``Generator`` (drawn from, and so advanced).
"""

from __future__ import annotations

import numpy as np

from ._checks import positive_int

__all__ = ["sine_data", "spiral_data", "vertical_data"]

Seed = int | np.random.SeedSequence | np.random.Generator | None


def _labels(samples: int, classes: int) -> np.ndarray:
    """``samples`` copies of each class index, class by class, in nnfs's dtype (uint8).

    nnfs always uses uint8, which wraps beyond 256 classes; a wider unsigned type is used only
    there, so labels stay correct.
    """
    dtype = np.min_scalar_type(classes - 1)
    return np.repeat(np.arange(classes, dtype=dtype), samples)


def spiral_data(samples: int, classes: int, seed: Seed = None) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved spiral arms of ``samples`` points each: the book's main dataset.

    Arm ``c`` has radii evenly spaced over [0, 1] and angles ``2.5 * t`` where ``t`` runs evenly
    over [4c, 4c + 4] plus Gaussian noise of standard deviation 0.2. Returns ``X`` (float64,
    shape ``(samples * classes, 2)``) and ``y`` (uint8 class indices, sorted by class).
    """
    samples = positive_int(samples, "samples")
    classes = positive_int(classes, "classes")
    rng = np.random.default_rng(seed)
    radius = np.linspace(0.0, 1.0, samples)
    arms = []
    for c in range(classes):  # one draw per arm, in class order, as nnfs draws them
        theta = np.linspace(c * 4, (c + 1) * 4, samples) + rng.standard_normal(samples) * 0.2
        arms.append(np.column_stack((radius * np.sin(theta * 2.5), radius * np.cos(theta * 2.5))))
    return np.concatenate(arms), _labels(samples, classes)


def vertical_data(samples: int, classes: int, seed: Seed = None) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` Gaussian blobs side by side: a dataset simple enough for a random search.

    Class ``c`` is centred at ``(c / 3, 0.5)`` with standard deviation 0.1 on each axis.
    Returns ``X`` (float64, shape ``(samples * classes, 2)``) and ``y`` (uint8, class-sorted).
    """
    samples = positive_int(samples, "samples")
    classes = positive_int(classes, "classes")
    rng = np.random.default_rng(seed)
    blobs = []
    for c in range(classes):  # x noise then y noise for each class, as nnfs draws them
        x = rng.standard_normal(samples) * 0.1 + c / 3
        y = rng.standard_normal(samples) * 0.1 + 0.5
        blobs.append(np.column_stack((x, y)))
    return np.concatenate(blobs), _labels(samples, classes)


def sine_data(samples: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """One period of ``sin(2 * pi * x)`` on ``x = i / samples``: the book's regression data.

    It has no randomness (as in nnfs), hence no seed. Returns ``X`` and ``y``, both float64 of
    shape ``(samples, 1)``, equal to nnfs's ``sine_data(samples)``.
    """
    samples = positive_int(samples, "samples")
    X = np.arange(samples).reshape(-1, 1) / samples
    return X, np.sin(2 * np.pi * X)
