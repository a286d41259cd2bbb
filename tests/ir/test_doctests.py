"""The docstring examples of the ir modules run (pytest's doctest collection covers tests/ only)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["ir.builder", "ir.graph", "ir.parser", "ir.verify"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    # import_module, not attribute access: ir.verify is also the name of the exported function.
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
