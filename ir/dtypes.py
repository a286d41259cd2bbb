"""Element types and tensor types of the IR.

A ``TensorType`` is a dtype plus a static shape; it prints as ``f32[4,3]`` and a
scalar as ``f32[]``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ir.errors import IRError

__all__ = ["DType", "TensorType", "dtype_of", "parse_type"]


class DType(enum.Enum):
    """The element types every layer supports. Value is the IR spelling."""

    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(_TO_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i32, DType.i64)

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"DType.{self.value}"


_TO_NUMPY = {
    DType.f32: np.float32,
    DType.f64: np.float64,
    DType.i32: np.int32,
    DType.i64: np.int64,
    DType.bool: np.bool_,
}
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items()}


def dtype_of(x) -> DType:
    """The IR dtype of a numpy dtype, numpy array, DType or IR spelling ("f32")."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str) and x in DType.__members__:
        return DType[x]
    supported = ", ".join(d.value for d in DType)
    try:
        if x is None:  # np.dtype(None) is float64; a missing dtype must not pass as f64
            raise TypeError
        # A scalar type (np.float32) has a `dtype` descriptor, not a dtype: use the type itself.
        dt = np.dtype(x if isinstance(x, type) else getattr(x, "dtype", x))
    except TypeError:  # numpy does not know the name ("f16x", 3): still our error, not numpy's
        raise IRError(f"unknown dtype {x!r}; supported dtypes are {supported}") from None
    try:
        return _FROM_NUMPY[dt]
    except KeyError:
        raise IRError(f"unsupported dtype {dt}; supported dtypes are {supported}") from None


@dataclass(frozen=True)
class TensorType:
    """A statically shaped tensor type, e.g. ``TensorType(DType.f32, (4, 3))``."""

    dtype: DType
    shape: tuple[int, ...]

    def __post_init__(self):
        if isinstance(self.shape, str) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in self.shape):
            raise IRError(f"shape {self.shape!r} must be a sequence of integers")
        shape = tuple(int(d) for d in self.shape)
        if any(d < 0 for d in shape):
            raise IRError(f"negative dimension in shape {list(shape)}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", dtype_of(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype) -> "TensorType":
        return TensorType(dtype_of(dtype), self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"


def parse_type(text: str) -> TensorType:
    """Parse ``f32[4,3]`` (or ``f32[]``) into a TensorType."""
    text = text.strip()
    head, sep, rest = text.partition("[")
    if not sep or not rest.endswith("]") or head not in DType.__members__:
        raise IRError(f"malformed tensor type {text!r}; expected e.g. f32[4,3] or i64[]")
    body = rest[:-1].strip()
    try:
        shape = tuple(int(d) for d in body.split(",")) if body else ()
    except ValueError:
        raise IRError(f"malformed shape in tensor type {text!r}") from None
    return TensorType(DType[head], shape)
