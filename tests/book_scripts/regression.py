"""Chapter 17: sine regression through a linear output and mean squared error, weights drawn at
the chapter's 0.1, accuracy within a precision."""

# ruff: noqa: F403, F405 (the book's one line: every class from a star import)

import os

import nnfs
import numpy as np
from book_classes import *
from nnfs.datasets import sine_data

nnfs.init()
Layer_Dense.weight_scale = 0.1  # the chapter's classes draw 0.1 * randn

EPOCHS = int(os.environ.get("EPOCHS", "10001"))
X, y = sine_data()
dense1 = Layer_Dense(1, 64)
activation1 = Activation_ReLU()
dense2 = Layer_Dense(64, 64)
activation2 = Activation_ReLU()
dense3 = Layer_Dense(64, 1)
activation3 = Activation_Linear()
loss_function = Loss_MeanSquaredError()
optimizer = Optimizer_Adam(learning_rate=0.005, decay=1e-3)
accuracy_precision = np.std(y) / 250

for epoch in range(EPOCHS):
    dense1.forward(X)
    activation1.forward(dense1.output)
    dense2.forward(activation1.output)
    activation2.forward(dense2.output)
    dense3.forward(activation2.output)
    activation3.forward(dense3.output)
    data_loss = loss_function.calculate(activation3.output, y)
    regularization_loss = (
        loss_function.regularization_loss(dense1)
        + loss_function.regularization_loss(dense2)
        + loss_function.regularization_loss(dense3)
    )
    loss = data_loss + regularization_loss
    predictions = activation3.output
    accuracy = np.mean(np.absolute(predictions - y) < accuracy_precision)
    if not epoch % 100:
        print(
            f"epoch: {epoch}, acc: {accuracy:.3f}, loss: {loss:.3f} (data_loss: "
            f"{data_loss:.3f}, reg_loss: {regularization_loss:.3f}), "
            f"lr: {optimizer.current_learning_rate}"
        )
    loss_function.backward(activation3.output, y)
    activation3.backward(loss_function.dinputs)
    dense3.backward(activation3.dinputs)
    activation2.backward(dense3.dinputs)
    dense2.backward(activation2.dinputs)
    activation1.backward(dense2.dinputs)
    dense1.backward(activation1.dinputs)
    optimizer.pre_update_params()
    optimizer.update_params(dense1)
    optimizer.update_params(dense2)
    optimizer.update_params(dense3)
    optimizer.post_update_params()
