"""numpy-style functions on Variables (the ``compiler`` namespace and the
Variable operators and methods), written in terms of the IR's primitives.

NOTE: [numpy semantics in a static IR]
The IR is exact-shape and exact-dtype; this module is where numpy's rules
become explicit ops: NEP 50 promotion (Python scalars are weak, so
``f32_var * 2.0`` stays f32), broadcasting (``broadcast`` ops), negative axes,
keepdims (a ``reshape`` after the reduction), 1-D matmul operands, basic
indexing. Anything array-like is accepted where a Variable is; the result is a
(lazy) Variable.
"""

from __future__ import annotations

import builtins
from typing import Sequence

import numpy as np

from compiler.frontend.source_info import user_location
from compiler.frontend.tensor import Tensor, as_array, owned_array
from compiler.frontend.variable import Variable, apply
from ir import DType, TensorType, dtype_of
from ir.errors import DTypeError, IRError, ShapeError

__all__ = [
    "asvariable", "add", "subtract", "multiply", "divide", "power", "negative", "abs", "sign",
    "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "tanh", "sin", "cos", "floor", "maximum",
    "minimum", "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
    "where", "astype", "sum", "mean", "max", "min", "argmax", "argmin", "reshape",
    "transpose", "broadcast_to", "expand_dims", "squeeze", "concatenate", "stack", "pad",
    "matmul", "dot", "one_hot", "take_along_axis", "zeros_like", "ones_like", "square",
    "logical_not", "clip", "stop_gradient", "flip", "var", "std", "any", "all", "ravel",
    "swapaxes", "outer",
]

_PY_SCALARS = (bool, int, float)


def asvariable(x, dtype=None) -> Variable:
    """``x`` as a Variable: Variables pass through, arrays become constant leaves."""
    if isinstance(x, Variable):
        return x if dtype is None else astype(x, dtype)
    return Variable(Tensor._wrap(owned_array(x, dtype)), requires_grad=False)


def _is_weak(x) -> bool:
    return isinstance(x, _PY_SCALARS) and not isinstance(x, np.generic)


_WEAK_PROXY = {DType.bool: False, DType.i32: 0, DType.i64: 0, DType.f32: 0.0, DType.f64: 0.0}


def _promotion_operand(x):
    if _is_weak(x):
        return x
    if isinstance(x, Variable) and x._weak:  # a traced Python number: promotes like one
        return _WEAK_PROXY[x.dtype]
    return _dtype_of_operand(x).numpy


def _result_dtype(operands) -> DType:
    weak_vars = [x for x in operands if isinstance(x, Variable) and x._weak]
    if weak_vars and builtins.all(_is_weak(x) or (isinstance(x, Variable) and x._weak)
                                  for x in operands):
        # Only weak values: the traced Python numbers keep the dtypes they were given.
        args = [x if _is_weak(x) else x.dtype.numpy for x in operands]
    else:
        args = [_promotion_operand(x) for x in operands]
    try:
        return dtype_of(np.result_type(*args))
    except IRError:
        raise DTypeError(
            f"operands of dtypes {', '.join(str(_describe(x)) for x in operands)} promote to "
            f"{np.result_type(*args)}, which is not supported (at {user_location()})"
        ) from None


def _dtype_of_operand(x) -> DType:
    if isinstance(x, (Variable, Tensor)):
        return x.dtype
    return dtype_of(as_array(x).dtype)


def _describe(x) -> str:
    if isinstance(x, (Variable, Tensor)):
        return str(x.type)
    if _is_weak(x):
        return f"Python {type(x).__name__}"
    arr = as_array(x)
    return str(TensorType(arr.dtype, arr.shape))


def _constant(value, dtype: DType, shape=()) -> Variable:
    return apply("constant", [], {"value": value, "dtype": dtype, "shape": shape})


def _to_variable(x, dtype: DType) -> Variable:
    if _is_weak(x):
        return _constant(dtype.numpy.type(x).item(), dtype)
    return astype(asvariable(x), dtype)


def _broadcast_shapes(op: str, shapes, operands=None) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        shown = " and ".join(str(v.type) for v in operands) if operands else \
            " and ".join(str(list(s)) for s in shapes)
        raise ShapeError(
            f"{op}: operands {shown} cannot be broadcast together (at {user_location()}); "
            "numpy broadcasting needs trailing dimensions that are equal or 1"
        ) from None


def broadcast_to(x, shape) -> Variable:
    """``x`` repeated to ``shape`` by numpy's broadcasting rules."""
    x = asvariable(x)
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    if x.ndim > len(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast {x.type} to {list(shape)} (at {user_location()})")
    dims = list(range(len(shape) - x.ndim, len(shape)))
    if _broadcast_shapes("broadcast_to", [x.shape, shape]) != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast {x.type} to {list(shape)} (at {user_location()})")
    return apply("broadcast", [x], {"shape": shape, "dims": dims})


def _elementwise(op: str, operands, dtype: DType | None = None, attrs=None) -> Variable:
    """Promote, broadcast and apply a primitive elementwise op."""
    target = dtype or _result_dtype(operands)
    vars_ = [_to_variable(x, target) for x in operands]
    shape = _broadcast_shapes(op, [v.shape for v in vars_], vars_)
    vars_ = [broadcast_to(v, shape) for v in vars_]
    result = apply(op, vars_, attrs or {})
    result._weak = builtins.all(_is_weak(x) or (isinstance(x, Variable) and x._weak) for x in operands)
    return result


def _float_dtype(operands) -> DType:
    dtype = _result_dtype(operands)
    return dtype if dtype.is_float else DType.f64  # numpy: int / int -> float64


def _unary_float(op: str):
    def fn(x) -> Variable:
        x = asvariable(x)
        return apply(op, [x if x.dtype.is_float else astype(x, DType.f64)], {})

    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op} (integers are converted to float64, as numpy does)."
    return fn


exp = _unary_float("exp")
log = _unary_float("log")
log1p = _unary_float("log1p")
expm1 = _unary_float("expm1")
sqrt = _unary_float("sqrt")
rsqrt = _unary_float("rsqrt")
tanh = _unary_float("tanh")
sin = _unary_float("sin")
cos = _unary_float("cos")
logistic = _unary_float("logistic")


def floor(x) -> Variable:
    """Elementwise floor; integers are returned as they are (numpy 2 keeps their dtype)."""
    x = _numeric(asvariable(x), "floor")
    return apply("floor", [x], {}) if x.dtype.is_float else x


def negative(x) -> Variable:
    return apply("neg", [_numeric(asvariable(x), "negative")], {})


def abs(x) -> Variable:
    return apply("abs", [_numeric(asvariable(x), "abs")], {})


def sign(x) -> Variable:
    return apply("sign", [_numeric(asvariable(x), "sign")], {})


def _numeric(x: Variable, op: str) -> Variable:
    if x.dtype == DType.bool:
        raise DTypeError(f"{op}: not defined for bool {x.type} (at {user_location()}); cast first")
    return x


def _arith(op: str):
    def fn(x, y) -> Variable:
        dtype = _result_dtype([x, y])
        if dtype == DType.bool:
            raise DTypeError(
                f"{op}: arithmetic on two bool operands ({_describe(x)} and {_describe(y)}) is not "
                f"supported (at {user_location()}); "
                "cast to an integer or float dtype first"
            )
        return _elementwise(op, [x, y], dtype)

    return fn


add = _arith("add")
subtract = _arith("sub")
multiply = _arith("mul")
maximum = _arith("maximum")
minimum = _arith("minimum")


def divide(x, y) -> Variable:
    """True division; integer operands give float64, as in numpy."""
    return _elementwise("div", [x, y], _float_dtype([x, y]))


def power(x, y) -> Variable:
    """``x ** y`` with numpy's dtypes. An integer Python exponent becomes
    multiplications (exact, defined for negative ``x``): any exponent >= 0 for
    integer ``x`` (negative ones are an error, as in numpy), up to 4 for floats;
    otherwise the ``pow`` primitive on floats."""
    if _is_weak(y) and not isinstance(y, bool) and float(y).is_integer():
        dtype = _result_dtype([x, y])
        n = int(y)
        if dtype.is_int and n < 0:
            raise DTypeError(f"power: integers to negative integer powers are not allowed, "
                             f"as in numpy (at {user_location()}); cast to float first")
        if dtype.is_int or 0 <= n <= 4:
            return _integer_power(astype(x, dtype), n)
    return _elementwise("pow", [x, y], _float_dtype([x, y]))


def _integer_power(x: Variable, n: int) -> Variable:
    # Exponentiation by squaring: O(log n) multiplications.
    result, base = None, x
    while n:
        if n & 1:
            result = base if result is None else multiply(result, base)
        n >>= 1
        if n:
            base = multiply(base, base)
    return ones_like(x) if result is None else result


def square(x) -> Variable:
    return multiply(x, x)


def _compare(direction: str):
    def fn(x, y) -> Variable:
        return _elementwise("compare", [x, y], _result_dtype([x, y]), {"direction": direction})

    return fn


less = _compare("lt")
less_equal = _compare("le")
greater = _compare("gt")
greater_equal = _compare("ge")
equal = _compare("eq")
not_equal = _compare("ne")


def stop_gradient(x) -> Variable:
    """``x``, but no gradient flows back through it (JAX's ``lax.stop_gradient``)."""
    return apply("stop_gradient", [asvariable(x)], {})


def flip(x, axis=None) -> Variable:
    """Reverse the order of elements along ``axis`` (all axes if None), as numpy.flip."""
    x = asvariable(x)
    axes = _axes(x, axis, "flip") if x.ndim else ()
    return apply("reverse", [x], {"axes": axes}) if axes else x


def logical_not(x) -> Variable:
    return equal(astype(x, DType.bool), False)


def where(condition, x, y) -> Variable:
    """Elementwise ``x if condition else y`` with broadcasting and promotion."""
    cond = astype(asvariable(condition), DType.bool)
    dtype = _result_dtype([x, y])
    xv, yv = _to_variable(x, dtype), _to_variable(y, dtype)
    shape = _broadcast_shapes("where", [cond.shape, xv.shape, yv.shape])
    return apply("select", [broadcast_to(cond, shape), broadcast_to(xv, shape), broadcast_to(yv, shape)], {})


def clip(x, lo=None, hi=None) -> Variable:
    """``x`` limited to ``[lo, hi]``; a bound of None is no bound (as in numpy)."""
    x = asvariable(x)
    x = x if lo is None else maximum(x, lo)
    return x if hi is None else minimum(x, hi)


def astype(x, dtype) -> Variable:
    """Convert the element type (float -> int truncates toward zero)."""
    x = asvariable(x)
    dtype = dtype_of(dtype)
    return x if x.dtype == dtype else apply("cast", [x], {"dtype": dtype})


def zeros_like(x, dtype=None) -> Variable:
    x = asvariable(x)
    return _constant(False if (dtype_of(dtype or x.dtype) == DType.bool) else 0, dtype_of(dtype or x.dtype), x.shape)


def ones_like(x, dtype=None) -> Variable:
    x = asvariable(x)
    return _constant(True if (dtype_of(dtype or x.dtype) == DType.bool) else 1, dtype_of(dtype or x.dtype), x.shape)


# -- reductions ------------------------------------------------------------------------
def _axes(x: Variable, axis, op: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    result = []
    for a in axes:
        a = int(a)
        if not -x.ndim <= a < builtins.max(x.ndim, 1) or (x.ndim == 0):
            raise ShapeError(f"{op}: axis {a} is out of range for {x.type} (at {user_location()})")
        result.append(a % x.ndim)
    if len(set(result)) != len(result):
        raise ShapeError(f"{op}: repeated axis in {list(axes)} (at {user_location()})")
    return tuple(sorted(result))


def _keep(x: Variable, reduced: Variable, axes, keepdims: bool) -> Variable:
    if not keepdims:
        return reduced
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return reshape(reduced, shape)


def sum(x, axis=None, keepdims: bool = False) -> Variable:
    """Sum over ``axis`` (None: all). bool and small ints sum as int64, as in numpy."""
    x = asvariable(x)
    if x.dtype in (DType.bool, DType.i32):
        x = astype(x, DType.i64)
    axes = _axes(x, axis, "sum")
    return _keep(x, apply("reduce_sum", [x], {"axes": axes}), axes, keepdims)


def mean(x, axis=None, keepdims: bool = False) -> Variable:
    """Arithmetic mean over ``axis``; integers give float64, as in numpy."""
    x = asvariable(x)
    if not x.dtype.is_float:
        x = astype(x, DType.f64)
    axes = _axes(x, axis, "mean")
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    return divide(sum(x, axes, keepdims), float(count) if count else float("nan"))


def var(x, axis=None, keepdims: bool = False, ddof: int = 0) -> Variable:
    """Variance over ``axis``: the mean squared deviation from the mean, divided by
    ``N - ddof`` (numpy's default ``ddof=0``); integers give float64."""
    x = asvariable(x)
    if not x.dtype.is_float:
        x = astype(x, DType.f64)
    axes = _axes(x, axis, "var")
    deviation = subtract(x, mean(x, axes, keepdims=True))
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) - int(ddof)
    total = sum(multiply(deviation, deviation), axes, keepdims)
    return divide(total, float(count) if count > 0 else float("nan"))


def std(x, axis=None, keepdims: bool = False, ddof: int = 0) -> Variable:
    """Standard deviation: ``sqrt(var(x, axis, keepdims, ddof))``."""
    return sqrt(var(x, axis, keepdims, ddof))


def _truth_reduction(name: str, reduce_op: str):
    def fn(x, axis=None, keepdims: bool = False) -> Variable:
        x = asvariable(x)
        truth = x if x.dtype == DType.bool else not_equal(x, 0)
        axes = _axes(truth, axis, name)
        if builtins.any(truth.shape[a] == 0 for a in axes):
            # reduce_max/min have no identity for an empty axis; numpy's any of
            # nothing is False, all of nothing True.
            kept = tuple(d for i, d in enumerate(truth.shape) if i not in axes)
            empty = broadcast_to(_constant(name == "all", DType.bool), kept)
            return _keep(truth, empty, axes, keepdims)
        counted = apply(reduce_op, [astype(truth, DType.i32)], {"axes": axes})
        return _keep(truth, not_equal(counted, 0), axes, keepdims)

    fn.__name__ = name
    fn.__doc__ = (f"Whether {'any' if name == 'any' else 'every'} element over ``axis`` is "
                  "true (non-zero), as a bool array.")
    return fn


any = _truth_reduction("any", "reduce_max")
all = _truth_reduction("all", "reduce_min")


def _extreme(op: str, name: str):
    def fn(x, axis=None, keepdims: bool = False) -> Variable:
        x = _numeric(asvariable(x), name)
        axes = _axes(x, axis, name)
        return _keep(x, apply(op, [x], {"axes": axes}), axes, keepdims)

    fn.__name__ = name
    fn.__doc__ = (f"{name.capitalize()} over ``axis``; nan propagates. Its gradient is split evenly "
                  "between tied elements.")
    return fn


max = _extreme("reduce_max", "max")
min = _extreme("reduce_min", "min")


def _arg_extreme(op: str):
    def fn(x, axis=None, keepdims: bool = False) -> Variable:
        x = _numeric(asvariable(x), op)
        if axis is None:
            flat = reshape(x, (x.size,))
            return _keep(x, apply(op, [flat], {"axis": 0}), tuple(range(x.ndim)), keepdims)
        (a,) = _axes(x, axis, op)
        return _keep(x, apply(op, [x], {"axis": a}), (a,), keepdims)

    fn.__name__ = op
    fn.__doc__ = f"Index (int64) of the first {op[3:]}imum along ``axis`` (flattened if None)."
    return fn


argmax = _arg_extreme("argmax")
argmin = _arg_extreme("argmin")


# -- shapes ----------------------------------------------------------------------------
def reshape(x, *shape) -> Variable:
    """Same elements, new shape; one dimension may be -1."""
    x = asvariable(x)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = [int(d) for d in shape]
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: at most one -1 in {shape} (at {user_location()})")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        if known == 0 or x.size % known:
            raise ShapeError(f"reshape: cannot reshape {x.type} to {shape} (at {user_location()})")
        shape[shape.index(-1)] = x.size // known
    if tuple(shape) == x.shape:
        return x
    return apply("reshape", [x], {"shape": shape})


def _axis_in(a, rank: int, op: str, x: Variable) -> int:
    """Axis ``a`` of a rank-``rank`` result of ``op`` on ``x``, made non-negative."""
    a = int(a)
    if not -rank <= a < rank:
        raise ShapeError(f"{op}: axis {a} is out of range for {x.type} (at {user_location()}); "
                         f"valid axes are {-rank}..{rank - 1}")
    return a % rank


def transpose(x, axes=None) -> Variable:
    """Permute axes (reverse them when ``axes`` is None)."""
    x = asvariable(x)
    if axes is None:
        perm = list(reversed(range(x.ndim)))
    else:
        perm = [_axis_in(a, x.ndim, "transpose", x) for a in axes]
    if perm == list(range(x.ndim)):
        return x
    return apply("transpose", [x], {"perm": perm})


def expand_dims(x, axis) -> Variable:
    x = asvariable(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    rank = x.ndim + len(axes)
    axes = sorted(_axis_in(a, rank, "expand_dims", x) for a in axes)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"expand_dims: repeated axis in {list(axis)} (at {user_location()})")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, shape)


def squeeze(x, axis=None) -> Variable:
    x = asvariable(x)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else list(_axes(x, axis, "squeeze"))
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"squeeze: axis {a} of {x.type} has size {x.shape[a]}, not 1 (at {user_location()})")
    return reshape(x, [d for i, d in enumerate(x.shape) if i not in axes])


def ravel(x) -> Variable:
    """The elements as a 1-D array (row-major); also ``v.ravel()`` and ``v.flatten()``."""
    x = asvariable(x)
    return reshape(x, (x.size,))


def swapaxes(x, axis1: int, axis2: int) -> Variable:
    """Exchange two axes."""
    x = asvariable(x)
    perm = list(range(x.ndim))
    a, b = _axis_in(axis1, x.ndim, "swapaxes", x), _axis_in(axis2, x.ndim, "swapaxes", x)
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def concatenate(xs: Sequence, axis: int = 0) -> Variable:
    xs = list(xs)
    if not xs:
        raise ShapeError(f"concatenate: needs at least one array (at {user_location()})")
    dtype = _result_dtype(xs)
    vars_ = [_to_variable(x, dtype) for x in xs]
    (a,) = _axes(vars_[0], axis, "concatenate")
    return apply("concat", vars_, {"axis": a})


def stack(xs: Sequence, axis: int = 0) -> Variable:
    xs = [asvariable(x) for x in xs]
    if not xs:
        raise ShapeError(f"stack: needs at least one array (at {user_location()})")
    rank = xs[0].ndim + 1
    return concatenate([expand_dims(x, axis % rank) for x in xs], axis % rank)


def pad(x, pad_width) -> Variable:
    """Zero padding; ``pad_width`` as in numpy: an int, (before, after), or one pair per axis."""
    x = asvariable(x)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    return apply("pad", [x], {"low": widths[:, 0].tolist(), "high": widths[:, 1].tolist(),
                              "interior": [0] * x.ndim})


def getitem(x: Variable, index) -> Variable:
    """Basic numpy indexing: ints (negative too), slices (any step), None, ``...``;
    and of integer-array indexing the row pick ``x[np.arange(n), labels]`` of a
    2-D ``x`` (``take_along_axis``: a traced out-of-range label picks 0)."""
    if not isinstance(index, tuple):
        index = (index,)
    picked = _row_pick(x, index)
    if picked is not None:
        return picked
    if builtins.sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if used > x.ndim:
        raise IndexError(f"too many indices for {x.type}: {used} given (at {user_location()})")
    has_ellipsis = builtins.any(i is Ellipsis for i in index)
    expanded = []
    for i in index:
        expanded.extend([slice(None)] * (x.ndim - used) if i is Ellipsis else [i])
    if not has_ellipsis:
        expanded.extend([slice(None)] * (x.ndim - used))
    start, stop, step, out_shape, reversed_axes = [], [], [], [], []
    axis = 0
    for i in expanded:
        if i is None:
            out_shape.append(1)
            continue
        d = x.shape[axis]
        if isinstance(i, slice):
            lo, hi, st = i.indices(d)
            n = len(range(lo, hi, st))
            if st < 0:  # the same elements, read forwards, then reversed
                reversed_axes.append(axis)
                lo, st = (lo + (n - 1) * st, -st) if n else (0, 1)
            hi = lo + (n - 1) * st + 1 if n else lo
            start.append(lo), stop.append(hi), step.append(st)
            out_shape.append(n)
        elif isinstance(i, (int, np.integer)) and not isinstance(i, bool):
            j = int(i)
            if not -d <= j < d:
                raise IndexError(
                    f"index {j} is out of bounds for axis {axis} with size {d} (at {user_location()})"
                )
            j %= d
            start.append(j), stop.append(j + 1), step.append(1)
        else:
            raise IndexError(
                f"unsupported index {i!r} (at {user_location()}); use ints, slices, None or ...; "
                "of arrays of indices, x[np.arange(len(x)), labels] on a 2-D x is supported, "
                "else use take_along_axis or one_hot"
            )
        axis += 1
    result = x
    if (start, stop, step) != ([0] * x.ndim, list(x.shape), [1] * x.ndim):
        result = apply("slice", [x], {"start": start, "stop": stop, "step": step})
    if reversed_axes:
        result = apply("reverse", [result], {"axes": reversed_axes})
    return reshape(result, out_shape)


def _row_pick(x: Variable, index: tuple) -> Variable | None:
    """``x[rows, labels]`` with ``rows`` the concrete ``arange(len(x))`` (how a
    negative log-likelihood is often written), else None."""
    if x.ndim != 2 or len(index) != 2 or not builtins.all(
            isinstance(i, (np.ndarray, list, range, Variable, Tensor)) for i in index):
        return None
    rows = index[0]
    if isinstance(rows, Variable):
        return None  # traced rows: no way to know they are an arange
    rows = np.asarray(rows)
    if rows.dtype.kind not in "iu" or not np.array_equal(rows, np.arange(x.shape[0])):
        return None
    labels = asvariable(index[1])
    if labels.dtype not in (DType.i32, DType.i64) or labels.shape != (x.shape[0],):
        return None
    if not isinstance(index[1], Variable):  # numpy's bounds check, where the labels are known
        values = np.asarray(labels)
        if values.size and not (-x.shape[1] <= values.min() and values.max() < x.shape[1]):
            raise IndexError(f"index {values.max() if values.max() >= x.shape[1] else values.min()}"
                             f" is out of bounds for axis 1 with size {x.shape[1]} "
                             f"(at {user_location()})")
    return reshape(take_along_axis(x, reshape(labels, (x.shape[0], 1)), 1), (x.shape[0],))


# -- linear algebra --------------------------------------------------------------------
def matmul(a, b) -> Variable:
    """numpy.matmul: 1-D operands are vectors, batch dims broadcast."""
    dtype = _result_dtype([a, b])
    if dtype == DType.bool:
        raise DTypeError(f"matmul: bool operands are not supported, got {_describe(a)} and "
                         f"{_describe(b)} (at {user_location()}); cast them first")
    a, b = _to_variable(a, dtype), _to_variable(b, dtype)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: operands must be at least 1-D, got {a.type} and {b.type} "
                         f"(at {user_location()}); use * for scalars")
    a2 = reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ShapeError(
            f"matmul: contracting dimensions differ: {a.type} @ {b.type} (at {user_location()}); "
            f"the last axis of the left ({a2.shape[-1]}) must equal the "
            f"{'first' if b.ndim == 1 else 'second-to-last'} axis of the right ({b2.shape[-2]})"
        )
    batch = _broadcast_shapes("matmul", [a2.shape[:-2], b2.shape[:-2]])
    a3 = broadcast_to(a2, (*batch, *a2.shape[-2:]))
    b3 = broadcast_to(b2, (*batch, *b2.shape[-2:]))
    out = apply("dot", [a3, b3], {})
    shape = list(out.shape)
    if b.ndim == 1:
        shape.pop(-1)
    if a.ndim == 1:
        shape.pop(-1 if b.ndim == 1 else -2)
    return reshape(out, shape)


def outer(a, b) -> Variable:
    """The outer product of the flattened ``a`` and ``b``: ``result[i, j] = a[i] * b[j]``."""
    a, b = ravel(a), ravel(b)
    return multiply(reshape(a, (a.size, 1)), reshape(b, (1, b.size)))


def dot(a, b) -> Variable:
    """numpy.dot for 1-D and 2-D operands (the inner product or matrix product)."""
    a, b = asvariable(a), asvariable(b)
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError(f"dot: only 1-D and 2-D operands are supported, use matmul (at {user_location()})")
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    return matmul(a, b)


# -- integer labels --------------------------------------------------------------------
def one_hot(labels, num_classes: int, dtype=DType.f32) -> Variable:
    """``labels[..., None] == arange(num_classes)`` as ``dtype``; an out-of-range
    label gives an all-zero row (never an out-of-bounds access)."""
    labels = asvariable(labels)
    if labels.dtype not in (DType.i32, DType.i64):
        raise DTypeError(f"one_hot: labels must be integers, got {labels.type} (at {user_location()})")
    shape = (*labels.shape, int(num_classes))
    classes = apply("iota", [], {"shape": shape, "dimension": len(shape) - 1, "dtype": labels.dtype})
    expanded = apply("broadcast", [labels], {"shape": shape, "dims": list(range(labels.ndim))})
    return astype(apply("compare", [expanded, classes], {"direction": "eq"}), dtype)


def take_along_axis(x, indices, axis: int) -> Variable:
    """numpy.take_along_axis for integer ``indices`` (negative ones count from the end);
    out-of-range indices give 0.

    Built from a one-hot mask, so it is safe and differentiable in ``x``.
    """
    x, indices = asvariable(x), asvariable(indices)
    (a,) = _axes(x, axis, "take_along_axis")
    if indices.ndim != x.ndim:
        raise ShapeError(f"take_along_axis: indices {indices.type} must have the rank of {x.type} "
                         f"(at {user_location()})")
    n = x.shape[a]
    indices = where(less(indices, 0), add(indices, n), indices)  # numpy: -1 is the last
    xm = moveaxis_last(x, a)           # [..., C]
    im = moveaxis_last(indices, a)     # [..., K]
    mask = one_hot(im, n, DType.bool)  # [..., K, C]
    batch = _broadcast_shapes("take_along_axis", [xm.shape[:-1], im.shape[:-1]])
    mask = broadcast_to(mask, (*batch, im.shape[-1], n))
    values = broadcast_to(expand_dims(xm, -2), (*batch, im.shape[-1], n))
    # A select, not a multiply by a 0/1 float mask: no conversion, and inf/nan
    # elsewhere in the row cannot leak in as inf * 0.
    picked = astype(sum(where(mask, values, zeros_like(values)), axis=-1), x.dtype)
    return moveaxis_from_last(picked, a)


def moveaxis_last(x: Variable, axis: int) -> Variable:
    perm = [i for i in range(x.ndim) if i != axis] + [axis]
    return transpose(x, perm)


def moveaxis_from_last(x: Variable, axis: int) -> Variable:
    perm = list(range(x.ndim - 1))
    perm.insert(axis, x.ndim - 1)
    return transpose(x, perm)


# -- Variable operators and methods -----------------------------------------------------
def _reflect(fn):
    return lambda self, other: fn(other, self)


_OPERATORS = {
    "__add__": add, "__radd__": _reflect(add), "__sub__": subtract, "__rsub__": _reflect(subtract),
    "__mul__": multiply, "__rmul__": _reflect(multiply), "__truediv__": divide,
    "__rtruediv__": _reflect(divide), "__pow__": power, "__rpow__": _reflect(power),
    "__matmul__": matmul, "__rmatmul__": _reflect(matmul), "__neg__": negative,
    "__pos__": lambda self: self, "__abs__": abs, "__lt__": less, "__le__": less_equal,
    "__gt__": greater, "__ge__": greater_equal, "__eq__": equal, "__ne__": not_equal,
    "__getitem__": getitem,
}
_METHODS = {
    "sum": sum, "mean": mean, "max": max, "min": min, "argmax": argmax, "argmin": argmin,
    "reshape": reshape, "transpose": lambda self, *axes: transpose(
        self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None)),
    "exp": exp, "log": log, "log1p": log1p, "expm1": expm1, "sqrt": sqrt, "rsqrt": rsqrt,
    "tanh": tanh, "sin": sin, "cos": cos, "floor": floor, "abs": abs, "sign": sign,
    "astype": astype, "squeeze": squeeze, "flip": flip, "expand_dims": expand_dims, "clip": clip,
    "square": square, "matmul": matmul, "dot": dot,
    "sigmoid": logistic, "relu": lambda self: where(greater(self, 0), self, 0),
    "var": var, "std": std, "any": any, "all": all, "ravel": ravel, "flatten": ravel,
    "swapaxes": swapaxes,
}
for _name, _fn in {**_OPERATORS, **_METHODS}.items():
    setattr(Variable, _name, _fn)
Variable.T = property(lambda self: transpose(self))
Variable.__hash__ = object.__hash__  # defining __eq__ above would otherwise unset it


# -- numpy's own functions applied to Variables ------------------------------------------
# ``np.exp(v)`` and ``np.sum(v)`` stay in the graph (so gradients flow) instead of
# silently evaluating to an ndarray; a numpy function we do not implement is run on
# the evaluated values (and, inside jit/grad, says the value is not known yet).
_UFUNCS = {
    np.add: add, np.subtract: subtract, np.multiply: multiply, np.divide: divide,
    np.true_divide: divide, np.power: power, np.negative: negative, np.absolute: abs,
    np.sign: sign, np.exp: exp, np.log: log, np.log1p: log1p, np.expm1: expm1, np.sqrt: sqrt,
    np.tanh: tanh, np.sin: sin, np.cos: cos, np.floor: floor, np.maximum: maximum,
    np.minimum: minimum, np.less: less, np.less_equal: less_equal, np.greater: greater,
    np.greater_equal: greater_equal, np.equal: equal, np.not_equal: not_equal,
    np.matmul: matmul, np.square: square, np.logical_not: logical_not, np.positive: lambda x: x,
}
_FUNCTIONS = {
    np.sum: sum, np.mean: mean, np.max: max, np.amax: max, np.min: min, np.amin: min,
    np.argmax: argmax, np.argmin: argmin, np.reshape: reshape, np.transpose: transpose,
    np.where: where, np.dot: dot, np.concatenate: concatenate, np.stack: stack,
    np.expand_dims: expand_dims, np.squeeze: squeeze, np.broadcast_to: broadcast_to,
    np.clip: clip, np.zeros_like: zeros_like, np.ones_like: ones_like,
    np.take_along_axis: take_along_axis, np.matmul: matmul, np.flip: flip,
    np.var: var, np.std: std, np.any: any, np.all: all, np.ravel: ravel, np.swapaxes: swapaxes,
    np.outer: outer,
}


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    fn = _UFUNCS.get(ufunc)
    if fn is None or method != "__call__" or kwargs:
        raise TypeError(
            f"numpy.{ufunc.__name__}{'' if method == '__call__' else '.' + method} is not supported on "
            f"Variables{' with ' + ', '.join(kwargs) if kwargs else ''} (at {user_location()}); "
            "use the compiler's function of the same name, or np.asarray(v) for a plain array"
        )
    return fn(*inputs)


def _array_function(self, func, types, args, kwargs):
    fn = _FUNCTIONS.get(func)
    if fn is not None:
        try:
            return fn(*args, **kwargs)
        except TypeError as error:
            if "unexpected keyword" not in str(error):
                raise
    # Not ours: numpy's own implementation on the values.
    plain_args = [_to_numpy(a) for a in args]
    plain_kwargs = {k: _to_numpy(v) for k, v in kwargs.items()}
    return func._implementation(*plain_args, **plain_kwargs) if hasattr(func, "_implementation") \
        else func(*plain_args, **plain_kwargs)


def _to_numpy(x):
    if isinstance(x, Variable):
        return np.asarray(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_to_numpy(i) for i in x)
    return x


Variable.__array_ufunc__ = _array_ufunc
Variable.__array_function__ = _array_function
