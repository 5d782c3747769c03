"""JAX side of a benchmark (CPU): the same network, optimizer and batching as xpnn's.

Two ways to run an epoch: ``step``, one jitted call per training step (the loop over batches
in Python, as xpnn's and PyTorch's); ``epoch``, one jitted call per epoch, the batches run by
``lax.scan`` (the whole loop compiled by XLA). The update is optax's Adam matched to xpnn's
(``adam``; benchmarks/check_jax_adam.py checks it against xpnn's Adam in float64).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from workloads import Workload


def adam(learning_rate: float, decay: float, epsilon: float = 1e-7) -> optax.GradientTransformation:
    """xpnn's Adam as optax's: rate ``lr / (1 + decay * t)`` (t: steps before this one),
    epsilon added outside the square root, betas 0.9 and 0.999."""
    if decay:
        rate = lambda count: learning_rate / (1.0 + decay * count)  # noqa: E731
    else:
        rate = learning_rate
    return optax.adam(rate, b1=0.9, b2=0.999, eps=epsilon, eps_root=0.0)


def forward(params: list[tuple[jax.Array, jax.Array]], X: jax.Array) -> jax.Array:
    """Dense layers with ReLU between them; the last layer's logits."""
    for weights, biases in params[:-1]:
        X = jax.nn.relu(X @ weights + biases)
    weights, biases = params[-1]
    return X @ weights + biases


def build(
    workload: Workload,
    X: np.ndarray,
    y: np.ndarray,
    initial: list[tuple[np.ndarray, np.ndarray]],
    mode: str,
    seed: int = 0,
) -> Callable[[int], tuple[float, float, int, int]]:
    """A function that trains ``epochs`` more epochs and returns (loss, accuracy, steps run,
    host reads: one per call). ``initial``: the (weights, biases) of each Dense layer."""
    optimizer = adam(workload.learning_rate, workload.decay)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in initial]
    state = optimizer.init(params)
    X_d, y_d = jnp.asarray(X), jnp.asarray(y)
    samples, batch_size = X.shape[0], workload.batch_size
    full, rest = divmod(samples, batch_size)

    def loss_of(params, batch_X, batch_y):
        logits = forward(params, batch_X)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch_y)
        return jnp.mean(losses), logits

    def step(params, state, indices):
        batch_X, batch_y = X_d[indices], y_d[indices]
        (loss, logits), grads = jax.value_and_grad(loss_of, has_aux=True)(params, batch_X, batch_y)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        right = jnp.sum(jnp.argmax(logits, axis=1) == batch_y)
        return params, state, loss * indices.shape[0], right

    def epoch(params, state, key):
        order = jax.random.permutation(key, samples)

        def body(carry, indices):
            params, state, loss_sum, correct = carry
            params, state, loss, right = step(params, state, indices)
            return (params, state, loss_sum + loss, correct + right), None

        carry = (params, state, jnp.zeros((), X_d.dtype), jnp.zeros((), jnp.int32))
        batches = order[: full * batch_size].reshape(full, batch_size)
        carry, _ = jax.lax.scan(body, carry, batches)
        if rest:
            params, state, loss_sum, correct = carry
            params, state, loss, right = step(params, state, order[full * batch_size :])
            carry = (params, state, loss_sum + loss, correct + right)
        return carry

    def step_at(params, state, loss_sum, correct, order, start, size):
        indices = jax.lax.dynamic_slice_in_dim(order, start, size)
        params, state, loss, right = step(params, state, indices)
        return params, state, loss_sum + loss, correct + right

    step_jit = jax.jit(step_at, static_argnums=6)  # one compiled step per batch size
    epoch_jit = jax.jit(epoch)
    permutation = jax.jit(lambda key: jax.random.permutation(key, samples))
    key = jax.random.PRNGKey(seed)
    steps_per_epoch = full + (rest > 0)

    def train(epochs: int) -> tuple[float, float, int, int]:
        nonlocal params, state, key
        sums = []
        for _ in range(epochs):
            key, subkey = jax.random.split(key)
            if mode == "epoch":
                params, state, loss_sum, correct = epoch_jit(params, state, subkey)
            else:
                order = permutation(subkey)
                loss_sum = jnp.zeros((), X_d.dtype)
                correct = jnp.zeros((), jnp.int32)
                for start in range(0, samples, batch_size):
                    size = min(batch_size, samples - start)
                    params, state, loss_sum, correct = step_jit(
                        params, state, loss_sum, correct, order, start, size
                    )
            sums.append((loss_sum, correct))
        loss, correct = jax.device_get(sums[-1])  # the one host read
        return float(loss) / samples, float(correct) / samples, epochs * steps_per_epoch, 1

    return train


def library_info() -> dict[str, str]:
    """Versions of what this side runs on."""
    return {"jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__}
