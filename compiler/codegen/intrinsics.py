"""Declarations of LLVM intrinsics and libm functions, created once per module."""

from __future__ import annotations

import llvmlite.ir as ll

from compiler.codegen.llvm_types import F32, F64, I1, I32, PTR, VOID, vector_constant

__all__ = ["declare", "type_suffix", "intrinsic", "call_intrinsic", "call_libm", "masked_load",
           "masked_store", "splat"]


def declare(module: ll.Module, name: str, ret: ll.Type, args: list[ll.Type]) -> ll.Function:
    """``declare <ret> @<name>(<args>)``, once per module."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    # Declared by hand: llvmlite's declare_intrinsic gets the arity of most
    # binary intrinsics wrong (notes/llvmlite.md §10).
    return ll.Function(module, ll.FunctionType(ret, args), name)


def type_suffix(t: ll.Type) -> str:
    """An intrinsic's overload suffix: ``f32``, ``i64``, ``v16f32``."""
    if isinstance(t, ll.VectorType):
        return f"v{t.count}{type_suffix(t.element)}"
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    return f"i{t.width}"


def intrinsic(module: ll.Module, base: str, t: ll.Type, arity: int, *, extra: tuple = ()) -> ll.Function:
    """``declare <t> @<base>.<t>(<t> x arity, extra...)``, e.g. ``llvm.maximum.f32``."""
    return declare(module, f"{base}.{type_suffix(t)}", t, [t] * arity + list(extra))


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
        fn = declare(module, symbol, t, [t] * len(args))
        fn.attributes.add("nounwind")
        fn.attributes.add("readnone")
    return b.call(fn, list(args))


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
    fn = declare(b.module, f"llvm.masked.load.{type_suffix(vec)}.p0", vec,
                  [PTR, I32, mask.type, vec])
    return b.call(fn, [pointer, ll.Constant(I32, align), mask, ll.Constant(vec, None)])


def masked_store(b: ll.IRBuilder, value: ll.Value, pointer, mask, align: int) -> None:
    """Store the lanes of ``value`` that ``mask`` selects (as for ``masked_load``)."""
    vec = value.type
    mask = _lane_mask(vec, mask)
    fn = declare(b.module, f"llvm.masked.store.{type_suffix(vec)}.p0", VOID,
                  [vec, PTR, I32, mask.type])
    b.call(fn, [value, pointer, ll.Constant(I32, align), mask])


def splat(b: ll.IRBuilder, scalar: ll.Value, vec: ll.VectorType) -> ll.Value:
    """``scalar`` in every lane of a ``vec``."""
    one = b.insert_element(ll.Constant(vec, None), scalar, ll.Constant(I32, 0))
    return b.shuffle_vector(one, ll.Constant(vec, None), vector_constant(I32, (0,) * vec.count))
