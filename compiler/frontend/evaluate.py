"""From recorded Variables to IR Functions and back; computing values.

``build_function`` turns the subgraph behind some output Variables into an IR
Function over given parameter Variables (plus captured values it also needs);
``inline`` replays a Function on Variables (the way a traced call of a
compiled function, or of a gradient function, joins an outer trace);
``evaluate`` and ``backward`` compile and run what lazy Variables need.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from compiler.frontend.tensor import Tensor, as_array
from compiler.frontend.variable import ConcretizationError, Variable, apply
from compiler.frontend.source_info import user_location
from compiler.program_cache import ProgramCache
from ir import Builder, Function, Value
from ir.errors import DTypeError, IRError, ShapeError

__all__ = ["build_function", "inline", "evaluate", "backward", "run_function"]


def build_function(outputs: Sequence[Variable], params: Sequence[Variable], name: str = "main"
                   ) -> tuple[Function, list[Variable]]:
    """The IR Function computing ``outputs`` from ``params``.

    Returns ``(fn, captures)``: ``fn``'s parameters are ``params`` followed by
    ``captures``, the other values the computation reads (concrete leaves,
    already computed values, and values of enclosing traces).
    """
    captures, to_compute = _plan(outputs, params)
    return _emit(outputs, params, captures, to_compute, name), captures


def _plan(outputs: Sequence[Variable], params: Sequence[Variable]
          ) -> tuple[list[Variable], list[Variable]]:
    """``(captures, to_compute)`` of ``build_function``: the values read from
    outside, and the nodes to compute, inputs before users."""
    param_index = {id(p): i for i, p in enumerate(params)}
    order = _postorder(outputs, stop_at_values=not params)
    depends: dict[int, bool] = {}
    for v in order:
        # .get: with stop_at_values, a computed node's inputs are not in ``order``.
        depends[id(v)] = id(v) in param_index or any(depends.get(id(i), False) for i in v._inputs)
    captures: list[Variable] = []
    to_compute = []
    for v in order:
        if id(v) in param_index:
            continue
        if _is_capture(v, depends[id(v)], bool(params)):
            captures.append(v)
        else:
            to_compute.append(v)
    return captures, to_compute


def _emit(outputs, params, captures, to_compute, name: str) -> Function:
    b = Builder(name)
    env: dict[int, Value] = {}
    for v in (*params, *captures):
        env[id(v)] = b.param(v._type)
    for v in to_compute:
        with b.at(v._loc):
            env[id(v)] = b.emit(v._op, [env[id(i)] for i in v._inputs], v._attrs)[0]
    return b.finish([env[id(v)] for v in outputs])


def _graph_key(kind: str, outputs, params, captures, to_compute) -> tuple:
    """What determines the program ``build_function`` would build (and the
    compiler would make of it), without building it: types of the parameters
    and captures, each node's op, attributes and input slots, and the knobs
    that change generated code. Source locations are left out, as in
    ``pipeline.compile_cached``."""
    from compiler import flags

    slot: dict[int, int] = {}
    for v in (*params, *captures):
        slot[id(v)] = len(slot)
    nodes = []
    for v in to_compute:
        nodes.append((v._op, repr(v._attrs), tuple(slot[id(i)] for i in v._inputs)))
        slot[id(v)] = len(slot)
    knobs = tuple((k, flags.get(k)) for k in sorted(flags.FLAGS) if k not in flags.NOT_IN_CACHE_KEY)
    return (kind, tuple(v._type for v in params), tuple(v._type for v in captures),
            tuple(nodes), tuple(slot[id(v)] for v in outputs), knobs)


# Compiled programs of evaluate() and backward() by graph key: a training loop
# records the same graph every step, and finding its program must cost
# microseconds, not an IR build, a differentiation pass and a print.
_PROGRAMS = ProgramCache()


def _is_capture(v: Variable, depends_on_params: bool, has_params: bool) -> bool:
    if depends_on_params:
        return False
    if v._op is None:  # a leaf that is not a parameter
        return True
    if v._trace is not None:  # computed by an enclosing trace: its value comes from there
        return True
    return v._value is not None  # already computed: reuse the value


def _postorder(outputs: Sequence[Variable], stop_at_values: bool) -> list[Variable]:
    """Every node the outputs read, inputs before users (iterative: graphs can be deep)."""
    seen: set[int] = set()
    order: list[Variable] = []
    stack: list[tuple[Variable, bool]] = [(v, False) for v in reversed(outputs)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            order.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.append((v, True))
        if stop_at_values and v._value is not None:
            continue
        for i in reversed(v._inputs):
            if id(i) not in seen:
                stack.append((i, False))
    return order


def inline(fn: Function, args: Sequence[Variable]) -> list[Variable]:
    """Replay ``fn``'s equations on Variables; returns its results as Variables."""
    if len(args) != len(fn.params):
        raise IRError(f"@{fn.name} takes {len(fn.params)} argument(s), got {len(args)}")
    env: dict[Value, Variable] = dict(zip(fn.params, args, strict=True))
    for eqn in fn.eqns:
        (env[eqn.outputs[0]],) = [apply(eqn.op, [env[v] for v in eqn.inputs], eqn.attrs, loc=eqn.loc or "")]
    return [env[v] for v in fn.outputs]


def run_function(fn: Function, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Compile ``fn`` (cached by structure) and run it natively."""
    from compiler.pipeline import compile_cached

    return compile_cached(fn)(*arrays)


def _values_of(captures: Sequence[Variable]) -> list[np.ndarray]:
    return [c._value._array for c in captures]


def evaluate(variables: Sequence[Variable]) -> None:
    """Compute and store the values of lazy Variables (one compiled program)."""
    pending = [v for v in variables if v._value is None]
    if not pending:
        return
    for v in pending:
        if v._trace is not None:
            raise ConcretizationError(
                f"the value of a traced Variable {v._type}{v._origin()} is not known while tracing "
                f"(at {user_location()}); inside jit/grad, values exist only when the compiled "
                "function runs: return the Variable instead of reading it"
            )
    from compiler.pipeline import compile_cached

    captures, to_compute = _plan(pending, [])
    key = _graph_key("evaluate", pending, [], captures, to_compute)
    program = _PROGRAMS.get(key)
    if program is None:
        program = _PROGRAMS[key] = compile_cached(
            _emit(pending, [], captures, to_compute, "evaluate"))
    results = program(*_values_of(captures))
    for v, r in zip(pending, results, strict=True):
        v._value = Tensor._wrap(r)


def _owner_of(leaf: Variable) -> Variable:
    return leaf if leaf._owner is None else leaf._owner


def backward(loss: Variable, gradient=None) -> None:
    """``loss.backward(gradient)``: accumulate gradients into the leaves' ``.grad``."""
    from compiler.autodiff import vjp_function
    from compiler.pipeline import compile_cached

    if loss._trace is not None:
        raise IRError(
            f"backward() cannot run inside jit or functional.grad (at {user_location()}); "
            "use functional.grad or value_and_grad on the traced function instead"
        )
    if gradient is None:
        if loss.shape != ():
            raise ShapeError(
                f"backward() on a non-scalar Variable of type {loss._type} needs a seed gradient "
                f"of the same shape (at {user_location()}), e.g. loss.backward(ones_like(loss)), "
                "or reduce it to a scalar first (loss.sum())"
            )
        seed = np.ones((), dtype=loss.dtype.numpy)
    else:
        seed = as_array(gradient, loss.dtype)
        if seed.shape != loss.shape:
            raise ShapeError(
                f"backward(): seed gradient has shape {list(seed.shape)}, the Variable has "
                f"type {loss._type} (at {user_location()})"
            )
    if not loss.dtype.is_float:
        raise DTypeError(f"backward() needs a floating-point result, got {loss._type} "
                         f"(at {user_location()})")
    leaves = [v for v in _postorder([loss], stop_at_values=False)
              if v._op is None and v._trace is None and _owner_of(v).requires_grad
              and v.dtype.is_float]
    captures, to_compute = _plan([loss], leaves)
    key = _graph_key("backward", [loss], leaves, captures, to_compute)
    program = _PROGRAMS.get(key)
    if program is None:
        fn = _emit([loss], leaves, captures, to_compute, "backward")
        program = _PROGRAMS[key] = compile_cached(vjp_function(fn, wrt=list(range(len(leaves)))))
    results = program(*[v._value._array for v in leaves], *_values_of(captures), seed)
    if loss._value is None:
        loss._value = Tensor._wrap(results[0])
    for leaf, g in zip(leaves, results[1:], strict=True):
        target = _owner_of(leaf)  # a recorded snapshot's gradient belongs to its Variable
        target.grad = Tensor._wrap(g if target.grad is None else target.grad._array + g)
