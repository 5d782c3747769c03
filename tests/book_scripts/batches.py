"""The batch-training notebook: spiral data in sequential batches of 128, the notebook's
Optimiser_Adam, the epoch's mean accuracy and loss every 100 epochs."""

# ruff: noqa: F403, F405 (the book's one line: every class from a star import)

import os

import nnfs
import numpy as np
from book_classes import *
from nnfs.datasets import spiral_data

nnfs.init()

EPOCHS = int(os.environ.get("EPOCHS", "10001"))
X, y = spiral_data(samples=1000, classes=3)
dense1 = Layer_Dense(2, 64)
activation1 = Activation_ReLU()
dense2 = Layer_Dense(64, 3)
loss_activation = Activation_Softmax_Loss_CategoricalCrossentropy()
optimiser = Optimiser_Adam(learning_rate=0.05, decay=5e-7)

batch_size = 128
steps = X.shape[0] // batch_size
if X.shape[0] % batch_size != 0:
    steps += 1

for epoch in range(EPOCHS):
    epoch_loss = 0
    epoch_accuracy = 0
    for step in range(steps):
        batch_X = X[step * batch_size : (step + 1) * batch_size]
        batch_y = y[step * batch_size : (step + 1) * batch_size]
        dense1.forward(batch_X)
        activation1.forward(dense1.output)
        dense2.forward(activation1.output)
        loss = loss_activation.forward(dense2.output, batch_y)
        epoch_loss += loss
        predictions = np.argmax(loss_activation.output, axis=1)
        accuracy = np.mean(predictions == batch_y)
        epoch_accuracy += accuracy
        loss_activation.backward(loss_activation.output, batch_y)
        dense2.backward(loss_activation.dinputs)
        activation1.backward(dense2.dinputs)
        dense1.backward(activation1.dinputs)
        optimiser.pre_update_params()
        optimiser.update_params(dense1)
        optimiser.update_params(dense2)
        optimiser.post_update_params()
    if epoch % 100 == 0:
        print(
            f"epoch: {epoch}, acc: {epoch_accuracy / steps:.3f}, "
            f"loss: {epoch_loss / steps:.3f}, lr: {optimiser.current_learning_rate}"
        )
