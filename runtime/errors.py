"""Errors raised by the runtime."""

__all__ = ["ArgumentError", "JitError"]


class ArgumentError(TypeError):
    """An argument does not fit the executable's signature (count, dtype or shape).

    The message names the argument and says what was expected and what was
    given, e.g. ``argument 0 of 'f': expected f32[4,3], got f64[4,3]``.
    """


class JitError(RuntimeError):
    """LLVM rejected a program: invalid LLVM IR, a failed link (unresolved symbol)..."""
