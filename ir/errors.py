"""The project's error hierarchy. Every layer raises these, never bare asserts."""

__all__ = ["IRError", "ShapeError", "DTypeError", "VerifyError", "ParseError", "InterpError"]


class IRError(Exception):
    """Base class of every error about IR: malformed, ill-typed or unsupported."""


class ShapeError(IRError, TypeError):
    """Operand shapes do not fit the op (a TypeError, as in JAX)."""


class DTypeError(IRError, TypeError):
    """Operand dtypes do not fit the op."""


class VerifyError(IRError):
    """The verifier found IR that breaks an invariant (SSA, types, attributes)."""


class ParseError(IRError, ValueError):
    """IR text that does not follow the grammar; the message names the line."""


class InterpError(IRError):
    """The reference interpreter failed while executing an equation."""
