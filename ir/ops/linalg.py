"""Linear algebra: ``dot``, a batched matrix product.

``dot(lhs[..., m, k], rhs[..., k, n]) -> [..., m, n]`` with equal leading
(batch) dims. numpy's matmul rules for 1-D operands and broadcast batch dims are
the front end's job (reshape/broadcast around this primitive).

The optional attributes ``transpose_lhs`` / ``transpose_rhs`` (default false)
say an operand is stored with its last two axes swapped: with
``transpose_lhs=true`` the lhs is ``[..., k, m]`` and the product is
``swapaxes(lhs, -1, -2) @ rhs``. Gradients produce such products
(``x.T @ g``, ``g @ w.T``); the dot_layout pass folds a transpose feeding a
``dot`` into them, and the backend reads the operand through strides instead
of materialising the transpose. They print only when true.
"""

from __future__ import annotations

import numpy as np

from ir.errors import DTypeError, ShapeError
from ir.ops import defop
from ir.ops.elementwise import NUMERIC


def _swap_last(shape):
    return (*shape[:-2], shape[-1], shape[-2])


def _dot_infer(types, attrs):
    lhs, rhs = types
    if lhs.dtype != rhs.dtype or lhs.dtype not in NUMERIC:
        raise DTypeError(f"dot: operands {lhs} and {rhs} need the same number dtype")
    if lhs.rank < 2 or lhs.rank != rhs.rank:
        raise ShapeError(
            f"dot: operands {lhs} and {rhs} must both have rank >= 2 and equal rank "
            "([..., m, k] @ [..., k, n])"
        )
    if lhs.shape[:-2] != rhs.shape[:-2]:
        raise ShapeError(f"dot: batch dims of {lhs} and {rhs} differ; broadcast them first")
    lhs_shape = _swap_last(lhs.shape) if attrs.get("transpose_lhs") else lhs.shape
    rhs_shape = _swap_last(rhs.shape) if attrs.get("transpose_rhs") else rhs.shape
    if lhs_shape[-1] != rhs_shape[-2]:
        layout = "".join(f", {side}" for side, flag in
                         (("lhs transposed", attrs.get("transpose_lhs")),
                          ("rhs transposed", attrs.get("transpose_rhs"))) if flag)
        raise ShapeError(
            f"dot: contracting dims differ: {lhs} has k={lhs_shape[-1]}, {rhs} has "
            f"k={rhs_shape[-2]}{layout}"
        )
    return [lhs.with_shape((*lhs_shape[:-1], rhs_shape[-1]))]


def _dot_ref(xs, attrs):
    lhs, rhs = xs
    if attrs.get("transpose_lhs"):
        lhs = np.swapaxes(lhs, -1, -2)
    if attrs.get("transpose_rhs"):
        rhs = np.swapaxes(rhs, -1, -2)
    return np.matmul(lhs, rhs)


defop(
    "dot", arity=2, kind="linalg", infer=_dot_infer, ref=_dot_ref,
    attrs={"transpose_lhs": "bool", "transpose_rhs": "bool"},
    optional_attrs=("transpose_lhs", "transpose_rhs"),
    doc="batched matrix product [..., m, k] @ [..., k, n] -> [..., m, n] "
        "(transpose_lhs/transpose_rhs: that operand is stored [..., k, m] / [..., n, k])",
)
