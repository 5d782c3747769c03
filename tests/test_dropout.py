"""Dropout: the rate of its mask, its scaling, inference, and a backward through the same mask."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_on_backend, spiral

import xpnn


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_mask_rate_and_scale(backend, rate):
    layer = xpnn.Dropout(rate, backend=backend, seed=0)
    be = layer.backend
    inputs = np.ones((400, 250))
    output = layer.forward(inputs, training=True)
    assert_on_backend(output, be)
    assert_on_backend(layer.binary_mask, be)
    assert layer.binary_mask.dtype == be.dtype
    values = xpnn.to_numpy(output)
    dropped = np.mean(values == 0)
    sigma = np.sqrt(rate * (1 - rate) / values.size)
    assert abs(dropped - rate) < 5 * sigma  # 100,000 draws: a 5-sigma band
    np.testing.assert_allclose(values[values != 0], 1 / (1 - rate), rtol=1e-6)
    # Scaled so the expected output equals the input.
    assert abs(values.mean() - 1) < 5 * sigma / (1 - rate)


def test_inference_passes_inputs_through(backend):
    layer = xpnn.Dropout(0.5, backend=backend, seed=0)
    inputs = np.random.default_rng(0).standard_normal((20, 30))
    np.testing.assert_array_equal(
        xpnn.to_numpy(layer.forward(inputs, training=False)), inputs.astype(np.float32)
    )
    upstream = layer.backend.asarray(np.ones((20, 30)))
    np.testing.assert_array_equal(xpnn.to_numpy(layer.backward(upstream)), 1)


def test_backward_uses_the_forward_mask(backend):
    layer = xpnn.Dropout(0.3, backend=backend, dtype="float64", seed=1)
    rng = np.random.default_rng(1)
    inputs = rng.uniform(1, 2, (50, 40))
    upstream = rng.standard_normal((50, 40))
    output = xpnn.to_numpy(layer.forward(inputs, training=True))
    dinputs = xpnn.to_numpy(layer.backward(layer.backend.asarray(upstream)))
    kept = output != 0
    np.testing.assert_array_equal(dinputs == 0, ~kept)
    np.testing.assert_allclose(dinputs[kept], upstream[kept] / 0.7, rtol=1e-12)
    # The gradient is the forward map's own derivative: output / inputs.
    np.testing.assert_allclose(dinputs, upstream * output / inputs, rtol=1e-12)


def test_masks_are_seeded_and_fresh_each_step(backend):
    first = xpnn.Dropout(0.5, backend=backend, seed=3)
    second = xpnn.Dropout(0.5, backend=backend, seed=3)
    inputs = np.ones((30, 30))
    a = xpnn.to_numpy(first.forward(inputs))
    np.testing.assert_array_equal(a, xpnn.to_numpy(second.forward(inputs)))
    assert not np.array_equal(a, xpnn.to_numpy(first.forward(inputs)))


def test_model_drops_in_training_only(backend):
    model = xpnn.Model(backend=backend, seed=0, dtype="float64")
    model.add(xpnn.Dense(4, 16))
    model.add(xpnn.Dropout(0.5))
    model.add(xpnn.Dense(16, 2))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    X = np.random.default_rng(0).standard_normal((8, 4))
    np.testing.assert_array_equal(xpnn.to_numpy(model.predict(X)), xpnn.to_numpy(model.predict(X)))
    a = xpnn.to_numpy(model.forward(model.backend.asarray(X), training=True))
    b = xpnn.to_numpy(model.forward(model.backend.asarray(X), training=True))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2])
def test_rate_out_of_range_is_refused(rate):
    with pytest.raises(ValueError, match="rate"):
        xpnn.Dropout(rate)


# -- masks keyed by (seed, stream, draw) ---------------------------------------------------------


def _dropout_model(backend, seed=5):
    model = xpnn.Model(backend=backend, seed=seed, dtype="float64")
    model.add(xpnn.Dense(2, 32))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.5))
    model.add(xpnn.Dense(32, 16))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.2))
    model.add(xpnn.Dense(16, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    return model


def _flat(model):
    return np.concatenate([np.ravel(xpnn.to_numpy(p)) for ps in model.get_parameters() for p in ps])


def test_saving_changes_no_mask(backend, tmp_path):
    """A run that saves (Model.save keeps the training state) draws the masks of one that
    never saves: saving reads no generator and reseeds nothing."""
    X, y = spiral(60, 3)
    never = _dropout_model(backend)
    never.train(X, y, epochs=4, batch_size=16, verbose=False)
    saving = _dropout_model(backend)
    for epoch in range(4):
        saving.train(X, y, epochs=1, batch_size=16, verbose=False)
        saving.save(tmp_path / f"epoch{epoch}.xpnn")
    np.testing.assert_array_equal(_flat(saving), _flat(never))


def test_a_run_saved_mid_way_resumes_exactly(backend, tmp_path):
    """Saved after 2 epochs, loaded, trained 2 more: the masks, and so the parameters and
    losses, are those of 4 epochs in one go (on CuPy too)."""
    X, y = spiral(60, 3)
    whole = _dropout_model(backend)
    expected = whole.train(X, y, epochs=4, batch_size=16, verbose=False)
    first = _dropout_model(backend)
    first.train(X, y, epochs=2, batch_size=16, verbose=False)
    first.save(tmp_path / "half.xpnn")
    resumed = xpnn.Model.load(tmp_path / "half.xpnn", backend=backend)
    rest = resumed.train(X, y, epochs=2, batch_size=16, verbose=False)
    assert rest["loss"] == expected["loss"][2:]
    np.testing.assert_array_equal(_flat(resumed), _flat(whole))


def test_a_mask_depends_on_seed_stream_and_draw_alone(backend):
    inputs = np.ones((40, 50))
    layer = xpnn.Dropout(0.5, backend=backend, seed=11)
    masks = [xpnn.to_numpy(layer.forward(inputs)) for _ in range(4)]
    assert layer.random_state() == {"seed": 11, "draws": 4}
    later = xpnn.Dropout(0.5, backend=backend, seed=11)
    later.set_random_state({"seed": 11, "draws": 2})  # straight to the third draw
    np.testing.assert_array_equal(xpnn.to_numpy(later.forward(inputs)), masks[2])
    np.testing.assert_array_equal(xpnn.to_numpy(later.forward(inputs)), masks[3])
    assert len({m.tobytes() for m in masks}) == 4  # a fresh mask every draw
    other = xpnn.Dropout(0.5, backend=backend, seed=11)
    other.stream = 1  # another rank
    assert not np.array_equal(xpnn.to_numpy(other.forward(inputs)), masks[0])
    for seed in (12, 11 + 2**40, 11 + 2**63, 11 + 2**100):  # every bit of the seed counts
        seeded = xpnn.Dropout(0.5, backend=backend, seed=seed)
        assert not np.array_equal(xpnn.to_numpy(seeded.forward(inputs)), masks[0]), seed


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masks_drawn_on_the_device_are_uniform(backend, dtype):
    """Every backend's numbers lie in [0, 1) and are uniform: the fraction below each tenth
    within 5 sigma of it, over 200,000 values (the CuPy path computes them on the device)."""
    from xpnn import masks

    be = xpnn.get_backend(backend, dtype)
    values, _ = masks.uniform(be, 2**70 + 3, 0, 9, (400, 500), None)
    assert_on_backend(values, be)
    assert values.dtype == be.dtype and tuple(values.shape) == (400, 500)
    host = xpnn.to_numpy(values)
    assert host.min() >= 0 and host.max() < 1
    sigma = np.sqrt(0.25 / host.size)
    for cut in np.arange(0.1, 1.0, 0.1):
        assert abs(np.mean(host < cut) - cut) < 5 * sigma


def test_device_masks_need_no_transfer_and_no_read(backend):
    """On the CuPy stand-in a training forward pass sends nothing to the device for its mask
    and reads nothing back."""
    import sys

    cupy_api = sys.modules.get("cupy_api")
    if backend != "cupy" or cupy_api is None or sys.modules.get("cupy") is not cupy_api._standin:
        pytest.skip("counts the CuPy stand-in's calls")
    layer = xpnn.Dropout(0.3, backend=backend, seed=1)
    inputs = layer.backend.asarray(np.ones((64, 32)))
    layer.forward(inputs)
    before = dict(cupy_api.counts)
    syncs = cupy_api.syncs()
    layer.forward(inputs)
    called = {k: v - before.get(k, 0) for k, v in cupy_api.counts.items() if v != before.get(k, 0)}
    assert cupy_api.syncs() == syncs
    assert not {"asarray", "array", "ndarray.set"} & set(called), called


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_host_draws_are_those_of_a_stream_positioned_afresh(dtype):
    """The host source moves on from where its last draw left it (one ``advance``): in any
    order of draws and for odd sizes, it gives what a PCG64 started afresh at the draw's
    position gives."""
    from xpnn import masks

    def afresh(draw, shape):
        bits = np.random.PCG64(np.random.SeedSequence(9, spawn_key=(2,)))
        bits.advance(draw << masks.DRAW_SPACING)
        return np.random.Generator(bits).random(shape, dtype=dtype)

    source = masks.HostSource(9, 2)
    sizes = np.random.default_rng(1)
    for draw in [0, 1, 2, 5, 5, 3, 4, 10, 0, 1]:
        shape = tuple(int(n) for n in sizes.integers(1, 8, 2))
        np.testing.assert_array_equal(source.uniform(draw, shape, dtype), afresh(draw, shape))


@pytest.mark.parametrize(
    ("name", "saved_on"),
    [
        ("format1_checkpoint.safetensors", "numpy"),
        ("cupy_dropout_seed_checkpoint.safetensors", "cupy"),
    ],
    ids=["numpy-generator-state", "cupy-generator-seed"],
)
def test_files_saved_before_keyed_masks_load_and_go_on_alike(backend, name, saved_on):
    """Checkpoints the previous version wrote (a NumPy PCG64 state, or the seed CuPy's
    generator was replaced with) load on every backend; the masks start afresh from the seed
    the file gives, the same at every load, so two loads train on to the same parameters."""
    import json
    import pathlib

    from safetensors import safe_open

    path = pathlib.Path(__file__).parent / "data" / name
    with safe_open(path, "np") as file:
        (entry,) = json.loads(file.metadata()["state"])["dropout"].values()
    if saved_on == "numpy":
        host = np.random.Generator(np.random.PCG64())
        host.bit_generator.state = entry["state"]
        seed = int(host.integers(2**63))
    else:
        seed = entry["seed"]
    X, y = spiral(20, 3)
    runs = []
    for _ in range(2):
        model = xpnn.Model.load(path, backend=backend)
        (layer,) = [layer for layer in model.layers if isinstance(layer, xpnn.Dropout)]
        assert layer.random_state() == {"seed": seed, "draws": 0}
        start = model.optimizer.iterations
        model.train(X, y, epochs=2, batch_size=16, verbose=False)
        assert layer.draws == model.optimizer.iterations - start  # one mask a step
        runs.append(_flat(model))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_device_numbers_are_splitmix64_of_the_index(backend, dtype):
    """CuPy's numbers, element by element, are splitmix64's output for (key + (i + 1) * gamma)
    cut to the dtype's mantissa: the device arithmetic wraps at 64 bits as Python's masked."""
    from xpnn import masks

    be = xpnn.get_backend(backend, dtype)
    if not hasattr(be, "keyed_uniform"):
        pytest.skip("the host backends draw from PCG64 (see the test above)")
    key = masks.device_key(2**70 + 3, 1, 41)
    bits = 24 if dtype == "float32" else 53
    expected = [
        (masks._mix((key + (i + 1) * masks.GOLDEN) % 2**64) >> (64 - bits)) / 2**bits
        for i in range(12)
    ]
    got = xpnn.to_numpy(be.keyed_uniform(key, (3, 4)))
    np.testing.assert_array_equal(got.ravel(), np.array(expected, dtype=dtype))
