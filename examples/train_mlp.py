"""Train an MLP on the 8x8 handwritten digits, one compiled program per step.

The step (forward, softmax cross-entropy, backward, Adam update) is traced once,
differentiated, compiled to native code and then called for every batch.

    python examples/train_mlp.py [--epochs 30] [--dump-ir step.ir]

Data: examples/data/digits.csv.gz (UCI, CC BY 4.0; see examples/data/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import pathlib
import time

import numpy as np

import compiler as xp
from compiler import functional, jit, nn, optim

DATA = pathlib.Path(__file__).resolve().parent / "data" / "digits.csv.gz"


def load_digits(test_fraction: float = 0.2, seed: int = 0):
    """(x_train, y_train, x_test, y_test): pixels scaled to [0, 1], int32 labels."""
    with gzip.open(DATA, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = table[:, :64] / 16.0, table[:, 64].astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = int(len(x) * test_fraction)
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def init_params(sizes, seed: int = 0):
    """He-initialised weights and zero biases for each layer."""
    rng = np.random.default_rng(seed)
    return [
        {"w": (rng.standard_normal((m, n)) * np.sqrt(2.0 / m)).astype(np.float32),
         "b": np.zeros(n, np.float32)}
        for m, n in zip(sizes[:-1], sizes[1:])
    ]


def predict(params, x):
    for layer in params[:-1]:
        x = nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, labels):
    return nn.cross_entropy(predict(params, x), labels)


def make_step(optimizer):
    def train_step(params, opt_state, x, labels):
        loss, grads = functional.value_and_grad(loss_fn)(params, x, labels)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    # Donating the parameters and optimiser state lets the step update them in place.
    return jit(train_step, donate_argnums=(0, 1))


@jit
def accuracy(params, x, labels):
    return xp.mean(xp.equal(xp.argmax(predict(params, x), axis=-1), labels))


def main(epochs: int = 30, batch_size: int = 64, learning_rate: float = 3e-3,
         hidden: int = 128, dump_ir: str | None = None, seed: int = 0) -> float:
    x_train, y_train, x_test, y_test = load_digits(seed=seed)
    params = init_params([64, hidden, hidden, 10], seed)
    optimizer = optim.adam(learning_rate)
    opt_state = optimizer.init(params)
    step = make_step(optimizer)
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(x_train) // batch_size
    print(f"digits: {len(x_train)} train / {len(x_test)} test images; "
          f"MLP 64-{hidden}-{hidden}-10, Adam lr={learning_rate}, batch {batch_size}")
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        epoch_start, losses = time.perf_counter(), []
        for i in range(steps_per_epoch):
            batch = order[i * batch_size:(i + 1) * batch_size]
            params, opt_state, loss = step(params, opt_state, x_train[batch], y_train[batch])
            losses.append(loss)
        elapsed = time.perf_counter() - epoch_start
        if epoch % 5 == 0 or epoch == epochs - 1:
            train_acc = accuracy(params, x_train, y_train).item()
            print(f"epoch {epoch:3d}  loss {np.mean([l.item() for l in losses]):.4f}  "
                  f"train acc {train_acc:.3f}  {steps_per_epoch / elapsed:8.0f} steps/s")
    test_acc = accuracy(params, x_test, y_test).item()
    print(f"test accuracy {test_acc:.4f}  ({time.perf_counter() - start:.1f} s in all, "
          "including compilation)")
    if dump_ir:
        x0, y0 = x_train[:batch_size], y_train[:batch_size]
        pathlib.Path(dump_ir).write_text(step.lower(params, opt_state, x0, y0).as_text())
        print(f"the step's IR is in {dump_ir}")
    return test_acc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--dump-ir", metavar="FILE", help="write the training step's IR here")
    args = parser.parse_args()
    main(args.epochs, args.batch_size, args.lr, args.hidden, args.dump_ir)
