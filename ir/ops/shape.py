"""Shape primitives: broadcast, reshape, transpose, slice, pad, concat.

These move elements without arithmetic; every output element is one operand
element (or a zero, for pad), which is what lets fusion and codegen compute
them as index maps.
"""

from __future__ import annotations

import numpy as np

from ir.errors import ShapeError
from ir.ops import defop


def _broadcast_infer(types, attrs):
    t = types[0]
    shape, dims = attrs["shape"], attrs["dims"]
    if len(dims) != t.rank:
        raise ShapeError(
            f"broadcast: dims {list(dims)} must name one output axis per operand axis "
            f"(operand {t} has rank {t.rank})"
        )
    if list(dims) != sorted(set(dims)) or any(not 0 <= d < len(shape) for d in dims):
        raise ShapeError(
            f"broadcast: dims {list(dims)} must be increasing axes of the output shape {list(shape)}"
        )
    for i, d in enumerate(dims):
        if t.shape[i] not in (1, shape[d]):
            raise ShapeError(
                f"broadcast: operand {t} axis {i} has size {t.shape[i]}, output axis {d} has "
                f"size {shape[d]}; sizes must match or the operand's must be 1"
            )
    return [t.with_shape(shape)]


def _broadcast_ref(xs, attrs):
    x = xs[0]
    shape, dims = attrs["shape"], attrs["dims"]
    expanded = [1] * len(shape)
    for i, d in enumerate(dims):
        expanded[d] = x.shape[i]
    return np.broadcast_to(x.reshape(expanded), shape).copy()


defop(
    "broadcast", arity=1, kind="shape", attrs={"shape": "ints", "dims": "ints"},
    infer=_broadcast_infer, ref=_broadcast_ref,
    doc="operand axis i becomes output axis dims[i] (size 1 stretches); other axes repeat",
)


def _reshape_infer(types, attrs):
    t = types[0]
    new = t.with_shape(attrs["shape"])
    if new.size != t.size:
        raise ShapeError(
            f"reshape: cannot reshape {t} ({t.size} elements) to {list(attrs['shape'])} "
            f"({new.size} elements)"
        )
    return [new]


defop(
    "reshape", arity=1, kind="shape", attrs={"shape": "ints"}, infer=_reshape_infer,
    ref=lambda xs, attrs: xs[0].reshape(attrs["shape"]),
    doc="same elements in row-major order, new shape",
)


def _transpose_infer(types, attrs):
    t, perm = types[0], attrs["perm"]
    if sorted(perm) != list(range(t.rank)):
        raise ShapeError(f"transpose: perm {list(perm)} is not a permutation of the axes of {t}")
    return [t.with_shape(t.shape[p] for p in perm)]


defop(
    "transpose", arity=1, kind="shape", attrs={"perm": "ints"}, infer=_transpose_infer,
    ref=lambda xs, attrs: np.transpose(xs[0], attrs["perm"]).copy(),
    doc="output axis i is operand axis perm[i]",
)


def _slice_infer(types, attrs):
    t = types[0]
    start, stop, step = attrs["start"], attrs["stop"], attrs["step"]
    if not len(start) == len(stop) == len(step) == t.rank:
        raise ShapeError(f"slice: start/stop/step need one entry per axis of {t}")
    out = []
    for axis, (lo, hi, st, d) in enumerate(zip(start, stop, step, t.shape, strict=True)):
        if st < 1:
            raise ShapeError(f"slice: step {st} on axis {axis} must be positive")
        if not 0 <= lo <= hi <= d:
            raise ShapeError(
                f"slice: bounds {lo}:{hi} on axis {axis} of {t} must satisfy 0 <= start <= stop <= {d}"
            )
        out.append((hi - lo + st - 1) // st)
    return [t.with_shape(out)]


defop(
    "slice", arity=1, kind="shape", attrs={"start": "ints", "stop": "ints", "step": "ints"},
    infer=_slice_infer,
    ref=lambda xs, attrs: xs[0][
        tuple(slice(a, b, c) for a, b, c in zip(attrs["start"], attrs["stop"], attrs["step"]))
    ].copy(),
    doc="static strided slice with in-bounds, non-negative start <= stop and positive steps",
)


def _pad_shape(shape, low, high, interior):
    return [
        lo + hi + d + max(d - 1, 0) * it
        for lo, hi, it, d in zip(low, high, interior, shape, strict=True)
    ]


def _pad_infer(types, attrs):
    t = types[0]
    low, high, interior = attrs["low"], attrs["high"], attrs["interior"]
    if not len(low) == len(high) == len(interior) == t.rank:
        raise ShapeError(f"pad: low/high/interior need one entry per axis of {t}")
    if any(v < 0 for v in (*low, *high, *interior)):
        raise ShapeError("pad: low, high and interior padding must be non-negative")
    return [t.with_shape(_pad_shape(t.shape, low, high, interior))]


def _pad_ref(xs, attrs):
    x = xs[0]
    low, interior = attrs["low"], attrs["interior"]
    result = np.zeros(_pad_shape(x.shape, low, attrs["high"], interior), dtype=x.dtype)
    index = tuple(
        slice(lo, lo + max(d - 1, 0) * (it + 1) + 1 if d else lo, it + 1)
        for lo, it, d in zip(low, interior, x.shape, strict=True)
    )
    result[index] = x
    return result


defop(
    "pad", arity=1, kind="shape", attrs={"low": "ints", "high": "ints", "interior": "ints"},
    infer=_pad_infer, ref=_pad_ref,
    doc="zero padding: low/high zeros at each end and interior zeros between elements",
)


def _concat_infer(types, attrs):
    if not types:
        raise ShapeError("concat: needs at least one operand")
    first, axis = types[0], attrs["axis"]
    if not 0 <= axis < first.rank:
        raise ShapeError(f"concat: axis {axis} is out of range for {first}")
    for t in types[1:]:
        if t.dtype != first.dtype or t.rank != first.rank or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis
        ):
            raise ShapeError(
                f"concat: operand {t} does not fit {first} along axis {axis}; all other axes "
                "and the dtype must match"
            )
    total = sum(t.shape[axis] for t in types)
    return [first.with_shape(total if i == axis else d for i, d in enumerate(first.shape))]


defop(
    "concat", arity=None, kind="shape", attrs={"axis": "int"}, infer=_concat_infer,
    ref=lambda xs, attrs: np.concatenate(xs, axis=attrs["axis"]),
    doc="join operands along axis",
)


def _reverse_infer(types, attrs):
    t, axes = types[0], attrs["axes"]
    if list(axes) != sorted(set(axes)) or any(not 0 <= a < t.rank for a in axes):
        raise ShapeError(f"reverse: axes {list(axes)} must be sorted, distinct axes of {t}")
    return [t]


defop(
    "reverse", arity=1, kind="shape", attrs={"axes": "ints"}, infer=_reverse_infer,
    ref=lambda xs, attrs: np.flip(xs[0], attrs["axes"]).copy(),
    doc="element order reversed along each of axes (numpy's x[::-1])",
)
