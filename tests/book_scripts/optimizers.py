"""Chapters 10 to 11: the hand-written training loop with each optimizer (argument: sgd,
momentum, adagrad, rmsprop, adam), then the test data."""

# ruff: noqa: F403, F405 (the book's one line: every class from a star import)

import os
import sys

import nnfs
import numpy as np
from book_classes import *
from nnfs.datasets import spiral_data

nnfs.init()

EPOCHS = int(os.environ.get("EPOCHS", "10001"))
X, y = spiral_data(samples=100, classes=3)
dense1 = Layer_Dense(2, 64)
activation1 = Activation_ReLU()
dense2 = Layer_Dense(64, 3)
loss_activation = Activation_Softmax_Loss_CategoricalCrossentropy()
optimizer = {
    "sgd": lambda: Optimizer_SGD(decay=1e-3),
    "momentum": lambda: Optimizer_SGD(decay=1e-3, momentum=0.9),
    "adagrad": lambda: Optimizer_Adagrad(decay=1e-4),
    "rmsprop": lambda: Optimizer_RMSprop(learning_rate=0.02, decay=1e-5, rho=0.999),
    "adam": lambda: Optimizer_Adam(learning_rate=0.05, decay=5e-7),
}[sys.argv[1]]()

for epoch in range(EPOCHS):
    dense1.forward(X)
    activation1.forward(dense1.output)
    dense2.forward(activation1.output)
    loss = loss_activation.forward(dense2.output, y)
    predictions = np.argmax(loss_activation.output, axis=1)
    if len(y.shape) == 2:
        y = np.argmax(y, axis=1)
    accuracy = np.mean(predictions == y)
    if not epoch % 100:
        print(
            f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {loss:.3f}, "
            f"lr: {optimizer.current_learning_rate}"
        )
    loss_activation.backward(loss_activation.output, y)
    dense2.backward(loss_activation.dinputs)
    activation1.backward(dense2.dinputs)
    dense1.backward(activation1.dinputs)
    optimizer.pre_update_params()
    optimizer.update_params(dense1)
    optimizer.update_params(dense2)
    optimizer.post_update_params()

X_test, y_test = spiral_data(samples=100, classes=3)
dense1.forward(X_test)
activation1.forward(dense1.output)
dense2.forward(activation1.output)
loss = loss_activation.forward(dense2.output, y_test)
predictions = np.argmax(loss_activation.output, axis=1)
accuracy = np.mean(predictions == y_test)
print(f"validation, acc: {accuracy:.3f}, loss: {loss:.3f}")
