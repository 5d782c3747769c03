"""Chapter 22's Model on the spiral data: batches, L2, dropout, validation every epoch; then
the parameters moved to a second model, and predictions (argument ``categorical``); or a
sigmoid output with binary cross-entropy (``binary``), or a regression (``regression``)."""

# ruff: noqa: F403, F405 (the book's one line: every class from a star import)

import os
import sys

import nnfs
import numpy as np
from book_classes import *
from nnfs.datasets import sine_data, spiral_data

nnfs.init()

EPOCHS = int(os.environ.get("EPOCHS", "10"))
kind = sys.argv[1]


def build():
    model = Model()
    if kind == "categorical":
        model.add(Layer_Dense(2, 64, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4))
        model.add(Activation_ReLU())
        model.add(Layer_Dropout(0.1))
        model.add(Layer_Dense(64, 3))
        model.add(Activation_Softmax())
        model.set(
            loss=Loss_CategoricalCrossentropy(),
            optimizer=Optimizer_Adam(learning_rate=0.05, decay=5e-5),
            accuracy=Accuracy_Categorical(),
        )
    elif kind == "binary":
        model.add(Layer_Dense(2, 64, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4))
        model.add(Activation_ReLU())
        model.add(Layer_Dense(64, 1))
        model.add(Activation_Sigmoid())
        model.set(
            loss=Loss_BinaryCrossentropy(),
            optimizer=Optimizer_Adam(decay=5e-7),
            accuracy=Accuracy_Categorical(binary=True),
        )
    else:
        model.add(Layer_Dense(1, 64))
        model.add(Activation_ReLU())
        model.add(Layer_Dense(64, 64))
        model.add(Activation_ReLU())
        model.add(Layer_Dense(64, 1))
        model.add(Activation_Linear())
        model.set(
            loss=Loss_MeanSquaredError(),
            optimizer=Optimizer_Adam(learning_rate=0.005, decay=1e-3),
            accuracy=Accuracy_Regression(),
        )
    model.finalize()
    return model


if kind == "regression":
    X, y = sine_data()
    X_test, y_test = sine_data()
    batch_size, print_every = None, 1
else:
    classes = 3 if kind == "categorical" else 2
    X, y = spiral_data(samples=1000, classes=classes)
    X_test, y_test = spiral_data(samples=100, classes=classes)
    if kind == "binary":
        y, y_test = y.reshape(-1, 1), y_test.reshape(-1, 1)
    keys = np.array(range(X.shape[0]))
    np.random.shuffle(keys)
    X, y = X[keys], y[keys]
    batch_size, print_every = 128, 10

model = build()
model.train(
    X,
    y,
    validation_data=(X_test, y_test),
    epochs=EPOCHS,
    batch_size=batch_size,
    print_every=print_every,
)
model.evaluate(X_test, y_test)

parameters = model.get_parameters()
copy = build()
copy.set_parameters(parameters)
copy.accuracy.init(y)
copy.evaluate(X_test, y_test)
confidences = copy.predict(X_test[:5])
print(copy.output_layer_activation.predictions(confidences))
