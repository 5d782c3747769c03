"""Adam against values worked by hand, and its fast paths against the generic reference."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from helpers import assert_on_backend
from parts import OPTIMIZERS

import xpnn
from xpnn.optimizers import FLUSH_EVERY


def _layer_with_gradients(be, weights, dweights, biases, dbiases):
    layer = xpnn.Dense(1, 2, backend=be)
    layer.weights = be.asarray(weights)
    layer.dweights = be.asarray(dweights)
    layer.biases = be.asarray(biases)
    layer.dbiases = be.asarray(dbiases)
    return layer


def test_adam_two_steps_with_decay_by_hand(backend):
    be = xpnn.get_backend(backend, "float64")
    layer = _layer_with_gradients(be, [[1.0, -2.0]], [[0.5, -0.25]], [[0.0, 3.0]], [[1.0, 0.1]])
    adam = xpnn.Adam(learning_rate=0.1, decay=0.5, epsilon=1e-7, beta_1=0.9, beta_2=0.999)

    adam.pre_update_params()
    adam.update_params(layer)
    adam.post_update_params()
    # Step 1: lr = 0.1; m = 0.1 g, c = 0.001 g^2; corrected by 0.1 and 0.001 they are g and g^2,
    # so each parameter moves by -0.1 * g / (|g| + 1e-7).
    assert adam.current_learning_rate == 0.1
    step1 = [1.0 - 0.1 * 0.5 / (0.5 + 1e-7), -2.0 + 0.1 * 0.25 / (0.25 + 1e-7)]
    np.testing.assert_allclose(xpnn.to_numpy(layer.weights), [step1], rtol=1e-12)
    np.testing.assert_allclose(xpnn.to_numpy(layer.weight_momentums), [[0.05, -0.025]], rtol=1e-12)
    np.testing.assert_allclose(
        xpnn.to_numpy(layer.weight_cache), [[0.00025, 0.0000625]], rtol=1e-12
    )
    np.testing.assert_allclose(
        xpnn.to_numpy(layer.biases), [[-0.1 * 1.0 / (1.0 + 1e-7), 3.0 - 0.1 * 0.1 / (0.1 + 1e-7)]]
    )

    # Step 2, new gradient (0.1, 0.2): lr = 0.1 / (1 + 0.5 * 1); bias corrections on t = 2.
    layer.dweights[...] = be.asarray([[0.1, 0.2]])
    adam.pre_update_params()
    adam.update_params(layer)
    adam.post_update_params()
    lr = 0.1 / 1.5
    m = [0.9 * 0.05 + 0.1 * 0.1, 0.9 * -0.025 + 0.1 * 0.2]  # 0.055, -0.0025
    c = [0.999 * 0.00025 + 0.001 * 0.01, 0.999 * 0.0000625 + 0.001 * 0.04]
    expected = [
        w - lr * (mi / (1 - 0.9**2)) / (math.sqrt(ci / (1 - 0.999**2)) + 1e-7)
        for w, mi, ci in zip(step1, m, c)
    ]
    assert adam.iterations == 2
    assert adam.current_learning_rate == pytest.approx(lr, rel=1e-15)
    np.testing.assert_allclose(xpnn.to_numpy(layer.weights), [expected], rtol=1e-12)
    assert_on_backend(layer.weights, be)
    assert_on_backend(layer.weight_momentums, be)


def _rule(name):
    """The module of an optimizer's update (its versions side by side), and the optimizer."""
    cls = type(OPTIMIZERS[name].make())
    return sys.modules[cls.__module__], cls


#: Each optimizer's update: the arrays it takes and its scalars for a step (tests/parts.py).
UPDATES = {name: (rule.arrays, rule.scalars) for name, rule in OPTIMIZERS.items()}
#: Each update's module (its versions) and optimizer (which picks one for a backend).
RULES = {name: _rule(name) for name in OPTIMIZERS}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("update", [*UPDATES, "SGD-plain"])
@pytest.mark.parametrize("size", [50, 300_007, (70, 30)], ids=["small", "large", "transposed"])
def test_fast_paths_match_reference(backend, dtype, update, size):
    """The version an optimizer picks for the backend gives what the array-API reference
    gives, step after step through the same scratch, also on arrays it cannot view as flat
    (transposed)."""
    plain = update == "SGD-plain"
    settings = UPDATES["SGD"][1] if plain else UPDATES[update][1]
    _check_fast_path(backend, dtype, update, size, settings)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("update", ["Adam", "AdamW"])
@pytest.mark.parametrize("step", [200, 40_000], ids=["corrected_momentum", "both"])
@pytest.mark.parametrize("size", [300_007, (70, 30)], ids=["large", "transposed"])
def test_adam_late_steps_match_reference(backend, dtype, update, step, size):
    """Late in training Adam's bias corrections round to 1 (at step 200 the momentum's in
    float32, at step 40,000 both in both types) and the compiled loop leaves out dividing by
    them: still the reference's numbers."""
    settings = {
        **UPDATES[update][1],
        "correction_1": 1 - 0.9**step,
        "correction_2": 1 - 0.999**step,
    }
    _check_fast_path(backend, dtype, update, size, settings)


def _check_fast_path(backend, dtype, update, size, settings):
    """Three steps of ``update``'s version for the backend against the reference's."""
    be = xpnn.get_backend(backend, dtype)
    plain = update == "SGD-plain"
    arrays = 1 if plain else UPDATES[update][0]
    rng = np.random.default_rng(3)
    state = [rng.standard_normal(size)] + [rng.random(size) for _ in range(arrays - 1)]
    layout = (lambda a: a.T) if isinstance(size, tuple) else (lambda a: a)
    fast = [layout(be.asarray(a)) for a in state]
    reference = [layout(be.asarray(np.array(a))) for a in state]
    module, optimizer = RULES["SGD" if plain else update]
    fast_update = optimizer.versions.get(be.fast_path, module.reference_update)
    extra = (None,) if plain else ()
    scratch = {}
    for _ in range(3):
        grad = layout(be.asarray(rng.standard_normal(size)))
        fast_update(be, scratch, fast[0], grad, *fast[1:], *extra, **settings)
        module.reference_update(be, {}, reference[0], grad, *reference[1:], *extra, **settings)
    for a, b in zip(fast, reference):
        assert_on_backend(a, be)
        # Same operations in the same order: identical on the CPU; a fused GPU kernel may
        # contract multiply-adds, hence the small tolerance.
        np.testing.assert_allclose(xpnn.to_numpy(a), xpnn.to_numpy(b), rtol=1e-6, atol=1e-7)
        if backend == "numpy":
            np.testing.assert_array_equal(a, b)


def test_model_step_equals_layer_by_layer_step(backend):
    """Adam over the model's flat buffer updates as the book's per-layer calls do."""
    from helpers import seed_model, spiral

    X, y = spiral(20, 3)
    model = seed_model(backend, seed=5, dtype="float64")
    layers = [xpnn.Dense(2, 64, backend=model.backend), xpnn.Dense(64, 3, backend=model.backend)]
    for layer, (w, b) in zip(layers, model.get_parameters()):
        layer.weights, layer.biases = model.backend.asarray(w), model.backend.asarray(b)
    relu = xpnn.ReLU(backend=model.backend)
    head = xpnn.SoftmaxCategoricalCrossentropy(backend=model.backend)
    adam = xpnn.Adam(learning_rate=0.05, decay=5e-7)

    model.train(X, y, epochs=3, shuffle=False, verbose=False)
    for _ in range(3):
        layers[0].forward(X)
        relu.forward(layers[0].output)
        layers[1].forward(relu.output)
        head.forward(layers[1].output, y)
        head.backward(head.output, y)
        layers[1].backward(head.dinputs)
        relu.backward(layers[1].dinputs)
        layers[0].backward(relu.dinputs)
        adam.pre_update_params()
        adam.update_params(layers[0])
        adam.update_params(layers[1])
        adam.post_update_params()

    for (w, b), layer in zip(model.get_parameters(), layers):
        np.testing.assert_allclose(w, xpnn.to_numpy(layer.weights), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, xpnn.to_numpy(layer.biases), rtol=1e-10, atol=1e-12)


def _two_steps(backend, optimizer):
    """Two steps on one weight, 1.0, with gradients 0.5 then 0.2; the weights after each."""
    be = xpnn.get_backend(backend, "float64")
    layer = _layer_with_gradients(be, [[1.0, 1.0]], [[0.5, 0.5]], [[0.0, 0.0]], [[0.0, 0.0]])
    after = []
    for gradient in (0.5, 0.2):
        layer.dweights[...] = be.asarray([[gradient, gradient]])
        optimizer.pre_update_params()
        optimizer.update_params(layer)
        optimizer.post_update_params()
        assert_on_backend(layer.weights, be)
        after.append(float(xpnn.to_numpy(layer.weights)[0, 0]))
    return after


# Worked by hand: learning rate 0.1, decay 0.5, so 0.1 on step 1 and 0.1 / 1.5 on step 2.
LR2 = 0.1 / 1.5
BY_HAND = {
    "sgd": (
        lambda: xpnn.SGD(learning_rate=0.1, decay=0.5),
        [1 - 0.1 * 0.5, 1 - 0.05 - LR2 * 0.2],
    ),
    "sgd-momentum": (
        # updates: -0.05, then 0.9 * -0.05 - LR2 * 0.2
        lambda: xpnn.SGD(learning_rate=0.1, decay=0.5, momentum=0.9),
        [0.95, 0.95 + 0.9 * -0.05 - LR2 * 0.2],
    ),
    "adagrad": (
        # cache: 0.25, then 0.25 + 0.04
        lambda: xpnn.Adagrad(learning_rate=0.1, decay=0.5),
        [
            1 - 0.1 * 0.5 / (0.5 + 1e-7),
            1 - 0.1 * 0.5 / (0.5 + 1e-7) - LR2 * 0.2 / (math.sqrt(0.29) + 1e-7),
        ],
    ),
    "rmsprop": (
        # cache: 0.1 * 0.25 = 0.025, then 0.9 * 0.025 + 0.1 * 0.04 = 0.0265
        lambda: xpnn.RMSprop(learning_rate=0.1, decay=0.5, rho=0.9),
        [
            1 - 0.1 * 0.5 / (math.sqrt(0.025) + 1e-7),
            1 - 0.1 * 0.5 / (math.sqrt(0.025) + 1e-7) - LR2 * 0.2 / (math.sqrt(0.0265) + 1e-7),
        ],
    ),
}


@pytest.mark.parametrize("name", BY_HAND.keys())
def test_optimizer_steps_by_hand(backend, name):
    make, expected = BY_HAND[name]
    np.testing.assert_allclose(_two_steps(backend, make()), expected, rtol=1e-12)


def test_optimizer_defaults_follow_the_book():
    assert (xpnn.SGD().learning_rate, xpnn.SGD().momentum) == (1.0, 0.0)
    assert (xpnn.Adagrad().learning_rate, xpnn.Adagrad().epsilon) == (1.0, 1e-7)
    rmsprop = xpnn.RMSprop()
    assert (rmsprop.learning_rate, rmsprop.epsilon, rmsprop.rho) == (0.001, 1e-7, 0.9)
    adam = xpnn.Adam()
    assert (adam.learning_rate, adam.decay, adam.epsilon, adam.beta_1, adam.beta_2) == (
        0.001,
        0.0,
        1e-7,
        0.9,
        0.999,
    )


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        ("learning_rate", 0.0, ValueError),
        ("learning_rate", -1.0, ValueError),
        ("learning_rate", float("nan"), ValueError),
        ("learning_rate", "0.1", TypeError),
        ("decay", -1e-3, ValueError),
        ("epsilon", 0.0, ValueError),
        ("beta_1", 1.0, ValueError),
        ("beta_2", -0.1, ValueError),
    ],
)
def test_adam_refuses_bad_settings(argument, value, error):
    with pytest.raises(error, match=argument):
        xpnn.Adam(**{argument: value})


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: xpnn.SGD(momentum=1.5), "momentum"),
        (lambda: xpnn.SGD(learning_rate=-1), "learning_rate"),
        (lambda: xpnn.Adagrad(epsilon=-1e-7), "epsilon"),
        (lambda: xpnn.RMSprop(rho=1.0), "rho"),
        (lambda: xpnn.RMSprop(decay=-1), "decay"),
    ],
)
def test_other_optimizers_refuse_bad_settings(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("make", "states"),
    [
        (lambda: xpnn.Adam(learning_rate=0.05), ("weight_momentums", "weight_cache")),
        (lambda: xpnn.SGD(learning_rate=0.05, momentum=0.9), ("weight_momentums",)),
        (lambda: xpnn.RMSprop(learning_rate=0.05), ("weight_cache",)),
    ],
    ids=["adam", "sgd-momentum", "rmsprop"],
)
def test_subnormal_states_are_flushed_every_flush_every_steps(backend, dtype, make, states):
    """A state whose gradient stays zero decays into the subnormals and stays there (0.9 times
    the smallest rounds back to it); the optimizer zeroes such values every FLUSH_EVERY steps
    and leaves the others as they are."""
    be = xpnn.get_backend(backend, dtype)
    smallest = float(np.finfo(dtype).smallest_subnormal)
    layer = _layer_with_gradients(be, [[1.0, -2.0]], [[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]])
    optimizer = make()
    for name in states:  # one subnormal and one normal value that is too big to decay away
        setattr(layer, name, be.asarray([[smallest, 0.5]]))

    def step():
        optimizer.pre_update_params()
        optimizer.update_params(layer)
        optimizer.post_update_params()

    for _ in range(FLUSH_EVERY - 1):
        step()
    # Stuck, not decayed; except on a GPU, whose kernels flush float32 subnormals at once
    # (CuPy compiles them with -ftz=true). Either way none lingers past the flush below.
    stuck = {smallest, 0.0} if backend == "cupy" and dtype == "float32" else {smallest}
    for name in states:
        assert xpnn.to_numpy(getattr(layer, name))[0, 0] in stuck, name
    kept = [xpnn.to_numpy(getattr(layer, name))[0, 1] for name in states]
    step()
    for name, before in zip(states, kept):
        after = xpnn.to_numpy(getattr(layer, name))[0]
        assert after[0] == 0, name
        assert 0 < after[1] < before, name  # the normal value decays as before


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("which", OPTIMIZERS)
def test_optimizers_flush_the_states_they_declare(backend, dtype, which):
    """``flushed_states`` (which the compiled epoch reads) are the states ``update`` flushes:
    a subnormal value whose gradient stays zero is zeroed at step FLUSH_EVERY in those, and
    stays in the others (Adagrad's sum)."""
    be = xpnn.get_backend(backend, dtype)
    smallest = float(np.finfo(dtype).smallest_subnormal)
    layer = _layer_with_gradients(be, [[1.0, -2.0]], [[0.0, 0.0]], [[0.5, 0.5]], [[0.0, 0.0]])
    optimizer = OPTIMIZERS[which].make()
    kept = optimizer.kept_states()
    assert set(optimizer.flushed_states) <= set(optimizer.state_names)
    for name in kept:
        setattr(layer, f"weight_{name}", be.asarray([[smallest, smallest]]))
    for _ in range(FLUSH_EVERY):
        optimizer.pre_update_params()
        optimizer.update_params(layer)
        optimizer.post_update_params()
    for name in kept:
        state = xpnn.to_numpy(getattr(layer, f"weight_{name}"))
        expected = {0.0} if name in optimizer.flushed_states else {smallest}
        if backend == "cupy" and dtype == "float32":
            expected.add(0.0)  # CuPy compiles its kernels with -ftz=true: flushed at once
        assert state.shape == (1, 2) and set(state.ravel().tolist()) <= expected, name


@pytest.mark.parametrize("which", OPTIMIZERS)
def test_optimizers_keep_the_state_they_declare(which):
    """What an optimizer keeps on a layer is what its ``state_names`` declare, which saving and
    the model's snapshot read."""
    be = xpnn.get_backend("numpy", "float64")
    layer = _layer_with_gradients(be, [[1.0, -2.0]], [[0.5, 0.1]], [[0.0, 0.0]], [[0.2, 0.3]])
    before = set(vars(layer))
    optimizer = OPTIMIZERS[which].make()
    optimizer.pre_update_params()
    optimizer.update_params(layer)
    optimizer.post_update_params()
    prefixes = [prefix for prefix, _, _ in layer.trainable_parameters()]
    expected = {f"{prefix}_{name}" for prefix in prefixes for name in optimizer.state_names}
    assert set(vars(layer)) - before == expected


@pytest.mark.parametrize("thing", [None, "dense", np.ones(3)])
def test_update_params_names_what_is_not_a_layer(thing):
    """The manual loop's ``optimizer.update_params(dense1)`` with something else."""
    with pytest.raises(TypeError, match="layer must be an xpnn layer"):
        xpnn.Adam().update_params(thing)
