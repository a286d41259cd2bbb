"""``jit``: trace a function once per input signature, compile it, run natively.

>>> import numpy as np
>>> from compiler import jit
>>> @jit
... def f(x, y):
...     return (x * y).sum()
>>> float(f(np.ones(3, np.float32), np.arange(3, dtype=np.float32)).item())
3.0
>>> print(f.lower(np.ones(3, np.float32), np.ones(3, np.float32)).as_text(), end="")  # doctest: +ELLIPSIS
func @f(%0: f32[3], %1: f32[3]) -> (f32[]) {
  %2 = mul %0, %1 : f32[3]  # ...
  %3 = reduce_sum %2 {axes=[0]} : f32[]  # ...
  return %3
}

NOTE: [Dispatch]
A call is matched to a compiled ``_Program`` in one of two ways. The general
path flattens the arguments (pytrees), computes each leaf's type and looks the
full ``Signature`` up (~10 us per leaf). The fast path handles positional
numpy arrays and Tensors, alone or in tuples/lists/dicts: its key is a flat
tuple of each leaf's ``(shape, dtype)``, taken straight from the array, and
of the containers' types, lengths and keys, which together determine the
Signature; so a hit goes directly to the Executable (which still checks
contiguity and alignment, and converts what it must). A key the fast path
has not seen falls through to the general path, which records the key after a
successful call. Positional static arguments join the key by value; anything
else (keyword arguments, static argument names, Python scalars, Variables)
always takes the general path. Both paths raise the same
errors, because errors only ever come from the general path or the Executable.

NOTE: [Donation]
``jit(step, donate_argnums=(0, 1))`` donates every array leaf of positional
arguments 0 and 1: each is paired with the first unpaired result of the same
type, and the compiled program writes that result into the argument's buffer
(runtime/executable.py, [Donated parameters]), so a training step updates its
parameters without allocating or copying them. A donated leaf that finds no
result of its type is an error when the function is traced, and a donated
argument that is not a writeable, C-contiguous numpy array or Tensor of the
exact type is an error at the call: donation never degrades into a copy.
After the call, a donated Tensor is deleted (any use raises
``DonatedBufferError``, as in JAX) and the result Tensor owns its buffer; a
donated numpy array holds the result's values and becomes read-only (its
memory now belongs to the result Tensor; reading it shows the new values).
Called with Variables (inside another trace), a jitted function is inlined and
donation does not apply.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Sequence

import numpy as np

from compiler.frontend.evaluate import inline
from compiler.frontend.numpy_api import asvariable
from compiler.frontend.tensor import Tensor, as_array
from compiler.frontend.tracing import (Signature, Traced, leaf_array, leaf_type, split_args, trace,
                                       weak_leaves)
from compiler.frontend.variable import Variable
from compiler.pipeline import compile_cached, optimize
from compiler.pytree import TreeDef, unflatten
from ir import Function, print_function
from runtime.errors import ArgumentError

__all__ = ["jit", "Jitted", "Lowered", "DonationError"]

_ndarray, _Tensor = np.ndarray, Tensor
_new_tensor = object.__new__


class DonationError(ValueError):
    """A ``donate_argnums`` request that cannot be honoured (says why)."""


def jit(fn: Callable | None = None, *, static_argnums: Sequence[int] | int = (),
        static_argnames: Sequence[str] | str = (), donate_argnums: Sequence[int] | int = (),
        dump_dir: str | None = None):
    """Compile ``fn`` for each distinct input signature (shapes, dtypes, structure
    of nested tuples/lists/dicts, and the values of static arguments).

    Returns Tensors (in the structure ``fn`` returned). Called with Variables, the
    compiled function joins their graph instead (e.g. inside ``functional.grad``).
    ``donate_argnums`` lets results reuse the buffers of those positional
    arguments (see [Donation] above): a training step updates its parameters in
    place, e.g. ``step = jit(step, donate_argnums=(0, 1))`` for
    ``params, opt_state, loss = step(params, opt_state, x, y)``.
    ``dump_dir`` writes what each compilation produced into that folder (the IR
    after every pass, LLVM IR, assembly, memory plan, summary: compiler/dump.py).
    """
    if fn is None:
        return functools.partial(jit, static_argnums=static_argnums,
                                 static_argnames=static_argnames, donate_argnums=donate_argnums,
                                 dump_dir=dump_dir)
    return Jitted(fn, static_argnums, static_argnames, donate_argnums, dump_dir=dump_dir)


def _as_tuple(value, kind) -> tuple:
    return (value,) if isinstance(value, kind) else tuple(value)


class Jitted:
    """A jit-compiled function; ``.lower(*args)`` shows what it compiles to."""

    def __init__(self, fn: Callable, static_argnums=(), static_argnames=(), donate_argnums=(),
                 dump_dir: str | None = None):
        self.fn = fn
        self.dump_dir = dump_dir
        self.static_argnums = _as_tuple(static_argnums, int)
        self.static_argnames = _as_tuple(static_argnames, str)
        self.donate_argnums = tuple(sorted(set(_as_tuple(donate_argnums, int))))
        if any(i < 0 for i in self.donate_argnums):
            raise DonationError(f"donate_argnums must be non-negative, got {self.donate_argnums}")
        both = set(self.donate_argnums) & set(self.static_argnums)
        if both:
            raise DonationError(f"argument(s) {sorted(both)} cannot be both static and donated")
        self._traces: dict[Signature, Traced] = {}
        self._programs: dict[Signature, _Program] = {}
        self._fast: dict[tuple, _Program] = {}  # see [Dispatch]
        # Positional static arguments are part of the fast key; static names (and
        # negative positions) keep a function on the general path.
        self._fast_ok = not self.static_argnames and all(i >= 0 for i in self.static_argnums)
        self._static = frozenset(self.static_argnums)
        self._flat_ok = self._fast_ok and not self._static
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        if self._flat_ok and not kwargs:
            key = []
            arrays = []
            for arg in args:
                cls = type(arg)
                if cls is _Tensor:
                    arg = arg._array  # a donated Tensor's stand-in raises on .shape
                elif cls is not _ndarray:
                    break  # containers and everything else: see below
                key.append(arg.shape)
                key.append(arg.dtype)
                arrays.append(arg)
            else:
                program = self._fast.get(tuple(key))
                if program is not None:
                    return program.run(args, arrays)
                return self._call(args, kwargs)
        if self._fast_ok and not kwargs:
            found = _tree_key(args, self._static)  # containers of arrays, static arguments
            if found is not None:
                try:
                    program = self._fast.get(found[0])
                except TypeError:  # an unhashable static argument: the general path says so
                    program = None
                if program is not None:
                    return program.run(found[1], found[2])
        return self._call(args, kwargs)

    def _call(self, args, kwargs):
        """The general path: pytrees, static arguments, Variables, Python scalars."""
        signature, leaves = self._signature(args, kwargs)
        traced = self._traced(signature)
        if not traced.reusable or any(isinstance(x, Variable) for x in leaves):
            # Inside another trace or lazy graph: join it (donation does not apply).
            inputs = [asvariable(x) for x in leaves] + list(traced.captures)
            return unflatten(traced.out_tree, inline(traced.fn, inputs))
        program = self._programs.get(signature)
        if program is None:
            program = self._programs[signature] = _Program(
                traced, self._donated_leaves(signature), self._name, self.dump_dir,
                _leaf_names(signature))
        # The fast-path key is taken now: running may delete donated Tensors.
        found = _tree_key(args, self._static) if self._fast_ok and not kwargs else None
        result = program.run(leaves, program.arrays_of(leaves))
        if found is not None:  # the call succeeded: later ones may take the fast path
            self._fast[found[0]] = program
        return result

    @property
    def _name(self) -> str:
        return getattr(self.fn, "__name__", "function")

    def _signature(self, args, kwargs) -> tuple[Signature, list]:
        leaves, tree, static = split_args(self._name, args, kwargs, self.static_argnums,
                                          self.static_argnames)
        return Signature(tree, tuple(leaf_type(x) for x in leaves), static,
                         weak=weak_leaves(leaves)), leaves

    def _traced(self, signature: Signature) -> Traced:
        traced = self._traces.get(signature)
        if traced is None:
            traced = trace(self.fn, signature, "jit")
            if traced.reusable:
                self._traces[signature] = traced
        return traced

    def _donated_leaves(self, signature: Signature) -> dict[int, str]:
        """Flat leaf index -> a readable name, for every leaf of a donated argument."""
        if not self.donate_argnums:
            return {}
        positional = signature.in_tree.children[0]  # (dynamic args, dynamic kwargs)
        static = {i for i, _ in signature.static if isinstance(i, int)}
        dynamic_index = [i for i in range(len(positional.children) + len(static))
                         if i not in static]
        missing = [i for i in self.donate_argnums if i not in dynamic_index]
        if missing:
            raise DonationError(
                f"{self._name}: donate_argnums {list(self.donate_argnums)} names positional "
                f"argument(s) {missing}, but the call passes {len(dynamic_index)} positionally")
        donated, start = {}, 0
        for position, child in zip(dynamic_index, positional.children, strict=True):
            if position in self.donate_argnums:
                for k, path in enumerate(_leaf_paths(child)):
                    donated[start + k] = f"argument {position}{path}"
            start += child.num_leaves
        return donated

    def lower(self, *args, **kwargs) -> "Lowered":
        """The traced IR for these arguments; ``.as_text()`` prints it."""
        signature, _ = self._signature(args, kwargs)
        return Lowered(self._traced(signature).fn)

    @property
    def cache_size(self) -> int:
        """How many signatures have been traced."""
        return len(self._traces)


class _Program:
    """A traced signature with its executable, donation pairs and result structure."""

    __slots__ = ("traced", "exe", "donated", "donated_leaves", "out_tree", "single", "flat",
                 "leaf_names")

    def __init__(self, traced: Traced, donated_leaves: dict[int, str], name: str,
                 dump_dir: str | None = None, leaf_names: Sequence[str] = ()):
        self.traced = traced
        self.leaf_names = tuple(leaf_names)
        self.donated_leaves = donated_leaves
        pairs = _pair_donations(traced.fn, donated_leaves, name)
        self.donated = tuple(sorted((i, j) for j, i in pairs.items()))  # (leaf i, result j)
        self.exe = compile_cached(traced.fn, donated=pairs, dump_dir=dump_dir)
        self.out_tree = traced.out_tree
        self.single = traced.out_tree.kind == "leaf"
        self.flat = traced.out_tree.kind == "tuple" and all(
            c.kind == "leaf" for c in traced.out_tree.children)

    def arrays_of(self, leaves: list) -> list[np.ndarray]:
        """The arrays a call passes (donated leaves exactly as given: never converted)."""
        arrays = []
        for i, leaf in enumerate(leaves):
            if i in self.donated_leaves:
                arrays.append(_donatable_array(leaf, self.donated_leaves[i]))
            else:
                arrays.append(leaf_array(leaf))
        return arrays

    def run(self, args, arrays: list):
        """Call the executable on ``arrays`` (``args``: the call's leaves, to consume
        the donated ones) and wrap the results as ``fn`` returned them."""
        traced = self.traced
        if traced.captures:
            arrays = arrays + traced.capture_arrays()
        try:
            outputs = self.exe(*arrays)
        except ArgumentError as error:  # it counts flat leaves: name them as the call has them
            raise ArgumentError(_name_leaves(str(error), self.leaf_names)) from None
        if self.donated:
            outputs = self._consume(args, arrays, outputs)
        if self.single:
            tensor = _new_tensor(_Tensor)
            tensor._array = outputs[0]
            return tensor
        tensors = []
        for output in outputs:
            tensor = _new_tensor(_Tensor)
            tensor._array = output
            tensors.append(tensor)
        return tuple(tensors) if self.flat else unflatten(self.out_tree, tensors)

    def _consume(self, leaves, arrays, outputs):
        """After a successful call: delete donated Tensors, freeze donated arrays."""
        outputs = list(outputs)
        for i, j in self.donated:
            leaf = leaves[i]
            if type(leaf) is _Tensor:
                leaf._donate(
                    f"this Tensor was donated to a jitted function ({self.donated_leaves[i]}) "
                    "and its buffer now holds a result; use the returned value instead")
            else:  # a numpy array: the result keeps a writeable view of its memory
                outputs[j] = arrays[i].view()
                arrays[i].flags.writeable = False
        return outputs


_STATIC = object()  # marks a static argument's value in a fast-path key


def _tree_key(args, static: frozenset = frozenset()) -> tuple[tuple, list, list] | None:
    """``(key, leaves, arrays)`` of a call whose arguments are arrays, Tensors and
    tuples/lists/dicts/None of them, plus static arguments at the positions in
    ``static`` (see [Dispatch]); None for anything else.

    The key encodes the structure and each leaf's (shape, dtype) so that it can
    be read back unambiguously: a leaf starts with its shape (a tuple), a
    container with its type (and a dict then with its sorted keys), a static
    argument with a marker and then its value.
    """
    key, leaves, arrays = [], [], []
    if static:
        key.append(len(args))  # static positions depend on the argument count
        dynamic = []
        for i, arg in enumerate(args):
            if i in static:
                key.append(_STATIC)
                key.append(arg)
            else:
                dynamic.append(arg)
        args = dynamic
    stack = list(reversed(args))
    while stack:
        node = stack.pop()
        cls = type(node)
        if cls is _ndarray or cls is _Tensor:
            array = node._array if cls is _Tensor else node
            key.append(array.shape)
            key.append(array.dtype)
            leaves.append(node)
            arrays.append(array)
        elif cls is dict:
            try:
                names = tuple(sorted(node))
            except TypeError:
                return None
            key.append(dict)
            key.append(names)
            stack.extend(node[name] for name in reversed(names))
        elif cls is tuple or cls is list:
            key.append(cls)
            key.append(len(node))
            stack.extend(reversed(node))
        elif node is None:
            key.append(None)
        else:
            return None
    return tuple(key), leaves, arrays


def _donatable_array(leaf, name: str) -> np.ndarray:
    """The buffer a donated leaf gives, or a DonationError saying why there is none."""
    if type(leaf) is _Tensor:
        as_array(leaf)  # raises if the Tensor was donated before
        return leaf._array
    if type(leaf) is _ndarray:
        return leaf
    raise DonationError(
        f"{name} is donated, so it must be a numpy array or Tensor whose buffer a result "
        f"can reuse; got {type(leaf).__name__}. Pass an array, or do not donate it"
    )


def _pair_donations(fn: Function, donated_leaves: dict[int, str], name: str) -> dict[int, int]:
    """{result j: parameter i}: each donated leaf takes the first free result of its type."""
    pairs: dict[int, int] = {}
    results = fn.output_types
    for i in sorted(donated_leaves):
        wanted = fn.params[i].type
        j = next((j for j, t in enumerate(results) if t == wanted and j not in pairs), None)
        if j is None:
            listed = ", ".join(str(t) for t in results) or "none"
            raise DonationError(
                f"{name}: cannot donate {donated_leaves[i]} ({wanted}): no result of type "
                f"{wanted} is left to reuse its buffer (results: {listed}); donate only "
                "arguments the function returns updated, such as parameters and optimiser state"
            )
        pairs[j] = i
    return pairs


def _leaf_names(signature: Signature) -> list[str]:
    """``["argument 0['w']", "argument 1", "argument 'lr'", ...]``: every leaf of a call."""
    positional, keywords = signature.in_tree.children
    static = {i for i, _ in signature.static if isinstance(i, int)}
    positions = [i for i in range(len(positional.children) + len(static)) if i not in static]
    names = [f"argument {position}{path}"
             for position, child in zip(positions, positional.children, strict=True)
             for path in _leaf_paths(child)]
    names += [f"argument {key!r}{path}"
              for key, child in zip(keywords.keys, keywords.children, strict=True)
              for path in _leaf_paths(child)]
    return names


def _name_leaves(message: str, names: Sequence[str]) -> str:
    """The executable's message with its flat argument numbers replaced by leaf names."""
    def name(match: re.Match) -> str:
        k = int(match.group(1))
        return names[k] if k < len(names) else match.group(0)

    return re.sub(r"\bargument (\d+)\b", name, message)


def _leaf_paths(tree: TreeDef, prefix: str = "") -> list[str]:
    """``["['w']", "['b'][0]", ...]``: where each leaf of ``tree`` sits."""
    if tree.kind == "leaf":
        return [prefix]
    if tree.kind == "dict":
        labels = [f"[{k!r}]" for k in tree.keys]
    else:
        labels = [f"[{k}]" for k in range(len(tree.children))]
    return [path for label, child in zip(labels, tree.children, strict=True)
            for path in _leaf_paths(child, prefix + label)]


class Lowered:
    """A traced function, ready to show or compile.

    ``as_text("ir")`` is the traced IR, ``"optimized-ir"`` the IR after the
    optimisation passes, ``"llvm"`` / ``"optimized-llvm"`` the LLVM IR before and
    after LLVM's optimiser, ``"asm"`` the host assembly.
    """

    KINDS = ("ir", "optimized-ir", "llvm", "optimized-llvm", "asm")

    def __init__(self, fn: Function):
        self.function = fn

    def compile(self):
        """The native executable (``runtime.Executable``)."""
        return compile_cached(self.function)

    def as_text(self, kind: str = "ir") -> str:
        if kind == "ir":
            return print_function(self.function)
        if kind == "optimized-ir":
            return print_function(optimize(self.function))
        exe = self.compile()
        if kind == "llvm":
            return exe.llvm_ir
        if kind == "optimized-llvm":
            return exe.optimized_llvm_ir
        if kind == "asm":
            return exe.asm
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(self.KINDS)}")
