"""Where in the user's code an operation was recorded.

The first stack frame outside this project's packages is the user's line; it is
stored on every traced operation (``Eqn.loc``) and appears in error messages.
"""

from __future__ import annotations

import os
import sys

__all__ = ["user_location"]

_INSTALL_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PACKAGE_ROOTS = tuple(os.path.join(_INSTALL_ROOT, name) + os.sep for name in ("compiler", "ir", "runtime"))


def user_location() -> str | None:
    """``"file.py:12"`` of the innermost caller outside compiler/, ir/ and runtime/."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_ROOTS):
            return f"{_short(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _short(filename: str) -> str:
    # Relative to the working directory when below it: short, and still clickable.
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if rel.startswith("..") else rel

