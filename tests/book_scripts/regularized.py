"""Chapters 14 and 15: L2 regularization with the penalty from ``regularization_loss(layer)``,
with dropout (argument ``dropout``) or without (``l2``), then the test data."""

# ruff: noqa: F403, F405 (the book's one line: every class from a star import)

import os
import sys

import nnfs
import numpy as np
from book_classes import *
from nnfs.datasets import spiral_data

nnfs.init()

EPOCHS = int(os.environ.get("EPOCHS", "10001"))
dropout = sys.argv[1] == "dropout"
X, y = spiral_data(samples=1000, classes=3)
dense1 = Layer_Dense(2, 64, weight_regularizer_l2=5e-4, bias_regularizer_l2=5e-4)
activation1 = Activation_ReLU()
dropout1 = Layer_Dropout(0.1)
dense2 = Layer_Dense(64, 3, weight_regularizer_l1=1e-5)
loss_activation = Activation_Softmax_Loss_CategoricalCrossentropy()
optimizer = Optimizer_Adam(learning_rate=0.05, decay=5e-5 if dropout else 5e-7)

for epoch in range(EPOCHS):
    dense1.forward(X)
    activation1.forward(dense1.output)
    if dropout:
        dropout1.forward(activation1.output)
        dense2.forward(dropout1.output)
    else:
        dense2.forward(activation1.output)
    data_loss = loss_activation.forward(dense2.output, y)
    regularization_loss = loss_activation.loss.regularization_loss(
        dense1
    ) + loss_activation.loss.regularization_loss(dense2)
    loss = data_loss + regularization_loss
    predictions = np.argmax(loss_activation.output, axis=1)
    accuracy = np.mean(predictions == y)
    if not epoch % 100:
        print(
            f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {loss:.3f} (data_loss: "
            f"{data_loss:.3f}, reg_loss: {regularization_loss:.3f}), "
            f"lr: {optimizer.current_learning_rate}"
        )
    loss_activation.backward(loss_activation.output, y)
    dense2.backward(loss_activation.dinputs)
    if dropout:
        dropout1.backward(dense2.dinputs)
        activation1.backward(dropout1.dinputs)
    else:
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
