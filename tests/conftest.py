"""Shared pytest setup: make tests/ importable (e.g. ``from op_samples import all_samples``)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
