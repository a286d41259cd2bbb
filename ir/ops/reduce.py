"""Reductions over a set of axes; the reduced axes are removed from the shape.

``keepdims`` is the front end's job (a reshape after the reduction). max/min
propagate nan like numpy; argmax/argmin return the first index of the extreme
value (a nan counts as the extreme, as in numpy) as i64.
"""

from __future__ import annotations

import numpy as np

from ir.dtypes import DType
from ir.errors import DTypeError, ShapeError
from ir.ops import defop
from ir.ops.elementwise import NUMERIC


def _check_axes(op, t, axes):
    if len(set(axes)) != len(axes) or list(axes) != sorted(axes):
        raise ShapeError(f"{op}: axes {list(axes)} must be sorted and distinct")
    for a in axes:
        if not 0 <= a < t.rank:
            raise ShapeError(f"{op}: axis {a} is out of range for operand {t} (rank {t.rank})")


def _reduce(name, fn, doc):
    def infer(types, attrs):
        t = types[0]
        if t.dtype not in NUMERIC:
            raise DTypeError(f"{name}: operand has dtype {t.dtype}; cast bool to a number first")
        axes = attrs["axes"]
        _check_axes(name, t, axes)
        if name != "reduce_sum" and any(t.shape[a] == 0 for a in axes):
            raise ShapeError(f"{name}: cannot reduce an empty axis of {t} (no identity)")
        return [t.with_shape(d for i, d in enumerate(t.shape) if i not in axes)]

    def ref(xs, attrs):
        return fn(xs[0], axis=tuple(attrs["axes"]))

    defop(name, arity=1, kind="reduce", attrs={"axes": "ints"}, infer=infer, ref=ref, doc=doc)


_reduce("reduce_sum", np.sum, "sum over axes (0 for empty axes)")
_reduce("reduce_max", np.max, "maximum over axes; nan if any element is nan")
_reduce("reduce_min", np.min, "minimum over axes; nan if any element is nan")


def _arg(name, fn, doc):
    def infer(types, attrs):
        t = types[0]
        if t.dtype not in NUMERIC:
            raise DTypeError(f"{name}: operand has dtype {t.dtype}; expected a number type")
        axis = attrs["axis"]
        _check_axes(name, t, (axis,))
        if t.shape[axis] == 0:
            raise ShapeError(f"{name}: axis {axis} of {t} is empty")
        return [_index_type(t, axis)]

    defop(name, arity=1, kind="reduce", attrs={"axis": "int"}, infer=infer,
          ref=lambda xs, attrs: fn(xs[0], axis=attrs["axis"]), doc=doc)


def _index_type(t, axis):
    return t.with_shape(d for i, d in enumerate(t.shape) if i != axis).with_dtype(DType.i64)


_arg("argmax", np.argmax, "index of the first maximum along axis (i64)")
_arg("argmin", np.argmin, "index of the first minimum along axis (i64)")
