"""Check that the JAX side's optax Adam makes xpnn's update: same parameters in float64.

    python benchmarks/check_jax_adam.py [--steps 50]

A Dense layer's weights and biases go through ``--steps`` Adam steps with learning-rate decay,
once with xpnn's Adam (the book's protocol: pre_update_params, update_params,
post_update_params) and once with ``jax_side.adam``, from the same start and the same random
gradients (some of them zero, as a dead ReLU's are). Prints the largest difference, relative to
the largest parameter of its array: it should be at float64's rounding (about 1e-15), not a
formula's (a value near zero can differ by more relative to itself: the two round the same
formula in another order).
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax_side import adam  # noqa: E402

import xpnn  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    learning_rate, decay = 0.05, 1e-3
    rng = np.random.default_rng(0)
    layer = xpnn.Dense(64, 32, dtype="float64", seed=0)
    params = {"w": jnp.asarray(layer.weights), "b": jnp.asarray(layer.biases)}
    ours = xpnn.Adam(learning_rate=learning_rate, decay=decay)
    theirs = adam(learning_rate, decay)
    state = theirs.init(params)
    worst = 0.0
    for _ in range(args.steps):
        dweights = rng.standard_normal(layer.weights.shape) * (rng.random((64, 1)) < 0.8)
        dbiases = rng.standard_normal(layer.biases.shape)
        layer.dweights, layer.dbiases = dweights, dbiases
        ours.pre_update_params()
        ours.update_params(layer)
        ours.post_update_params()
        updates, state = theirs.update({"w": dweights, "b": dbiases}, state, params)
        params = optax.apply_updates(params, updates)
        for mine, other in ((layer.weights, params["w"]), (layer.biases, params["b"])):
            other = np.asarray(other)
            worst = max(worst, float(np.max(np.abs(mine - other)) / np.max(np.abs(mine))))
    print(f"{args.steps} Adam steps (lr {learning_rate}, decay {decay}, float64, 64x32 + 32)")
    print(
        "largest difference between xpnn's and optax's parameters over the largest parameter: "
        f"{worst:.2e}"
    )


if __name__ == "__main__":
    main()
