"""Optimisers, in two forms that share one update rule.

Functional (JAX/optax style), traceable, so a whole training step — forward,
backward and update — is one compiled program::

    opt = optim.adam(1e-3)
    state = opt.init(params)
    params, state = opt.update(grads, state, params)      # inside jit(step)

PyTorch style, on leaf Variables; ``step()`` runs the same update rule,
compiled, and writes the new values into the Variables::

    opt = optim.SGD([w, b], lr=0.1, momentum=0.9)
    opt.zero_grad(); loss.backward(); opt.step()

Parameters and states are pytrees (nested tuples/lists/dicts) of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from compiler.frontend import numpy_api as fnp
from compiler.frontend.tensor import Tensor
from compiler.frontend.variable import Variable
from compiler.pytree import flatten, tree_map, unflatten
from ir.errors import IRError

__all__ = ["Optimizer", "sgd", "adam", "adamw", "SGD", "Adam", "AdamW"]


@dataclass(frozen=True)
class Optimizer:
    """A pair of pure functions: ``init(params) -> state`` and
    ``update(grads, state, params) -> (new_params, new_state)``."""

    init: Callable
    update: Callable
    name: str = "optimizer"


def _zeros_like(x):
    return np.zeros(np.shape(x), dtype=_dtype(x))


def _dtype(x):
    if isinstance(x, (Variable, Tensor)):
        return x.dtype.numpy
    return np.asarray(x).dtype


def sgd(lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False) -> Optimizer:
    """Stochastic gradient descent, with PyTorch's momentum and (L2) weight decay:
    ``g += wd * p; buf = momentum * buf + g; p -= lr * (g + momentum * buf if nesterov else buf)``.
    """
    if lr < 0 or momentum < 0 or weight_decay < 0:
        raise IRError(f"sgd: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
    if nesterov and momentum == 0:
        raise IRError("sgd: nesterov momentum needs momentum > 0")

    def init(params):
        return {"momentum": tree_map(_zeros_like, params)} if momentum else {}

    def update(grads, state, params):
        if weight_decay:
            grads = tree_map(lambda g, p: fnp.add(g, fnp.multiply(weight_decay, p)), grads, params)
        if not momentum:
            return tree_map(lambda p, g: fnp.subtract(p, fnp.multiply(lr, g)), params, grads), state
        buffers = tree_map(lambda b, g: fnp.add(fnp.multiply(momentum, b), g), state["momentum"], grads)
        if nesterov:
            steps = tree_map(lambda g, b: fnp.add(g, fnp.multiply(momentum, b)), grads, buffers)
        else:
            steps = buffers
        new_params = tree_map(lambda p, s: fnp.subtract(p, fnp.multiply(lr, s)), params, steps)
        return new_params, {"momentum": buffers}

    return Optimizer(init, update, "sgd")


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0, decoupled: bool = False) -> Optimizer:
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is L2 added to the
    gradient, or with ``decoupled`` AdamW's ``p -= lr * wd * p``."""
    if not (0 <= b1 < 1 and 0 <= b2 < 1) or lr < 0 or eps <= 0:
        raise IRError(f"adam: need 0 <= b1, b2 < 1, lr >= 0, eps > 0; got {b1}, {b2}, {lr}, {eps}")

    def init(params):
        return {"count": np.zeros((), np.int32), "mu": tree_map(_zeros_like, params),
                "nu": tree_map(_zeros_like, params)}

    def update(grads, state, params):
        if weight_decay and not decoupled:
            grads = tree_map(lambda g, p: fnp.add(g, fnp.multiply(weight_decay, p)), grads, params)
        count = fnp.add(state["count"], 1)
        mu = tree_map(lambda m, g: fnp.add(fnp.multiply(b1, m), fnp.multiply(1 - b1, g)), state["mu"], grads)
        nu = tree_map(lambda v, g: fnp.add(fnp.multiply(b2, v), fnp.multiply(1 - b2, fnp.multiply(g, g))),
                      state["nu"], grads)

        def step(p, m, v):
            t = fnp.astype(count, p.dtype if isinstance(p, Variable) else _dtype(p))
            m_hat = fnp.divide(m, fnp.subtract(1.0, fnp.power(b1, t)))
            v_hat = fnp.divide(v, fnp.subtract(1.0, fnp.power(b2, t)))
            delta = fnp.divide(m_hat, fnp.add(fnp.sqrt(v_hat), eps))
            if weight_decay and decoupled:
                delta = fnp.add(delta, fnp.multiply(weight_decay, p))
            return fnp.subtract(p, fnp.multiply(lr, delta))

        new_params = tree_map(step, params, mu, nu)
        return new_params, {"count": count, "mu": mu, "nu": nu}

    return Optimizer(init, update, "adamw" if decoupled else "adam")


def adamw(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-2) -> Optimizer:
    """AdamW: Adam with decoupled weight decay."""
    return adam(lr, b1, b2, eps, weight_decay, decoupled=True)


class _TorchStyle:
    """Shared machinery of the PyTorch-style optimisers: one compiled update for
    all parameters, whose results are written back into the Variables."""

    def __init__(self, params: Sequence[Variable], optimizer: Optimizer):
        params = list(params)
        for p in params:
            if not isinstance(p, Variable) or not p.is_leaf or p._trace is not None:
                raise IRError("optimisers take concrete leaf Variables (e.g. Variable(Tensor(...)))")
            if not p.dtype.is_float:
                raise IRError(f"cannot optimise a parameter of type {p.type}: not floating-point")
        self.params = params
        self._optimizer = optimizer
        self._state = optimizer.init([p.data for p in params])
        from compiler.jit import jit

        self._update = jit(optimizer.update)

    def zero_grad(self) -> None:
        """Forget the accumulated gradients (``backward()`` adds to ``.grad``)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update using each parameter's ``.grad`` (parameters without
        a gradient are left unchanged, as in PyTorch)."""
        active = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not active:
            return
        grads = [p.grad if p.grad is not None else Tensor(np.zeros(p.shape, p.dtype.numpy))
                 for p in self.params]
        if len(active) != len(self.params):
            # Keep the compiled program's signature fixed; untouched parameters
            # are restored afterwards.
            saved = {i: self.params[i].data for i in range(len(self.params)) if i not in active}
        else:
            saved = {}
        new_params, self._state = self._update(grads, self._state, [p.data for p in self.params])
        for i, (p, value) in enumerate(zip(self.params, new_params, strict=True)):
            p._assign(saved.get(i, value))

    def state_dict(self):
        leaves, tree = flatten(self._state)
        return unflatten(tree, [np.asarray(x) for x in leaves])


class SGD(_TorchStyle):
    """``torch.optim.SGD``-style: ``SGD(params, lr, momentum=0, weight_decay=0, nesterov=False)``."""

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, sgd(lr, momentum, weight_decay, nesterov))


class Adam(_TorchStyle):
    """``torch.optim.Adam``-style: ``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)``."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, adam(lr, betas[0], betas[1], eps, weight_decay))


class AdamW(_TorchStyle):
    """``torch.optim.AdamW``-style, with decoupled weight decay (default 1e-2)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, adamw(lr, betas[0], betas[1], eps, weight_decay))
