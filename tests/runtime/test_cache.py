"""The persistent compile cache: entries, keys, bad entries, stats, other processes."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import runtime
from runtime.cache import CompileCache, ProgramInfo, environment
from ir import Builder, DType, TensorType
from compiler.backend import compile_function

pytestmark = pytest.mark.llvm

F32 = DType.f32
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _program(name="cached", scale=2.0):
    b = Builder(name)
    x = b.param(TensorType(F32, (8,)))
    y = b.add(b.mul(x, b.constant(scale, F32, (8,))), b.constant(1.0, F32, (8,)))
    return b.finish([y, b.reduce_sum(y, axes=[0])])


def _check(exe, scale=2.0):
    x = np.arange(8, dtype=np.float32)
    y, total = exe(x)
    np.testing.assert_array_equal(y, x * np.float32(scale) + 1)
    assert total == pytest.approx(float((x * scale + 1).sum()))


def _events(since: int):
    return runtime.cache_stats().events[since:]


def _count_events() -> int:
    """Start counting afresh (the process keeps only the latest events)."""
    runtime.reset_cache_stats()
    return 0


def test_miss_then_store_then_hit_in_process(tmp_path):
    cache = CompileCache(tmp_path)
    before = _count_events()
    first = compile_function(_program(), cache=cache)
    assert [e.outcome for e in _events(before)] == ["miss", "store"]
    assert _events(before)[0].reason == "not cached"
    assert set(first.compile_seconds) == {"parse", "optimize", "codegen", "link"}
    (entry,) = cache.entries()
    assert entry.suffix == ".xo" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    before = _count_events()
    second = compile_function(_program(), cache=cache)
    assert [e.outcome for e in _events(before)] == ["hit"]
    assert set(second.compile_seconds) == {"cache_load", "link"}
    _check(second)
    # The LLVM IR was never built for the hit; asking for it regenerates it.
    assert second._llvm_ir is not first.llvm_ir and callable(second._llvm_ir)
    assert second.llvm_ir == first.llvm_ir
    assert "define" in second.optimized_llvm_ir and "entry:" in second.asm


def test_source_locations_do_not_change_the_key_but_the_program_does(tmp_path):
    cache = CompileCache(tmp_path)
    compile_function(_program(), cache=cache)
    located = _program()
    for eqn in located.eqns:
        eqn.loc = "elsewhere.py:99"
    before = _count_events()
    compile_function(located, cache=cache)
    assert [e.outcome for e in _events(before)] == ["hit"]
    before = _count_events()
    _check(compile_function(_program(scale=3.0), cache=cache), scale=3.0)
    assert [e.outcome for e in _events(before)] == ["miss", "store"]
    assert len(cache.entries()) == 2


def _corrupt_truncate(path: pathlib.Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_flip(path: pathlib.Path):
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the object code
    path.write_bytes(bytes(data))


def _corrupt_magic(path: pathlib.Path):
    data = bytearray(path.read_bytes())
    data[:8] = b"GARBAGE!"
    path.write_bytes(bytes(data))


def _corrupt_empty(path: pathlib.Path):
    path.write_bytes(b"")


@pytest.mark.parametrize("damage, reason", [
    (_corrupt_truncate, "truncated"),
    (_corrupt_flip, "corrupt"),
    (_corrupt_magic, "bad magic"),
    (_corrupt_empty, "truncated"),
])
def test_a_bad_entry_is_detected_and_recompiled_never_loaded(tmp_path, damage, reason):
    cache = CompileCache(tmp_path)
    compile_function(_program(), cache=cache)
    (entry,) = cache.entries()
    damage(entry)
    before = _count_events()
    exe = compile_function(_program(), cache=cache)
    events = _events(before)
    assert [e.outcome for e in events] == ["miss", "store"]
    assert events[0].reason.startswith(reason), events[0].reason
    assert runtime.cache_stats().errors == 1
    assert set(exe.compile_seconds) >= {"optimize", "codegen"}  # really recompiled
    _check(exe)
    # The entry was replaced by a good one.
    before = _count_events()
    _check(compile_function(_program(), cache=cache))
    assert [e.outcome for e in _events(before)] == ["hit"]


def test_a_changed_environment_is_a_stale_miss_that_names_the_component(tmp_path):
    cache = CompileCache(tmp_path)
    info = ProgramInfo("p", "entry", "entry_py", (TensorType(F32, (1,)),),
                       (TensorType(F32, (1,)),), 0, True)
    old = environment("compiler-1", 24)
    new = environment("compiler-2", 24)
    cache.store(cache.key("program text", old), b"object", info, environment=old)
    before = _count_events()
    assert cache.load(cache.key("program text", new), program="p", environment=new) is None
    (event,) = _events(before)
    assert event.reason.startswith("stale: cached for another compiler: compiler-1 -> compiler-2")
    assert cache.load(cache.key("other text", new), program="p", environment=new) is None
    assert _events(before)[-1].reason == "not cached"
    found = cache.load(cache.key("program text", old), program="p", environment=old)
    assert found == (b"object", info)


def test_entry_header_round_trips_program_info(tmp_path):
    cache = CompileCache(tmp_path)
    info = ProgramInfo("p", "entry", "entry_py",
                       (TensorType(F32, (2, 3)), TensorType(DType.bool, ())),
                       (TensorType(DType.i64, (0,)), TensorType(F32, (2, 3))), 192, True,
                       donated=((1, 0),))
    env = environment("salt", None)
    path = cache.store(cache.key("t", env), b"\x7fELF...", info, environment=env)
    assert cache.load(cache.key("t", env), environment=env) == (b"\x7fELF...", info)
    header = cache.describe(path)
    assert header["program"]["name"] == "p" and header["object_bytes"] == 7
    assert header["environment"]["cpu"] == runtime.host_target().cpu


def test_clear_info_and_disabled(tmp_path):
    cache = CompileCache(tmp_path / "sub")
    assert cache.info()["entries"] == 0 and cache.clear() == 0  # no folder yet
    compile_function(_program(), cache=cache)
    compile_function(_program(scale=5.0), cache=cache)
    assert cache.info()["entries"] == 2 and cache.info()["bytes"] > 0
    assert cache.clear() == 2 and cache.entries() == []

    off = CompileCache("off")
    assert not off.enabled and off.info()["entries"] == 0
    before = _count_events()
    _check(compile_function(_program(), cache=off))
    assert [(e.outcome, e.reason) for e in _events(before)] == [("miss", "disabled")]


def test_the_folder_stays_under_its_size_limit_least_recently_used_first(tmp_path):
    unlimited = CompileCache(tmp_path, max_bytes=0)
    programs = [_program(scale=float(s)) for s in range(2, 6)]
    for program in programs:
        compile_function(program, cache=unlimited)
    entries = unlimited.entries()
    sizes = [p.stat().st_size for p in entries]
    assert len(entries) == 4 and unlimited.evict() == 0  # no limit: nothing goes
    # Make the order unambiguous (mtime granularity), then use the oldest entry:
    # a hit makes it the most recently used, so it survives eviction.
    for age, path in enumerate(reversed(entries)):
        os.utime(path, (1e9 - age * 100, 1e9 - age * 100))
    oldest, second = entries[0], entries[1]
    before = _count_events()
    compile_function(programs[0], cache=unlimited)
    assert [e.outcome for e in _events(before)] == ["hit"]
    assert unlimited.entries()[-1] == oldest

    limited = CompileCache(tmp_path, max_bytes=sum(sizes) - 1)
    assert limited.evict() == 1
    assert not second.exists() and oldest.exists() and len(limited.entries()) == 3
    assert limited.info()["max_bytes"] == sum(sizes) - 1

    # A store evicts as it goes, but never the entry it just wrote.
    tiny = CompileCache(tmp_path, max_bytes=1)
    compile_function(_program(scale=9.0), cache=tiny)
    assert len(tiny.entries()) == 1


def test_size_limit_from_the_environment(monkeypatch):
    from runtime.cache import default_max_bytes

    monkeypatch.delenv("XLAC_CACHE_MAX_MB", raising=False)
    assert default_max_bytes() == 1024 * 2 ** 20
    monkeypatch.setenv("XLAC_CACHE_MAX_MB", "0.5")
    assert default_max_bytes() == 2 ** 19 and CompileCache("off").max_bytes == 2 ** 19
    monkeypatch.setenv("XLAC_CACHE_MAX_MB", "0")
    assert default_max_bytes() is None
    monkeypatch.setenv("XLAC_CACHE_MAX_MB", "lots")
    with pytest.raises(ValueError, match="XLAC_CACHE_MAX_MB='lots'"):
        default_max_bytes()


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    from runtime.cache import default_cache_dir

    monkeypatch.delenv("XLAC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "xla-py"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == pathlib.Path.home() / ".cache" / "xla-py"
    monkeypatch.setenv("XLAC_CACHE_DIR", str(tmp_path / "mine"))
    assert CompileCache().directory == tmp_path / "mine"
    monkeypatch.setenv("XLAC_CACHE_DIR", "off")
    assert not CompileCache().enabled


def test_flag_is_defined_once_and_mirrors_the_runtime():
    from compiler import flags

    assert flags.FLAGS["cache_dir"].env == runtime.cache.CACHE_DIR_ENV == "XLAC_CACHE_DIR"
    assert flags.FLAGS["cache_max_mb"].env == runtime.cache.CACHE_MAX_ENV == "XLAC_CACHE_MAX_MB"


def test_a_changed_knob_changes_the_key(tmp_path, monkeypatch):
    cache = CompileCache(tmp_path)
    compile_function(_program(), cache=cache)
    monkeypatch.setenv("XLAC_NUM_THREADS", "1")
    before = _count_events()
    _check(compile_function(_program(), cache=cache))
    events = _events(before)
    assert events[0].outcome == "miss" and "compiler" in events[0].reason


def test_a_hit_through_the_pipeline_skips_the_passes(tmp_path, monkeypatch):
    from compiler import pipeline

    pipeline.compile_function(_program("piped"), cache_dir=str(tmp_path))

    def refuse(*args, **kwargs):
        raise AssertionError("the passes ran on a cache hit")

    monkeypatch.setattr(pipeline, "optimize", refuse)
    before = _count_events()
    exe = pipeline.compile_function(_program("piped"), cache_dir=str(tmp_path))
    assert [e.outcome for e in _events(before)] == ["hit"]
    _check(exe)
    monkeypatch.undo()
    assert isinstance(exe.memory_plan, str) and exe.memory_plan  # made on demand (passes run)


def test_cached_object_for_runtime_helpers(tmp_path):
    from runtime.cache import cached_object

    cache = CompileCache(tmp_path)
    calls = []

    def compile_once():
        calls.append(1)
        return b"object code"

    assert cached_object("helper ir", compile_once, name="helper", cache=cache) == b"object code"
    assert cached_object("helper ir", compile_once, name="helper", cache=cache) == b"object code"
    assert calls == [1]
    off = CompileCache("off")
    assert cached_object("helper ir", compile_once, name="helper", cache=off) == b"object code"
    assert calls == [1, 1]


def test_stats_string_names_miss_reasons():
    text = str(runtime.cache_stats())
    assert text.startswith("compile cache: ") and "hit(s)" in text


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import runtime
    import runtime.loader
    from compiler import jit

    if sys.argv[1] == "warm":
        # A warm start must not run LLVM, nor build the LLVM IR, nor run the passes.
        def refuse(*args, **kwargs):
            raise AssertionError("LLVM was run on a cache hit")
        runtime.loader.compile_program = refuse
        import compiler.backend, compiler.pipeline
        compiler.backend.lower = refuse
        compiler.pipeline.optimize = refuse

    @jit
    def step(w, x):
        return w - 0.5 * (x @ w), (x * x).sum()

    w = np.eye(4, dtype=np.float32)
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    new_w, total = step(w, x)
    stats = runtime.cache_stats()
    print(json.dumps({"hits": stats.hits, "misses": stats.misses, "stores": stats.stores,
                      "reasons": [e.reason for e in stats.events if e.outcome == "miss"],
                      "w": np.asarray(new_w).tolist(), "total": float(total)}))
""")


def _child(mode: str, cache_dir: pathlib.Path) -> dict:
    env = dict(os.environ, XLAC_CACHE_DIR=str(cache_dir))
    done = subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_skips_llvm(tmp_path):
    cold = _child("cold", tmp_path)
    assert (cold["hits"], cold["misses"], cold["stores"]) == (0, 1, 1)
    assert cold["reasons"] == ["not cached"]
    warm = _child("warm", tmp_path)
    assert (warm["hits"], warm["misses"], warm["stores"]) == (1, 0, 0)
    assert warm["w"] == cold["w"] and warm["total"] == cold["total"]
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(warm["w"], np.eye(4) - 0.5 * x, rtol=1e-6)


def test_cli_cache_info_list_clear(tmp_path, capsys):
    from compiler.cli import main

    compile_function(_program("listed"), cache=CompileCache(tmp_path))
    assert main(["cache", "info", "--cache-dir", str(tmp_path)]) == 0
    assert f"compile cache: {tmp_path}\n  1 entr(ies)" in capsys.readouterr().out
    assert main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "listed" in listed and runtime.host_target().cpu in listed
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("removed 1 entr(ies)")
    assert main(["cache", "info", "--cache-dir", "off"]) == 0
    assert capsys.readouterr().out == "compile cache: disabled\n"
