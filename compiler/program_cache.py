"""A bounded in-process memo of compiled programs (least recently used out).

The compiled-program memos (``pipeline.compile_cached`` by IR text, the lazy
Variables' by graph key) would otherwise keep every program a process ever
compiled alive; a loop over ever new shapes would grow without end. An evicted
program compiles again if asked for (the persistent disk cache makes that
cheap).
"""

from __future__ import annotations

import collections
from typing import Hashable

__all__ = ["ProgramCache"]


class ProgramCache:
    """A mapping with ``get``, item assignment, ``len`` and ``clear`` that keeps
    the ``capacity`` most recently used entries."""

    def __init__(self, capacity: int = 256):
        self.capacity = capacity
        self._entries: collections.OrderedDict = collections.OrderedDict()

    def get(self, key: Hashable, default=None):
        entry = self._entries.get(key, default)
        if key in self._entries:
            self._entries.move_to_end(key)
        return entry

    def __setitem__(self, key: Hashable, value) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
