"""The bounded in-process memo of compiled programs."""

from compiler.program_cache import ProgramCache


def test_least_recently_used_entries_go_first():
    cache = ProgramCache(capacity=2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1          # a is now the most recently used
    cache["c"] = 3
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2 and cache.get("b") is None
    cache["a"] = 10                      # replacing counts as a use
    cache["d"] = 4
    assert "c" not in cache and cache.get("a") == 10
    cache.clear()
    assert len(cache) == 0
