"""Linear algebra: ``dot``, a batched matrix product.

``dot(lhs[..., m, k], rhs[..., k, n]) -> [..., m, n]`` with equal leading
(batch) dims. numpy's matmul rules for 1-D operands and broadcast batch dims are
the front end's job (reshape/broadcast around this primitive).
"""

from __future__ import annotations

import numpy as np

from ir.errors import DTypeError, ShapeError
from ir.ops import defop
from ir.ops.elementwise import NUMERIC


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
    if lhs.shape[-1] != rhs.shape[-2]:
        raise ShapeError(
            f"dot: contracting dims differ: {lhs} has k={lhs.shape[-1]}, {rhs} has "
            f"k={rhs.shape[-2]}"
        )
    return [lhs.with_shape((*lhs.shape[:-1], rhs.shape[-1]))]


defop(
    "dot", arity=2, kind="linalg", infer=_dot_infer,
    ref=lambda xs, attrs: np.matmul(xs[0], xs[1]),
    doc="batched matrix product [..., m, k] @ [..., k, n] -> [..., m, n]",
)
