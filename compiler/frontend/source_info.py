"""Where in the user's code an operation was recorded.

The first stack frame outside this project's packages is the user's line; it is
stored on every traced operation (``Eqn.loc``) and appears in error messages.
"""

from __future__ import annotations

import functools
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
            return f"{_short(filename, os.getcwd())}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@functools.lru_cache(maxsize=4096)
def _short(filename: str, cwd: str) -> str:
    # Relative to the working directory when below it: short, and still clickable.
    # Cached: every recorded operation asks, and relpath costs tens of us.
    try:
        rel = os.path.relpath(filename, cwd)
    except ValueError:
        return filename
    return filename if rel.startswith("..") else rel

