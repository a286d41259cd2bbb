"""``Tensor``: concrete data, a C-contiguous numpy array underneath."""

from __future__ import annotations

import numpy as np

from ir import DType, TensorType, dtype_of
from ir.errors import DTypeError, ShapeError

__all__ = ["Tensor", "as_array", "owned_array", "DonatedBufferError"]


class DonatedBufferError(RuntimeError):
    """A Tensor was used after its buffer was donated to a jitted function."""


class _Donated:
    """Stands in for the array of a Tensor donated to a jitted function (its buffer
    now holds one of the function's results): every use raises, as in JAX."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message

    def _fail(self, *args, **kwargs):
        raise DonatedBufferError(self.message)

    def __getattr__(self, name):
        if name == "message":
            raise AttributeError(name)
        self._fail()

    # numpy looks these up on the type, not through __getattr__.
    __array__ = __len__ = __iter__ = __getitem__ = __float__ = __int__ = _fail


def owned_array(value, dtype=None) -> np.ndarray:
    """``as_array``, copied if it would share memory with the caller's numpy array
    (a Tensor's value must not change when the caller later writes to its array)."""
    arr = as_array(value, dtype)
    if isinstance(value, np.ndarray) and np.may_share_memory(arr, value):
        arr = arr.copy()
    return arr


def as_array(value, dtype=None) -> np.ndarray:
    """A C-contiguous numpy array of a supported dtype from array-like ``value``.

    Python floats become f32 and Python ints i32 unless ``dtype`` says otherwise
    (the defaults of JAX and PyTorch); numpy arrays keep their dtype.
    """
    if isinstance(value, Tensor):
        arr = value._array
        if type(arr) is _Donated:
            arr._fail()
    elif isinstance(value, np.ndarray) or np.isscalar(value) and isinstance(value, np.generic):
        arr = np.asarray(value)
    else:
        arr = np.asarray(value)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif dtype is None and arr.dtype.kind == "i":
            arr = arr.astype(np.int32)
    if dtype is not None:
        arr = arr.astype(dtype_of(dtype).numpy, copy=False)
    try:
        dtype_of(arr.dtype)
    except Exception:
        raise DTypeError(
            f"unsupported dtype {arr.dtype}; use one of f32, f64, i32, i64, bool "
            f"(e.g. array.astype(numpy.float32))"
        ) from None
    # np.ascontiguousarray would turn a 0-d array into a 1-d one.
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


class Tensor:
    """Concrete n-dimensional data.

    ``Tensor(data, shape)`` takes a flat sequence and a shape; ``Tensor(array)``
    takes a numpy array (or nested lists) alone.

    >>> t = Tensor([1.0, 2.0, 3.0, 4.0], (2, 2))
    >>> t.shape, t.dtype
    ((2, 2), DType.f32)
    >>> float(t.data()[3])
    4.0
    """

    __slots__ = ("_array",)
    __array_priority__ = 100

    def __init__(self, data, shape=None, dtype=None):
        arr = owned_array(data, dtype)
        if shape is not None:
            shape = tuple(int(d) for d in shape)
            if arr.size != int(np.prod(shape, dtype=np.int64)):
                raise ShapeError(
                    f"Tensor: {arr.size} value(s) given for shape {list(shape)} "
                    f"({int(np.prod(shape, dtype=np.int64))} elements)"
                )
            arr = arr.reshape(shape)
        self._array = arr

    @classmethod
    def _wrap(cls, arr: np.ndarray) -> "Tensor":
        # Internal: adopt an array the runtime just produced (no copy, no checks).
        t = object.__new__(cls)
        t._array = arr
        return t

    def _donate(self, message: str) -> None:
        # Internal: jit(donate_argnums=...) gave this tensor's buffer to a result.
        self._array = _Donated(message)

    def is_deleted(self) -> bool:
        """True once the tensor was donated to a jitted function (then any use raises)."""
        return type(self._array) is _Donated

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array.shape

    @property
    def dtype(self) -> DType:
        return dtype_of(self._array.dtype)

    @property
    def type(self) -> TensorType:
        return TensorType(self.dtype, self._array.shape)

    @property
    def ndim(self) -> int:
        return self._array.ndim

    @property
    def size(self) -> int:
        return self._array.size

    def data(self) -> np.ndarray:
        """The flat values in row-major order (a read-only view)."""
        flat = self._array.reshape(-1)
        flat.flags.writeable = False
        return flat

    def numpy(self) -> np.ndarray:
        """A numpy array with this tensor's shape (a copy the caller may modify)."""
        return self._array.copy()

    def item(self):
        """The single value of a one-element tensor, as a Python number."""
        if self._array.size != 1:
            raise ShapeError(f"item() needs a tensor with one element, got shape {list(self.shape)}")
        return self._array.reshape(()).item()

    def __array__(self, dtype=None, copy=None):
        arr = self._array
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            return arr.astype(dtype)
        if copy:
            return arr.copy()
        view = arr.view()  # no copy asked for: a read-only view, so the value cannot change
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        if not self._array.ndim:
            raise TypeError("len() of a 0-d tensor")
        return self._array.shape[0]

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __repr__(self) -> str:
        if self.is_deleted():
            return "Tensor(<deleted: donated to a jitted function>)"
        body = np.array2string(self._array, separator=", ", threshold=20)
        return f"Tensor({body}, dtype={self.dtype})"

    # Arithmetic follows numpy (NEP 50 promotion: Python scalars are weak) and
    # gives Tensors, so ``w.data - lr * w.grad`` reads as in PyTorch. An operand
    # that is a Variable makes the result a Variable (Variable's reflected
    # operators take over).
    def __getitem__(self, index) -> "Tensor":
        return Tensor._wrap(as_array(self._array[index]))


def _operand(x):
    if isinstance(x, Tensor):
        return x._array
    if isinstance(x, (np.ndarray, np.generic, bool, int, float, list, tuple)):
        return x
    return None


def _binary_method(fn, reflected: bool = False):
    def method(self, other):
        other_arr = _operand(other)
        if other_arr is None:
            return NotImplemented
        a, b = (other_arr, self._array) if reflected else (self._array, other_arr)
        with np.errstate(all="ignore"):
            return Tensor._wrap(as_array(np.asarray(fn(a, b))))

    return method


def _unary_method(fn):
    def method(self):
        return Tensor._wrap(as_array(np.asarray(fn(self._array))))

    return method


_BINARY_OPERATORS = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "pow": np.power, "matmul": np.matmul,
}
for _name, _fn in _BINARY_OPERATORS.items():
    setattr(Tensor, f"__{_name}__", _binary_method(_fn))
    setattr(Tensor, f"__r{_name}__", _binary_method(_fn, reflected=True))
for _name, _fn in {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
                   "eq": np.equal, "ne": np.not_equal}.items():
    setattr(Tensor, f"__{_name}__", _binary_method(_fn))
for _name, _fn in {"neg": np.negative, "pos": np.positive, "abs": np.abs}.items():
    setattr(Tensor, f"__{_name}__", _unary_method(_fn))
Tensor.__hash__ = object.__hash__  # == is elementwise, as for numpy arrays
