"""``xpnn.book``: the book's names, signatures and attributes, its random numbers, the arrays a
script reads on a device, the final Model's files, and ``seed=None`` of xpnn's own layers.

(The printed lines of whole book-style scripts are compared in test_book_scripts.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import xpnn
import xpnn.book
from xpnn.book import (
    Accuracy_Categorical,
    Accuracy_Regression,
    Activation_ReLU,
    Activation_Softmax,
    Activation_Softmax_Loss_CategoricalCrossentropy,
    Layer_Dense,
    Layer_Dropout,
    Loss_CategoricalCrossentropy,
    Model,
    OnDevice,
    Optimiser_Adam,
    Optimizer_Adagrad,
    Optimizer_Adam,
    Optimizer_RMSprop,
    Optimizer_SGD,
)

BOOK_NAMES = {
    "Layer_Dense", "Layer_Dropout", "Layer_Input", "Activation_ReLU", "Activation_Softmax",
    "Activation_Sigmoid", "Activation_Linear", "Optimizer_SGD", "Optimizer_Adagrad",
    "Optimizer_RMSprop", "Optimizer_Adam", "Loss", "Loss_CategoricalCrossentropy",
    "Activation_Softmax_Loss_CategoricalCrossentropy", "Loss_BinaryCrossentropy",
    "Loss_MeanSquaredError", "Loss_MeanAbsoluteError", "Accuracy", "Accuracy_Categorical",
    "Accuracy_Regression", "Model", "Optimiser_Adam",
}  # fmt: skip


@pytest.fixture
def book(backend):
    """The book's objects made in the test compute on ``backend``; NumPy again afterwards."""
    xpnn.book.use(backend)
    yield backend
    xpnn.book.use("numpy")


def spiral(samples: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A small float32 spiral (as after nnfs.init()), three classes."""
    X, y = xpnn.datasets.spiral_data(samples, 3, seed=0)
    return X.astype(np.float32), y


def test_star_import_gives_the_book_names_only():
    """``from xpnn.book import *`` brings every class of the book's final code and the
    notebook's ``Optimiser_Adam``, and nothing else (``use`` is imported by name)."""
    names: dict = {}
    exec("from xpnn.book import *", names)
    assert set(names) - {"__builtins__"} == BOOK_NAMES
    assert callable(xpnn.book.use)


def test_weights_and_masks_come_from_numpys_global_generator(book):
    """``np.random.seed`` gives the book's numbers: weights ``0.01 * randn`` in the order the
    layers are made, dropout masks ``binomial(1, 1 - rate) / (1 - rate)``."""
    np.random.seed(3)
    expected_1 = 0.01 * np.random.randn(2, 5)
    expected_2 = 0.01 * np.random.randn(5, 3)
    x = np.random.randn(4, 5)
    expected_mask = np.random.binomial(1, 0.75, size=(4, 5)) / 0.75
    np.random.seed(3)
    dense1, dense2 = Layer_Dense(2, 5), Layer_Dense(5, 3)
    np.random.randn(4, 5)
    dropout = Layer_Dropout(0.25)
    dropout.forward(x)
    assert dense1.weights.dtype == np.float64  # the drawn weights' dtype, as the book keeps them
    np.testing.assert_array_equal(np.asarray(dense1.weights), expected_1)
    np.testing.assert_array_equal(np.asarray(dense2.weights), expected_2)
    np.testing.assert_array_equal(np.asarray(dense1.biases), np.zeros((1, 5)))
    assert dropout.rate == 0.75  # the book keeps the fraction kept
    np.testing.assert_allclose(np.asarray(dropout.output), x * expected_mask, rtol=1e-12)
    dropout.forward(x, training=False)
    np.testing.assert_array_equal(np.asarray(dropout.output), x)


def test_the_hand_written_loop_keeps_the_books_attributes(book):
    """Attributes a script reads: outputs, gradients, the optimizer's rate, step count and the
    state it keeps on each layer, all with the book's shapes and values."""
    X, y = spiral()
    np.random.seed(0)
    dense1 = Layer_Dense(2, 8, weight_regularizer_l2=5e-4)
    relu = Activation_ReLU()
    dense2 = Layer_Dense(8, 3)
    head = Activation_Softmax_Loss_CategoricalCrossentropy()
    optimizer = Optimizer_Adam(learning_rate=0.05, decay=1e-3)
    for _ in range(3):
        dense1.forward(X)
        relu.forward(dense1.output)
        dense2.forward(relu.output)
        loss = head.forward(dense2.output, y)
        head.backward(head.output, y)
        dense2.backward(head.dinputs)
        relu.backward(dense2.dinputs)
        dense1.backward(relu.dinputs)
        before = np.array(np.asarray(dense1.weights))
        optimizer.pre_update_params()
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.post_update_params()
    assert optimizer.iterations == 3
    assert optimizer.current_learning_rate == 0.05 * (1.0 / (1.0 + 1e-3 * 2))
    for name, shape in (("weight_momentums", (2, 8)), ("weight_cache", (2, 8))):
        assert np.asarray(getattr(dense1, name)).shape == shape
    assert np.asarray(dense1.bias_cache).shape == (1, 8)
    assert np.all(np.asarray(dense1.weight_cache) > 0)
    assert np.asarray(dense1.dweights).shape == (2, 8)
    assert np.asarray(dense2.dbiases).shape == (1, 3)
    assert not np.array_equal(np.asarray(dense1.weights), before)  # updated in place
    assert 0 < float(loss) < 2
    probabilities = np.asarray(head.output)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    # The combined gradient is the book's: (softmax - one_hot) / n.
    one_hot = np.eye(3)[y]
    np.testing.assert_allclose(
        np.asarray(head.dinputs), (probabilities - one_hot) / len(y), rtol=1e-5, atol=1e-8
    )
    # Every optimizer updates a layer of the script's own (NumPy arrays, the book's names).
    own = type("Own", (), {})()
    own.weights, own.biases = np.ones((2, 2)), np.zeros((1, 2))
    own.dweights, own.dbiases = np.ones((2, 2)), np.ones((1, 2))
    sgd = Optimizer_SGD(learning_rate=0.5, momentum=0.9)
    sgd.update_params(own)
    np.testing.assert_allclose(own.weights, 0.5)
    np.testing.assert_allclose(own.weight_momentums, -0.5)


def test_loss_calculate_in_every_chapters_form(book):
    """``calculate`` with and without the penalty, the penalty per layer (Chapters 14 to 17)
    and over the remembered layers (the final code), and the sums of a pass."""
    X, y = spiral(20)
    np.random.seed(1)
    dense = Layer_Dense(2, 3, weight_regularizer_l1=1e-3, bias_regularizer_l2=1e-2)
    dense.biases = np.full((1, 3), 0.5)
    softmax, loss = Activation_Softmax(), Loss_CategoricalCrossentropy()
    dense.forward(X)
    softmax.forward(dense.output)
    weights = np.asarray(dense.weights)
    penalty = 1e-3 * np.abs(weights).sum() + 1e-2 * 0.75
    assert float(loss.regularization_loss(dense)) == pytest.approx(penalty, rel=1e-5)
    loss.remember_trainable_layers([dense])
    loss.new_pass()
    data_loss, regularization_loss = loss.calculate(softmax.output, y, include_regularization=True)
    assert float(regularization_loss) == pytest.approx(penalty, rel=1e-5)
    probabilities = np.asarray(softmax.output)
    expected = -np.log(np.clip(probabilities[range(len(y)), y], 1e-7, 1 - 1e-7))
    assert float(data_loss) == pytest.approx(expected.mean(), rel=1e-5)
    first_ten = loss.calculate(probabilities[:10], y[:10])  # host data moves to the device
    assert float(first_ten) == pytest.approx(expected[:10].mean(), rel=1e-5)
    assert loss.accumulated_count == len(y) + 10
    assert float(loss.calculate_accumulated()) == pytest.approx(
        (expected.sum() + expected[:10].sum()) / (len(y) + 10), rel=1e-5
    )
    accuracy = Accuracy_Categorical()
    accuracy.new_pass()
    right = float(accuracy.calculate(softmax.predictions(softmax.output), y))
    assert right == pytest.approx(np.mean(probabilities.argmax(axis=1) == y))
    assert float(accuracy.calculate_accumulated()) == pytest.approx(right)


def test_what_a_script_reads_works_on_every_backend(book):
    """On a device the outputs read as NumPy arrays: ``np.argmax``, comparison with host
    labels, ``np.mean``, f-strings, indexing; sums with Python numbers stay on the device."""
    X, y = spiral(20)
    np.random.seed(2)
    dense = Layer_Dense(2, 3)
    head = Activation_Softmax_Loss_CategoricalCrossentropy()
    dense.forward(X)
    loss = head.forward(dense.output, y)
    if book != "numpy":
        assert type(head.output) is OnDevice
    predictions = np.argmax(head.output, axis=1)
    assert isinstance(predictions, np.ndarray) and predictions.shape == (len(y),)
    accuracy = np.mean(predictions == y)
    assert 0 <= accuracy <= 1
    total = 0
    total += loss
    total += loss
    if book != "numpy":
        assert type(total) is OnDevice  # no transfer until it is printed
    assert f"{total / 2:.3f}" == f"{float(loss):.3f}"
    assert np.asarray(head.output)[:2].shape == (2, 3)
    assert head.output[:2].shape == (2, 3)
    assert len(head.output) == len(y)
    assert str(head.output[0])


def test_model_prints_as_the_books_final_code(book, capsys):
    """Chapter 22's lines: ``epoch: N``, a step line every ``print_every`` steps and at the
    last, the epoch's ``training`` line and the ``validation`` line."""
    X, y = spiral(50)  # 150 samples: steps 0, 1, 2 of 64
    np.random.seed(0)
    model = _model()
    model.train(X, y, epochs=2, batch_size=64, print_every=2, validation_data=(X, y))
    lines = capsys.readouterr().out.splitlines()
    heads = [line.split(",")[0].split(":")[0] for line in lines]
    assert heads == ["epoch", "step", "step", "training", "validation"] * 2
    assert lines[0] == "epoch: 1" and lines[5] == "epoch: 2"
    assert lines[1].startswith("step: 0, acc: ") and lines[2].startswith("step: 2, acc: ")
    assert "(data_loss: " in lines[3] and "reg_loss: " in lines[3]
    assert lines[3].endswith(f"lr: {model.optimizer.current_learning_rate}")
    assert lines[4].startswith("validation, acc: ") and ", loss: " in lines[4]


def _model() -> Model:
    model = Model()
    model.add(Layer_Dense(2, 16, weight_regularizer_l2=5e-4))
    model.add(Activation_ReLU())
    model.add(Layer_Dropout(0.1))
    model.add(Layer_Dense(16, 3))
    model.add(Activation_Softmax())
    model.set(
        loss=Loss_CategoricalCrossentropy(),
        optimizer=Optimizer_Adam(learning_rate=0.05),
        accuracy=Accuracy_Categorical(),
    )
    model.finalize()
    return model


def test_model_files_are_xpnns_safe_format(book, tmp_path, capsys):
    """``save``, ``Model.load``, ``save_parameters`` and ``load_parameters`` write and read
    xpnn's format (no pickle); the loaded model predicts as the saved one; parameters of the
    wrong shape are refused before anything changes."""
    X, y = spiral(30)
    np.random.seed(0)
    model = _model()
    model.train(X, y, epochs=2, batch_size=32, print_every=100)
    expected = model.predict(X)
    path = tmp_path / "spiral.model"
    model.save(path)
    assert not path.read_bytes().startswith(b"\x80")  # a pickle starts with PROTO
    loaded = Model.load(path)
    np.testing.assert_allclose(loaded.predict(X), expected, rtol=1e-6)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        "Layer_Dense", "Activation_ReLU", "Layer_Dropout", "Layer_Dense", "Activation_Softmax",
    ]  # fmt: skip
    parameters = tmp_path / "spiral.parameters"
    model.save_parameters(parameters)
    np.random.seed(5)
    other = _model()
    other.load_parameters(parameters)
    np.testing.assert_allclose(other.predict(X), expected, rtol=1e-6)
    before = [np.array(np.asarray(a)) for pair in other.get_parameters() for a in pair]
    wrong = [(np.zeros((2, 16)), np.zeros((1, 16))), (np.zeros((3, 3)), np.zeros((1, 3)))]
    with pytest.raises(ValueError, match=r"parameters\[1\]"):
        other.set_parameters(wrong)
    after = [np.asarray(a) for pair in other.get_parameters() for a in pair]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    with pytest.raises(xpnn.XpnnFileError):
        Model.load(tmp_path / "missing.model")
    capsys.readouterr()


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: Optimizer_SGD(learning_rate=0.5, decay=1e-2, momentum=0.9),
        lambda: Optimizer_Adagrad(learning_rate=0.5, decay=1e-2),
        lambda: Optimizer_RMSprop(learning_rate=0.01, decay=1e-2),
        lambda: Optimiser_Adam(learning_rate=0.05, decay=1e-2),
    ],
    ids=["sgd-momentum", "adagrad", "rmsprop", "adam"],
)
@pytest.mark.parametrize("dropout", [False, True], ids=["", "dropout"])
def test_a_loaded_model_trains_on_as_the_saved_one(book, tmp_path, capsys, optimizer, dropout):
    """``save`` keeps the optimizer's state, as the book's pickled model does: trained,
    saved, loaded and trained more, a model prints and ends as one trained without a break
    (bit for bit on NumPy): the step count, the decayed rate and every layer's momentums or
    caches come back, the float64 ones too (a Dropout's float64 mask makes the book's bias
    gradients, and so their states, float64)."""
    X, y = spiral(30)
    if dropout:  # float32 layers, as after nnfs.init(), and the mask's float64 gradients
        xpnn.book.use(book, "float32")

    def make() -> Model:
        np.random.seed(0)
        model = Model()
        model.add(Layer_Dense(2, 16, weight_regularizer_l2=5e-4))
        model.add(Activation_ReLU())
        if dropout:
            model.add(Layer_Dropout(0.1))
        model.add(Layer_Dense(16, 3))
        model.add(Activation_Softmax())
        model.set(
            loss=Loss_CategoricalCrossentropy(),
            optimizer=optimizer(),
            accuracy=Accuracy_Categorical(),
        )
        model.finalize()
        return model

    steady, broken = make(), make()
    for model in (steady, broken):
        np.random.seed(1)  # the same dropout masks
        model.train(X, y, epochs=2, batch_size=32, print_every=100)
    path = tmp_path / "halfway.model"
    broken.save(path)
    loaded = Model.load(path)
    capsys.readouterr()
    for saved, back in zip(broken.trainable_layers, loaded.trainable_layers):
        for name in ("weight_momentums", "bias_momentums", "weight_cache", "bias_cache"):
            if hasattr(saved, name):  # the optimizer keeps it: back whole, in its own dtype
                kept, got_back = np.asarray(getattr(saved, name)), np.asarray(getattr(back, name))
                assert got_back.dtype == kept.dtype, name
                np.testing.assert_array_equal(got_back, kept)
    np.random.seed(2)
    steady.train(X, y, epochs=2, batch_size=32, print_every=1)
    expected = capsys.readouterr().out
    np.random.seed(2)
    loaded.train(X, y, epochs=2, batch_size=32, print_every=1)
    got = capsys.readouterr().out
    assert loaded.optimizer.iterations == steady.optimizer.iterations == 12
    assert loaded.optimizer.current_learning_rate == steady.optimizer.current_learning_rate
    pairs = [
        (np.asarray(a), np.asarray(b))
        for saved, fresh in zip(steady.get_parameters(), loaded.get_parameters())
        for a, b in zip(saved, fresh)
    ]
    if book == "numpy":
        assert got == expected
        assert all(np.array_equal(a, b) for a, b in pairs)
    else:
        assert got.splitlines()[0] == expected.splitlines()[0]
        for a, b in pairs:
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kept",
    [
        [],
        {"7": {}},
        {"0": {"bias_momentums": [0.0] * 16}},
        {"0": {"bias_momentums": [0.0] * 15, "bias_cache": [0.0] * 16}},
        {"0": {"bias_momentums": ["0"] * 16, "bias_cache": [0.0] * 16}},
    ],
    ids=["not-an-object", "no-such-layer", "a-state-missing", "a-short-state", "strings"],
)
def test_a_file_whose_float64_bias_states_do_not_fit_is_refused(tmp_path, kept):
    """The float64 bias states a book model's file keeps are checked as it loads."""
    np.random.seed(0)
    model = Model()
    model.add(Layer_Dense(2, 16))
    model.add(Activation_ReLU())
    model.add(Layer_Dense(16, 3))
    model.add(Activation_Softmax())
    model.set(loss=Loss_CategoricalCrossentropy(), optimizer=Optimizer_Adam())
    model.finalize()
    path = tmp_path / "tampered.model"
    checkpoint = {"epoch": 0, xpnn.book.model._WIDE: kept}
    xpnn.io.save_model(model._as_xpnn(), path, checkpoint=checkpoint)
    with pytest.raises(xpnn.XpnnFileError, match="book_float64_bias_states"):
        Model.load(path)


def test_chapter_17s_weights_are_one_line_away(book, monkeypatch):
    """``Layer_Dense.weight_scale = 0.1`` draws Chapter 17's ``0.1 * np.random.randn``
    weights (the final code's 0.01 otherwise), from NumPy's global generator."""
    np.random.seed(4)
    final, chapter_17 = 0.01 * np.random.randn(1, 8), 0.1 * np.random.randn(8, 1)
    np.random.seed(4)
    first = Layer_Dense(1, 8)
    monkeypatch.setattr(Layer_Dense, "weight_scale", 0.1)
    second = Layer_Dense(8, 1)
    np.testing.assert_array_equal(np.asarray(first.weights), final)
    np.testing.assert_array_equal(np.asarray(second.weights), chapter_17)


def test_optimiser_adam_has_the_notebooks_defaults():
    """The notebook's ``Optimiser_Adam()`` starts at 0.02 with decay 5e-5; the final code's
    ``Optimizer_Adam()`` at 0.001 without decay."""
    notebook, book_adam = Optimiser_Adam(), Optimizer_Adam()
    assert (notebook.learning_rate, notebook.decay) == (0.02, 5e-5)
    assert (book_adam.learning_rate, book_adam.decay) == (0.001, 0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        Optimizer_Adam(learning_rate=-1)


def test_use_refuses_what_it_cannot_run():
    """``use`` names the argument and the valid choices, and changes nothing when it fails;
    so does the environment variable, at import."""
    before = xpnn.book._device.current()
    with pytest.raises(ValueError, match="backend must be one of 'numpy', 'cupy', 'torch'"):
        xpnn.book.use("gpu")
    with pytest.raises(ValueError, match="dtype must be"):
        xpnn.book.use("numpy", dtype="float16")
    with pytest.raises(TypeError, match="exact"):
        xpnn.book.use("numpy", exact="yes")
    assert xpnn.book._device.current() == before
    for name, value, exact in [
        ("XPNN_BOOK_BACKEND", "gpu", None),
        ("XPNN_BOOK_EXACT", "maybe", None),
        ("XPNN_BOOK_EXACT", " Off ", False),
        ("XPNN_BOOK_EXACT", "", True),
    ]:
        env = {**os.environ, name: value, "XPNN_CUPY_API": "0"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        code = "import xpnn.book; print(xpnn.book._device._settings['exact'])"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if exact is None:
            assert done.returncode != 0 and name in done.stderr, (name, value, done.stderr)
        else:
            assert done.stdout.split() == [str(exact)], (name, value, done.stderr)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Layer_Dense(2, 3),
        lambda: Layer_Dropout(0.1),
        Activation_ReLU,
        Activation_Softmax,
        xpnn.book.Activation_Sigmoid,
        xpnn.book.Activation_Linear,
    ],
    ids=["Layer_Dense", "Layer_Dropout", "ReLU", "Softmax", "Sigmoid", "Linear"],
)
def test_a_backward_pass_before_any_forward_pass_is_named(book, make):
    """``backward`` before ``forward`` says so, naming the book's class (not an attribute
    missing deep inside, nor xpnn's own layer), and sets no gradient."""
    layer = make()
    dvalues = np.ones((4, 3), np.float32)
    name = type(layer).__name__
    with pytest.raises(RuntimeError, match=rf"^{name}\.backward\(\) before forward\(\)"):
        layer.backward(dvalues)
    assert getattr(layer, "dinputs", None) is None


def test_use_names_a_wrong_value_briefly():
    """``use``'s errors show a wrong value as other errors do: an array by its shape."""
    with pytest.raises(ValueError, match=r"backend must be .* got ndarray of shape \(1000,\)"):
        xpnn.book.use(np.zeros(1000))
    with pytest.raises(ValueError, match=r"dtype must be .* got ndarray of shape \(3,\)"):
        xpnn.book.use("numpy", dtype=np.zeros(3))


@pytest.mark.parametrize("kind", ["Dense", "Dropout"])
def test_layers_without_a_seed_draw_it_from_numpys_global_generator(backend, kind):
    """``seed=None`` means what scikit-learn's ``random_state=None`` means: after the same
    ``np.random.seed`` two layers draw alike (weights, dropout masks); an explicit seed keeps
    its own stream whatever the global generator holds."""

    def make(seed=None):
        if kind == "Dense":
            return xpnn.Dense(3, 4, backend=backend, seed=seed)
        return xpnn.Dropout(0.5, backend=backend, seed=seed)

    def drawn(layer):
        if kind == "Dense":
            return xpnn.to_numpy(layer.weights)
        return xpnn.to_numpy(layer.forward(np.ones((6, 10), dtype=np.float32)))

    np.random.seed(0)
    first = drawn(make())
    np.random.seed(0)
    second = drawn(make())
    third = drawn(make())  # the global generator moved on
    assert np.array_equal(first, second)
    assert not np.array_equal(first, third)
    np.random.seed(1)
    seeded = drawn(make(seed=7))
    np.random.seed(2)
    assert np.array_equal(seeded, drawn(make(seed=7)))


def test_train_and_evaluate_check_their_arguments_before_a_step(book):
    """Where the book's code would fail midway (a step or an epoch already made) or deep inside
    NumPy, the model names the argument first and changes nothing."""
    X, y = spiral(30)
    np.random.seed(0)
    model = Model()
    with pytest.raises(TypeError, match=r"loss must be an object, such as Loss_Categorical"):
        model.set(loss=Loss_CategoricalCrossentropy)  # the class, without ()
    for layer in (Layer_Dense(2, 8), Activation_ReLU(), Layer_Dense(8, 3), Activation_Softmax()):
        model.add(layer)
    with pytest.raises(ValueError, match=r"no loss or accuracy or optimizer: call set"):
        model.train(X, y)
    model.set(
        loss=Loss_CategoricalCrossentropy(),
        optimizer=Optimizer_Adam(),
        accuracy=Accuracy_Categorical(),
    )
    with pytest.raises(ValueError, match=r"call finalize\(\) before train"):
        model.train(X, y)
    model.finalize()
    before = [np.array(np.asarray(a)) for pair in model.get_parameters() for a in pair]
    refused = [
        (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
        (dict(batch_size=12.5), TypeError, "batch_size must be a positive integer"),
        (dict(epochs=1.5), TypeError, "epochs must be a positive integer"),
        (dict(print_every=0), ValueError, "print_every must be a positive integer"),
        (dict(validation_data=(X,)), TypeError, r"validation_data must be a pair"),
        (dict(validation_data=(X, y[:5])), ValueError, "validation_data must have as many rows"),
    ]
    for settings, error, message in refused:
        with pytest.raises(error, match=message):
            model.train(X, y, **settings)
    with pytest.raises(ValueError, match="X and y must have as many rows; got 90 and 89"):
        model.train(X, y[:-1])
    with pytest.raises(ValueError, match="X_val and y_val must have as many rows"):
        model.evaluate(X, y[:-1])
    assert model.optimizer.iterations == 0
    after = [np.asarray(a) for pair in model.get_parameters() for a in pair]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("dtype", [str, complex, object])
def test_layers_refuse_what_holds_no_real_numbers(book, dtype):
    """As xpnn's own layers do: NumPy would parse text, drop imaginary parts with only a
    warning, or compute on objects."""
    X = np.ones((3, 2), np.float32).astype(dtype)
    for layer in (Layer_Dense(2, 4), Activation_ReLU(), Layer_Dropout(0.1)):
        with pytest.raises(TypeError, match="inputs must hold real numbers"):
            layer.forward(X)


def test_labels_that_do_not_fit_the_outputs_are_refused_by_name(book):
    """The fused softmax and loss and the accuracies take one label per row (or rows of the
    outputs' width): NumPy would drop an extra label, or broadcast, without a word."""
    rng = np.random.default_rng(0)
    outputs = rng.random((6, 3)).astype(np.float32)
    outputs /= outputs.sum(axis=1, keepdims=True)
    fused = Activation_Softmax_Loss_CategoricalCrossentropy()
    for labels in (np.zeros(7, np.int64), np.zeros(5, np.int64), np.eye(4)[[0, 1, 2, 0, 1, 2]]):
        with pytest.raises(ValueError, match=r"y_true has shape .* does not fit the softmax"):
            fused.backward(outputs, labels)
    with pytest.raises(ValueError, match=r"y has shape \(5,\) but the predictions"):
        Accuracy_Categorical().calculate(np.zeros(6, np.int64), np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"y has shape \(6,\) but the predictions"):
        Accuracy_Categorical(binary=True).calculate(np.zeros((6, 1)), np.zeros(6))
    regression = Accuracy_Regression()
    with pytest.raises(RuntimeError, match=r"no precision yet: call init\(y\) first"):
        regression.calculate(np.zeros(6), np.arange(6.0))
    regression.init(np.arange(6.0))
    with pytest.raises(ValueError, match=r"y has shape \(6,\) but the predictions"):
        regression.calculate(np.zeros((6, 1)), np.arange(6.0))
