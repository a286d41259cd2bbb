"""Declarations of LLVM intrinsics and libm functions, created once per module."""

from __future__ import annotations

import llvmlite.ir as ll

from compiler.codegen.llvm_types import F32, F64, I1, I32, PTR, VOID, vector_constant

__all__ = ["intrinsic", "call_intrinsic", "call_libm", "masked_load", "masked_store"]


def _declare(module: ll.Module, name: str, ret: ll.Type, args: list[ll.Type]) -> ll.Function:
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    # Declared by hand: llvmlite's declare_intrinsic gets the arity of most
    # binary intrinsics wrong (notes/llvmlite.md §10).
    return ll.Function(module, ll.FunctionType(ret, args), name)


def _suffix(t: ll.Type) -> str:
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    return f"i{t.width}"


def intrinsic(module: ll.Module, base: str, t: ll.Type, arity: int, *, extra: tuple = ()) -> ll.Function:
    """``declare <t> @<base>.<t>(<t> x arity, extra...)``, e.g. ``llvm.maximum.f32``."""
    return _declare(module, f"{base}.{_suffix(t)}", t, [t] * arity + list(extra))


def call_intrinsic(b: ll.IRBuilder, base: str, args, *, extra_args=()) -> ll.Value:
    """Call the overload of intrinsic ``base`` for the type of ``args[0]``."""
    t = args[0].type
    fn = intrinsic(b.module, base, t, len(args), extra=tuple(a.type for a in extra_args))
    return b.call(fn, list(args) + list(extra_args))


def call_libm(b: ll.IRBuilder, name: str, args) -> ll.Value:
    """Call libm ``name`` (double) or ``name + 'f'`` (float) on ``args``.

    Declared ``readnone``: errno is never read, and this lets LLVM hoist and
    combine the calls. The JIT resolves the symbol from the process (libm is
    loaded by runtime.initialize_llvm); AOT users link with ``-lm``.
    """
    t = args[0].type
    symbol = name if t == F64 else name + "f"
    module = b.module
    fn = module.globals.get(symbol)
    if fn is None:
        fn = _declare(module, symbol, t, [t] * len(args))
        fn.attributes.add("nounwind")
        fn.attributes.add("readnone")
    return b.call(fn, list(args))


def _vector_suffix(vec: ll.VectorType) -> str:
    return f"v{vec.count}{_suffix(vec.element)}"


def _lane_mask(vec: ll.VectorType, mask):
    """``mask`` as an ``<n x i1>``: given as such, or as the count of leading lanes."""
    if isinstance(mask, int):
        return vector_constant(I1, tuple(int(i < mask) for i in range(vec.count)))
    return mask


def masked_load(b: ll.IRBuilder, vec: ll.VectorType, pointer, mask, align: int) -> ll.Value:
    """Load the lanes of ``vec`` at ``pointer`` that ``mask`` selects (an
    ``<n x i1>`` or the count of leading lanes); the others are zero and
    their memory is not touched."""
    mask = _lane_mask(vec, mask)
    fn = _declare(b.module, f"llvm.masked.load.{_vector_suffix(vec)}.p0", vec,
                  [PTR, I32, mask.type, vec])
    return b.call(fn, [pointer, ll.Constant(I32, align), mask, ll.Constant(vec, None)])


def masked_store(b: ll.IRBuilder, value: ll.Value, pointer, mask, align: int) -> None:
    """Store the lanes of ``value`` that ``mask`` selects (as for ``masked_load``)."""
    vec = value.type
    mask = _lane_mask(vec, mask)
    fn = _declare(b.module, f"llvm.masked.store.{_vector_suffix(vec)}.p0", VOID,
                  [vec, PTR, I32, mask.type])
    b.call(fn, [value, pointer, ll.Constant(I32, align), mask])
