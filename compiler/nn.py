"""Numerically stable composites for model code, built from primitives.

None of these is a primitive: each traces into a few ops of the IR, which the
fusion pass turns into a few loops. With logits as large as 1e4 the values and
gradients stay finite (every exp sees a non-positive argument).
"""

from __future__ import annotations

from compiler.frontend import numpy_api as fnp
from compiler.frontend.source_info import user_location
from compiler.frontend.variable import Variable
from ir import DType
from ir.errors import DTypeError, ShapeError

__all__ = ["relu", "sigmoid", "softmax", "log_softmax", "logsumexp", "cross_entropy", "mse",
           "gelu", "softplus"]


def relu(x) -> Variable:
    """max(x, 0), with gradient 0 at x == 0 (as in PyTorch and JAX)."""
    x = fnp.asvariable(x)
    return fnp.where(fnp.greater(x, 0), x, 0)


def sigmoid(x) -> Variable:
    """1 / (1 + exp(-x)), stable in both tails (the ``logistic`` primitive)."""
    return fnp.logistic(x)


def softplus(x) -> Variable:
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))."""
    x = fnp.asvariable(x)
    return fnp.add(fnp.maximum(x, 0.0), fnp.log1p(fnp.exp(fnp.negative(fnp.abs(x)))))


def logsumexp(x, axis=-1, keepdims: bool = False) -> Variable:
    """log(sum(exp(x))) along ``axis``, shifted by the maximum so exp never overflows."""
    x = fnp.asvariable(x)
    # The shift cancels out of the value, so its gradient is zero: stop_gradient says so
    # (as JAX's logsumexp does), and the backward pass does not differentiate the max.
    shift = fnp.stop_gradient(fnp.max(x, axis=axis, keepdims=True))
    # An all -inf slice: shift by 0 instead, so the result is log(0) = -inf, not nan.
    shift = fnp.where(fnp.equal(shift, float("-inf")), 0.0, shift)
    total = fnp.sum(fnp.exp(fnp.subtract(x, shift)), axis=axis, keepdims=True)
    result = fnp.add(fnp.log(total), shift)
    return result if keepdims else fnp.squeeze(result, axis)


def log_softmax(x, axis=-1) -> Variable:
    """x - logsumexp(x) along ``axis``."""
    return fnp.subtract(x, logsumexp(x, axis=axis, keepdims=True))


def softmax(x, axis=-1) -> Variable:
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    x = fnp.asvariable(x)
    e = fnp.exp(fnp.subtract(x, fnp.max(x, axis=axis, keepdims=True)))
    return fnp.divide(e, fnp.sum(e, axis=axis, keepdims=True))


def cross_entropy(logits, labels, ignore_index: int | None = None) -> Variable:
    """Mean softmax cross-entropy over the batch.

    ``logits`` is ``[N, C]`` (or ``[C]``); ``labels`` either integer class indices
    ``[N]`` or probabilities / one-hot rows ``[N, C]``. Integer labels index as
    numpy does: -1 is the last class; a label outside ``-C..C-1`` contributes
    only the log-normaliser (never an out-of-bounds read). With
    ``ignore_index`` (PyTorch's, e.g. -100), examples with that label are left
    out of the mean (nan if every one is).
    """
    logits = fnp.asvariable(logits)
    labels = fnp.asvariable(labels)
    if labels.dtype in (DType.i32, DType.i64):
        if labels.shape != logits.shape[:-1]:
            raise ShapeError(
                f"cross_entropy: integer labels {labels.type} must have the logits' batch shape "
                f"{list(logits.shape[:-1])}, the logits are {logits.type} (at {user_location()})"
            )
        # log-normaliser minus the label's logit; an out-of-range label picks 0.
        picked = fnp.take_along_axis(logits, fnp.expand_dims(labels, -1), axis=-1)
        per_example = fnp.subtract(logsumexp(logits, axis=-1, keepdims=True), picked)
        if ignore_index is None:
            return fnp.mean(per_example)
        kept = fnp.expand_dims(fnp.not_equal(labels, int(ignore_index)), -1)
        total = fnp.sum(fnp.where(kept, per_example, 0))
        return fnp.divide(total, fnp.sum(fnp.astype(kept, per_example.dtype)))
    if ignore_index is not None:
        raise DTypeError(f"cross_entropy: ignore_index needs integer labels, got {labels.type} "
                         f"(at {user_location()})")
    logp = log_softmax(logits, axis=-1)
    if labels.shape != logits.shape:
        raise ShapeError(
            f"cross_entropy: label distribution {labels.type} must match logits {logits.type} "
            f"(at {user_location()}); integer class labels need an i32 or i64 dtype"
        )
    per_example = fnp.sum(fnp.multiply(labels, logp), axis=-1)
    return fnp.negative(fnp.mean(per_example))


def mse(predictions, targets) -> Variable:
    """Mean squared error."""
    diff = fnp.subtract(predictions, targets)
    return fnp.mean(fnp.multiply(diff, diff))


def gelu(x) -> Variable:
    """The tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = fnp.asvariable(x)
    inner = fnp.multiply(0.7978845608, fnp.add(x, fnp.multiply(0.044715, fnp.multiply(x, fnp.multiply(x, x)))))
    return fnp.multiply(fnp.multiply(0.5, x), fnp.add(1.0, fnp.tanh(inner)))
