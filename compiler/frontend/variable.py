"""``Variable``: a node of a lazily built graph.

NOTE: [Lazy graphs and traces]
Arithmetic on Variables records operations (an op name, input Variables,
attributes and the user's source line) and computes nothing. A value is
computed only when asked for (``.data``, ``.numpy()``, printing,
``.backward()``): the needed subgraph becomes an IR Function, which is compiled
(cached by structure, so a training loop compiles once) and run natively.

There are two kinds of leaves: concrete ones hold a ``Tensor``; abstract ones
(``_trace`` set) stand for the parameters of a function being traced by ``jit``
or ``functional.grad``. An operation node belongs to the innermost trace among
its inputs; asking such a node for its value is a ``ConcretizationError``,
because inside a trace there is no value yet.
"""

from __future__ import annotations

import itertools

import numpy as np

from compiler.frontend.source_info import user_location
from compiler.frontend.tensor import Tensor, owned_array
from ir import DType, TensorType
from ir.builder import with_location
from ir.errors import IRError
from ir.ops import infer_types

__all__ = ["Variable", "Trace", "ConcretizationError", "apply", "is_traced", "no_grad",
           "enable_grad", "is_grad_enabled"]


class ConcretizationError(IRError, TypeError):
    """A traced Variable's value was needed while tracing (no value exists yet)."""


class Trace:
    """One tracing session (jit or functional.grad); nested sessions get higher levels."""

    _levels = itertools.count(1)
    active = 0  # how many traces are recording right now (see [Leaf versions])

    def __init__(self, purpose: str):
        self.level = next(self._levels)
        self.purpose = purpose

    def __enter__(self) -> "Trace":
        Trace.active += 1
        return self

    def __exit__(self, *exc) -> None:
        Trace.active -= 1

    def __repr__(self) -> str:
        return f"Trace({self.purpose}, level={self.level})"


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """False inside ``no_grad()``."""
    return _GradMode.enabled


class no_grad:
    """``with no_grad():`` (or ``@no_grad()``): operations recorded inside carry
    no gradient, as in PyTorch, and concrete leaves may be updated in place
    (``w -= lr * w.grad``). Inside ``jit`` or ``functional.grad`` it acts as
    ``stop_gradient`` on what it computes."""

    _target = False

    def __enter__(self) -> None:
        self._previous = _GradMode.enabled
        _GradMode.enabled = self._target

    def __exit__(self, *exc) -> None:
        _GradMode.enabled = self._previous

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class enable_grad(no_grad):
    """Turn gradient recording back on inside a ``no_grad()`` block."""

    _target = True


class Variable:
    """A tensor-valued node of a lazily compiled computation graph.

    ``Variable(Tensor([3.0], ()))`` or ``Variable(numpy_array)`` makes a leaf;
    arithmetic makes new nodes. ``.data`` is the value (a Tensor), ``.grad`` the
    gradient accumulated by ``backward()``.

    >>> from compiler import Tensor, Variable
    >>> w = Variable(Tensor([3.0], ()))
    >>> loss = w * w + 1.0
    >>> loss.backward()
    >>> float(loss.data.item()), float(w.grad.item())
    (10.0, 6.0)
    """

    __slots__ = ("_type", "_op", "_inputs", "_attrs", "_loc", "_value", "_trace", "_weak",
                 "_version", "_owner", "grad", "requires_grad", "__weakref__")
    __array_priority__ = 200  # numpy defers binary operators to Variable

    def __init__(self, data, requires_grad: bool | None = None):
        value = data if isinstance(data, Tensor) else Tensor(data)
        self._init_node(value.type, None, (), {}, user_location(), value, None)
        # Only floating-point values have gradients (as in PyTorch): an integer
        # or bool leaf never requires grad; a float leaf does unless told not to.
        if requires_grad and not value.dtype.is_float:
            raise IRError(f"requires_grad=True needs a floating-point Variable, got {value.type} "
                          f"(at {user_location()})")
        self.requires_grad = value.dtype.is_float if requires_grad is None else requires_grad

    def _init_node(self, type_, op, inputs, attrs, loc, value, trace):
        self._type: TensorType = type_
        self._op: str | None = op
        self._inputs: tuple[Variable, ...] = inputs
        self._attrs: dict = attrs
        self._loc: str | None = loc
        self._value: Tensor | None = value
        self._trace: Trace | None = trace
        # Weakly typed, like a Python scalar (NEP 50): a jit argument given as a
        # Python number, and what is computed from weak values only.
        self._weak = False
        # See [Leaf versions]: the snapshot that operations record, and for a
        # snapshot, the leaf it belongs to.
        self._version: Variable | None = None
        self._owner: Variable | None = None
        self.grad: Tensor | None = None
        self.requires_grad = False

    @classmethod
    def _node(cls, type_, op, inputs, attrs, loc, value=None, trace=None) -> "Variable":
        v = object.__new__(cls)
        v._init_node(type_, op, inputs, attrs, loc, value, trace)
        return v

    @classmethod
    def _abstract(cls, type_: TensorType, trace: Trace) -> "Variable":
        """A parameter of the function ``trace`` is recording."""
        return cls._node(type_, None, (), {}, None, None, trace)

    # -- what the node is -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._type.shape

    @property
    def dtype(self) -> DType:
        return self._type.dtype

    @property
    def type(self) -> TensorType:
        return self._type

    @property
    def ndim(self) -> int:
        return self._type.rank

    @property
    def size(self) -> int:
        return self._type.size

    @property
    def is_leaf(self) -> bool:
        return self._op is None

    # -- values ----------------------------------------------------------------------
    @property
    def data(self) -> Tensor:
        """The value, computed (compiled and run) on first access."""
        if self._value is None:
            from compiler.frontend.evaluate import evaluate

            evaluate([self])
        return self._value

    @data.setter
    def data(self, value) -> None:
        """Replace a leaf's value in place (shape and dtype must stay the same)."""
        if not self.is_leaf or self._trace is not None:
            raise IRError("only a concrete leaf Variable's .data can be assigned")
        arr = owned_array(value, self.dtype)
        if arr.shape != self.shape:
            raise IRError(
                f"cannot assign data of shape {list(arr.shape)} to a Variable of type {self._type}"
            )
        self._assign(Tensor._wrap(arr))

    def _assign(self, value: Tensor) -> None:
        # Operations recorded so far keep reading the previous snapshot.
        self._value = value
        self._version = None

    def _snapshot(self) -> "Variable":
        """NOTE: [Leaf versions]
        What an operation records when it reads a concrete leaf: an immutable leaf
        holding the current value, whose gradient goes to the user's Variable. So
        assigning ``w.data`` after ``y = w * 2`` was recorded leaves ``y`` as it
        was (as in PyTorch, where ``y`` would already be computed), and backward
        through either version accumulates into ``w.grad``. Traced functions read
        closed-over leaves live instead (they are called again later)."""
        if self._version is None:
            snapshot = Variable._node(self._type, None, (), {}, self._loc, self._value, None)
            snapshot._owner = self
            self._version = snapshot
        return self._version

    def numpy(self) -> np.ndarray:
        return self.data.numpy()

    def item(self):
        return self.data.item()

    def tolist(self):
        return self.data._array.tolist()

    def __array__(self, dtype=None, copy=None):
        return self.data.__array__(dtype, copy)

    def __float__(self) -> float:
        return float(self.data.item())

    def __int__(self) -> int:
        return int(self.data.item())

    def __bool__(self) -> bool:
        if self._trace is not None:
            raise ConcretizationError(
                f"the truth value of a traced Variable {self._type}{self._origin()} is not known "
                f"while tracing (at {user_location()}); use compiler.where(cond, a, b) instead of "
                "if/else"
            )
        return bool(self.data.item())

    def _origin(self) -> str:
        """`` (the result of op at file:line)`` for error messages; empty for a parameter."""
        if self._op is None:
            return " (an argument of the traced function)" if self._trace is not None else ""
        where = f" at {self._loc}" if self._loc else ""
        return f" (the result of {self._op}{where})"

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d Variable")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        if self._trace is not None:
            return f"Variable(traced {self._type})"
        body = np.array2string(self.data._array, separator=", ", threshold=20)
        return f"Variable({body}, dtype={self.dtype})"

    __hash__ = object.__hash__  # == is elementwise, as in numpy and PyTorch

    # -- graph utilities ---------------------------------------------------------------
    def clone(self) -> "Variable":
        """A copy of this node (same value, same history; gradients flow through it)."""
        return self._node(self._type, self._op, self._inputs, self._attrs, self._loc,
                          self._value, self._trace) if self._op else _identity(self)

    def detach(self) -> "Variable":
        """A new leaf with this node's value and no history (no gradient flows back)."""
        if self._trace is not None:  # inside jit/grad: the same value, cut from the gradient
            return apply("stop_gradient", [self], {})
        return Variable(self.data, requires_grad=False)

    def zero_grad(self) -> None:
        self.grad = None

    # -- in-place updates (optimiser steps written by hand) ---------------------------
    def _update_in_place(self, op, other) -> "Variable":
        """``w -= x`` and friends. On a concrete leaf: the leaf keeps its identity
        and gets the new value (its dtype kept, as numpy's in-place operators do);
        allowed for a leaf that requires grad only under ``no_grad()``, as in
        PyTorch. Anything else rebinds the name to a new Variable (``w = w - x``),
        as JAX arrays do."""
        if self._op is not None or self._trace is not None:
            return op(self, other)
        if self.requires_grad and _GradMode.enabled:
            raise IRError(
                f"in-place update of a leaf Variable {self._type} that requires grad "
                f"(at {user_location()}): the update would be recorded for differentiation; "
                "write it inside `with compiler.no_grad():`, or assign `w.data = ...`")
        new = op(self, other)
        if new.shape != self.shape:
            raise IRError(f"in-place update: the result {new.type} does not fit the Variable "
                          f"{self._type} (at {user_location()})")
        self._assign(Tensor._wrap(owned_array(new.data.numpy(), self.dtype)))
        return self

    def __iadd__(self, other):
        return self._update_in_place(type(self).__add__, other)

    def __isub__(self, other):
        return self._update_in_place(type(self).__sub__, other)

    def __imul__(self, other):
        return self._update_in_place(type(self).__mul__, other)

    def __itruediv__(self, other):
        return self._update_in_place(type(self).__truediv__, other)

    def backward(self, gradient=None) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf this depends on.

        ``self`` must be a scalar unless ``gradient`` (the seed cotangent, of
        self's shape) is given. Runs the differentiation pass over the recorded
        graph and compiles the result, like any other computation.
        """
        from compiler.frontend.evaluate import backward

        backward(self, gradient)


def _identity(v: Variable) -> Variable:
    # A leaf's clone is a new node reading it, so gradients reach the original.
    return apply("reshape", [v], {"shape": v.shape})


def is_traced(v) -> bool:
    return isinstance(v, Variable) and v._trace is not None


def apply(op: str, inputs, attrs: dict, loc: str | None = None) -> Variable:
    """Record ``op(inputs) {attrs}`` as a new Variable, type-checked now.

    A type-rule violation raises at the user's line (the error names it).
    """
    if loc is None:
        loc = user_location()
    try:
        attrs, types = infer_types(op, [v._type for v in inputs], attrs)
    except IRError as error:
        raise with_location(error, loc) from None
    trace = None
    for v in inputs:
        if v._trace is not None and (trace is None or v._trace.level > trace.level):
            trace = v._trace
    if trace is None and not Trace.active:  # lazy graph: record the leaves' current versions
        inputs = [v._snapshot() if v._op is None and v._owner is None else v for v in inputs]
    result = Variable._node(types[0], op, tuple(inputs), attrs, loc, None, trace)
    if not _GradMode.enabled and op != "stop_gradient" and any(map(_may_carry_gradient, inputs)):
        return apply("stop_gradient", [result], {}, loc)
    return result


def _may_carry_gradient(v: Variable) -> bool:
    """Whether a gradient could flow back through ``v`` (see ``no_grad``)."""
    if v._op is None and v._trace is None:  # a concrete leaf (or its snapshot)
        return (v._owner if v._owner is not None else v).requires_grad
    return v._op != "stop_gradient"
