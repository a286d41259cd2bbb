"""The book's linear regression: fit y = w * x + b with Variables and backward().

Every step records the graph, runs the differentiation pass and the compiled
program (compiled once: later steps hit the cache, since the graph has the same
structure each time), then updates the parameters in place.

    python examples/linear_regression.py
"""

import numpy as np

from compiler import Tensor, Variable


def main(steps: int = 200, learning_rate: float = 0.05) -> float:
    rng = np.random.default_rng(0)
    xs = np.linspace(-1.0, 1.0, 64, dtype=np.float32)
    ys = (2.0 * xs + 0.5 + 0.05 * rng.standard_normal(64)).astype(np.float32)
    x = Variable(Tensor(xs, (64,)), requires_grad=False)
    target = Variable(Tensor(ys, (64,)), requires_grad=False)
    w = Variable(Tensor([0.0], ()))
    b = Variable(Tensor([0.0], ()))
    for step in range(steps):
        w.zero_grad()
        b.zero_grad()
        y = w * x + b
        diff = y + Variable(Tensor([-1.0], ())) * target
        loss = (diff * diff).mean()
        loss.backward()
        w.data = w.data.numpy() - learning_rate * w.grad.numpy()
        b.data = b.data.numpy() - learning_rate * b.grad.numpy()
        if step % 20 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.data.item():.5f}  w {w.data.item():+.4f}  b {b.data.item():+.4f}")
    return loss.data.item()


if __name__ == "__main__":
    final = main()
    print(f"final loss {final:.5f} (the data was made with w=2, b=0.5)")
