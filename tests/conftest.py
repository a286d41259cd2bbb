"""Shared pytest setup: make tests/ importable (e.g. ``from op_samples import all_samples``).

The persistent compile cache goes to a fresh folder per test session, so tests
never read or fill the user's cache and every session starts cold.
"""

import atexit
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

_CACHE_DIR = tempfile.mkdtemp(prefix="xlac-test-cache-")
os.environ["XLAC_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
