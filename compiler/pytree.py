"""Nested containers of arrays ("pytrees"): tuples, lists, dicts and None.

``flatten`` gives the leaves in a fixed order (dict keys sorted, as in JAX) and
a hashable ``TreeDef``; ``unflatten`` rebuilds the structure from new leaves.

>>> leaves, tree = flatten({"w": 1, "b": (2, [3, None])})
>>> leaves
[2, 3, 1]
>>> unflatten(tree, [20, 30, 10])
{'b': (20, [30, None]), 'w': 10}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TreeDef", "flatten", "unflatten", "tree_map"]


@dataclass(frozen=True)
class TreeDef:
    """The shape of a pytree: a node kind, dict keys (if any) and children."""

    kind: str  # "leaf", "none", "tuple", "list", "dict"
    keys: tuple = ()
    children: tuple["TreeDef", ...] = ()

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __str__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = ", ".join(str(c) for c in self.children)
        if self.kind == "dict":
            inner = ", ".join(f"{k!r}: {c}" for k, c in zip(self.keys, self.children, strict=True))
            return "{" + inner + "}"
        return f"({inner})" if self.kind == "tuple" else f"[{inner}]"


_LEAF = TreeDef("leaf")


def flatten(tree: Any) -> tuple[list, TreeDef]:
    """Leaves in order, and the structure."""
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree, leaves) -> TreeDef:
    if tree is None:
        return TreeDef("none")
    if isinstance(tree, (tuple, list)) and not hasattr(tree, "_fields"):
        kind = "tuple" if isinstance(tree, tuple) else "list"
        return TreeDef(kind, (), tuple(_flatten(c, leaves) for c in tree))
    if isinstance(tree, dict):
        try:
            keys = tuple(sorted(tree))
        except TypeError:
            raise TypeError(f"dict keys of a pytree must be sortable, got {list(tree)}") from None
        return TreeDef("dict", keys, tuple(_flatten(tree[k], leaves) for k in keys))
    leaves.append(tree)
    return _LEAF


def unflatten(tree: TreeDef, leaves) -> Any:
    """The structure ``tree`` filled with ``leaves`` (in flatten's order)."""
    it = iter(leaves)
    result = _unflatten(tree, it)
    if next(it, _SENTINEL) is not _SENTINEL:
        raise ValueError(f"too many leaves for tree {tree}")
    return result


_SENTINEL = object()


def _unflatten(tree: TreeDef, it):
    if tree.kind == "leaf":
        value = next(it, _SENTINEL)
        if value is _SENTINEL:
            raise ValueError("too few leaves for the tree")
        return value
    if tree.kind == "none":
        return None
    children = [_unflatten(c, it) for c in tree.children]
    if tree.kind == "dict":
        return dict(zip(tree.keys, children, strict=True))
    return tuple(children) if tree.kind == "tuple" else children


def tree_map(fn, tree, *rest):
    """Apply ``fn`` leafwise to one or more trees of the same structure."""
    leaves, treedef = flatten(tree)
    others = [flatten(r) for r in rest]
    for other_leaves, other_def in others:
        if other_def != treedef:
            raise ValueError(f"tree structures differ: {treedef} and {other_def}")
    return unflatten(treedef, [fn(*xs) for xs in zip(leaves, *(o[0] for o in others), strict=True)])
