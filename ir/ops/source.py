"""Source ops (no operands): ``constant`` and ``iota``; their type is in their attrs."""

from __future__ import annotations

import numpy as np

from ir.dtypes import DType, TensorType
from ir.errors import DTypeError, ShapeError
from ir.ops import defop


def _constant_infer(types, attrs):
    t = TensorType(attrs["dtype"], attrs["shape"])
    value = attrs["value"]
    if isinstance(value, tuple) and len(value) != t.size:
        raise ShapeError(
            f"constant: {len(value)} values given for type {t} ({t.size} elements); give one "
            "value (a splat) or exactly one per element"
        )
    for v in value if isinstance(value, tuple) else (value,):
        _check_literal(t, v)
    return [t]


def _check_literal(t: TensorType, v) -> None:
    if t.dtype.is_int and (isinstance(v, bool) or not float(v).is_integer()):
        raise DTypeError(f"constant: value {v!r} is not an integer, but the type is {t}")
    if t.dtype.is_int:
        info = np.iinfo(t.dtype.numpy)
        if not info.min <= v <= info.max:
            raise DTypeError(f"constant: value {v!r} does not fit in {t.dtype}")
    if t.dtype == DType.bool and not isinstance(v, bool):
        raise DTypeError(f"constant: value {v!r} is not true/false, but the type is {t}")


def _constant_ref(xs, attrs):
    dtype, shape, value = attrs["dtype"].numpy, attrs["shape"], attrs["value"]
    if isinstance(value, tuple):
        return np.array(value, dtype=dtype).reshape(shape)
    return np.full(shape, value, dtype=dtype)


defop(
    "constant", arity=0, kind="source",
    attrs={"value": "literal", "dtype": "dtype", "shape": "ints"},
    infer=_constant_infer, ref=_constant_ref,
    doc="a literal: one value splat over the shape, or one value per element (row-major)",
)


def _iota_infer(types, attrs):
    t = TensorType(attrs["dtype"], attrs["shape"])
    if not 0 <= attrs["dimension"] < max(t.rank, 1) or t.rank == 0:
        raise ShapeError(f"iota: dimension {attrs['dimension']} is not an axis of {t}")
    return [t]


def _iota_ref(xs, attrs):
    shape, dim = attrs["shape"], attrs["dimension"]
    index = np.arange(shape[dim]).reshape([-1 if i == dim else 1 for i in range(len(shape))])
    return np.broadcast_to(index, shape).astype(attrs["dtype"].numpy)


defop(
    "iota", arity=0, kind="source", attrs={"shape": "ints", "dtype": "dtype", "dimension": "int"},
    infer=_iota_infer, ref=_iota_ref,
    doc="element value = its index along `dimension`",
)
