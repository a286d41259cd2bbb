"""Diagnose breast tumours (Wisconsin diagnostic data) with a small MLP written
PyTorch style: Variables, ``loss.backward()``, ``optim.Adam`` and a
hand-written evaluation under ``no_grad``.

Every step records the graph; ``backward()`` runs the differentiation pass and
``opt.step()`` the update, each a compiled native program (compiled on the
first step, then found in the cache because later steps have the same graph).

    python examples/breast_cancer.py [--epochs 60]

Data: examples/data/breast_cancer.csv.gz (UCI, CC BY 4.0; see examples/data/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import pathlib
import time

import numpy as np

import compiler as xp
from compiler import Variable, nn, optim

DATA = pathlib.Path(__file__).resolve().parent / "data" / "breast_cancer.csv.gz"


def load(test_fraction: float = 0.25, seed: int = 0):
    """Standardised float32 features and float32 labels (1 = benign), split in two."""
    with gzip.open(DATA, "rt") as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float64)
    x, y = table[:, :-1], table[:, -1].astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(len(x) * test_fraction)
    x_train, x_test = x[n_test:], x[:n_test]
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)  # statistics of the training part only
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return scale(x_train), y[n_test:], scale(x_test), y[:n_test]


class MLP:
    """30 -> hidden -> 1 with a tanh hidden layer; the output is a logit."""

    def __init__(self, inputs: int, hidden: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.w1 = Variable((rng.standard_normal((inputs, hidden)) / np.sqrt(inputs)).astype(np.float32))
        self.b1 = Variable(np.zeros(hidden, np.float32))
        self.w2 = Variable((rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32))
        self.b2 = Variable(np.zeros(1, np.float32))

    def parameters(self):
        return [self.w1, self.b1, self.w2, self.b2]

    def __call__(self, x):
        return (xp.tanh(x @ self.w1 + self.b1) @ self.w2 + self.b2)[:, 0]


def binary_cross_entropy_with_logits(logits, targets):
    """mean(log(1 + e^z) - t z), written stably with softplus."""
    return (nn.softplus(logits) - targets * logits).mean()


def main(epochs: int = 60, batch_size: int = 32, learning_rate: float = 1e-2,
         hidden: int = 16, seed: int = 0) -> float:
    x_train, y_train, x_test, y_test = load(seed=seed)
    model = MLP(x_train.shape[1], hidden, seed)
    opt = optim.Adam(model.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    batches = len(x_train) // batch_size
    print(f"breast cancer: {len(x_train)} train / {len(x_test)} test tumours; "
          f"MLP 30-{hidden}-1, Adam lr={learning_rate}, batch {batch_size}")
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(batches):
            batch = order[i * batch_size:(i + 1) * batch_size]
            opt.zero_grad()
            loss = binary_cross_entropy_with_logits(model(x_train[batch]), y_train[batch])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if epoch % 10 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:3d}  loss {np.mean(losses):.4f}")
    with xp.no_grad():
        predicted = (model(x_test) > 0).numpy()
    accuracy = float((predicted == (y_test > 0.5)).mean())
    print(f"test accuracy {accuracy:.4f}  ({time.perf_counter() - start:.1f} s in all, "
          "including compilation)")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-2)
    args = parser.parse_args()
    main(args.epochs, learning_rate=args.lr)
