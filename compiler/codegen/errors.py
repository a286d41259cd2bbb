"""Errors of the LLVM lowering."""

from ir.errors import IRError

__all__ = ["LoweringError"]


class LoweringError(IRError):
    """IR the backend refuses to lower (ill-typed, unknown op, unsupported construct)."""
