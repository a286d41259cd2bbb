"""The GEMM kernel library (compiler/kernel_library.py): complete, found only
where it belongs, and bitwise the same code as kernels defined per program.

The library is built once here, into a scratch store that stands in for the
installed one (``XLAC_INSTALLED_OBJECTS``), so the tests neither depend on
nor disturb the library the package was installed with.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from compiler import kernel_library
from compiler.backend import compile_function
from compiler.cli import main as xlac
from compiler.codegen import lower
from compiler.codegen.gemm_plan import vector_bits
from compiler.codegen.kernel_set import library_module
from compiler.pipeline import optimize
from ir import Builder, DType, TensorType
from runtime import libraries
from runtime.cache import CompileCache, installed_cache
from runtime.target import host_target

pytestmark = pytest.mark.llvm

# Products reaching every kind of kernel: main and edge tiles, A read in place
# (strided rows, and transposed), A and B packed (B transposed: the
# transposing packer), one-vector-wide products, the skinny kernel, f64.
PRODUCTS = [
    (DType.f32, 256, 784, 512, False, False), (DType.f32, 100, 300, 70, False, False),
    (DType.f32, 300, 200, 250, True, False), (DType.f32, 260, 129, 300, False, True),
    (DType.f32, 256, 512, 10, False, False), (DType.f32, 37, 1100, 10, False, False),
    (DType.f32, 512, 256, 10, True, False), (DType.f64, 200, 150, 130, False, True),
    (DType.f64, 97, 61, 101, True, True), (DType.f64, 64, 300, 8, False, False),
]


def _program(products):
    b = Builder("products")
    outs = []
    for dtype, m, k, n, t_a, t_b in products:
        lhs = b.param(TensorType(dtype, (k, m) if t_a else (m, k)))
        rhs = b.param(TensorType(dtype, (n, k) if t_b else (k, n)))
        attrs = {name: True for name, flag in (("transpose_lhs", t_a), ("transpose_rhs", t_b))
                 if flag}
        outs.append(b.dot(lhs, rhs, **attrs))
    return b.finish(outs)


def _arguments(products, seed=0):
    rng = np.random.default_rng(seed)
    args = []
    for dtype, m, k, n, t_a, t_b in products:
        args.append(rng.standard_normal((k, m) if t_a else (m, k)).astype(dtype.numpy))
        args.append(rng.standard_normal((n, k) if t_b else (k, n)).astype(dtype.numpy))
    return args


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding this machine's library (and pool), used as the installed one."""
    directory = tmp_path_factory.mktemp("installed")
    built = kernel_library.install_objects(directory)
    assert len(built) == 2
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in built)  # everybody's
    return directory


@pytest.fixture
def installed(store, monkeypatch):
    monkeypatch.setenv("XLAC_INSTALLED_OBJECTS", str(store))
    monkeypatch.delenv("XLAC_KERNEL_LIBRARY", raising=False)
    kernel_library._find.cache_clear()
    yield store
    kernel_library._find.cache_clear()


def _check_against_numpy(products, args, results) -> None:
    for (dtype, _m, k, _n, t_a, t_b), a, b, got in zip(products, args[::2], args[1::2], results,
                                                       strict=True):
        a = a.T if t_a else a
        b = b.T if t_b else b
        want = a.astype(np.float64) @ b.astype(np.float64)
        bound = 2 * k * np.finfo(dtype.numpy).eps * (np.abs(a) @ np.abs(b)) + 1e-30
        assert got.dtype == dtype.numpy and np.all(np.abs(got - want) <= bound)


def _declared(text: str) -> set[str]:
    return set(re.findall(r'^declare [^@]*@"(xlac\.gemm\.[^"]+)"', text, re.MULTILINE))


def _defined(text: str) -> set[str]:
    return set(re.findall(r'^define [^@]*@"(xlac\.gemm\.[^"]+)"', text, re.MULTILINE))


class _Names(set):
    ident = "xlac_kernels:test"


def test_the_library_defines_every_kernel_a_product_calls():
    _, names = library_module(vector_bits(host_target().features))
    fn = optimize(_program(PRODUCTS))
    inline = lower(fn).llvm_ir
    program = lower(fn, library=_Names(names))
    assert program.links == ("xlac_kernels:test",)
    linked = program.llvm_ir
    called = _defined(inline)
    assert len(called) >= 10  # micro-kernels and packers of several kinds
    assert called <= set(names)
    assert _declared(linked) == called and not _defined(linked)


def test_programs_linking_the_library_match_programs_defining_their_kernels(installed,
                                                                             monkeypatch):
    args = _arguments(PRODUCTS)
    library = kernel_library.kernel_library()
    assert library is not None and kernel_library.library_id().startswith("library ")
    linked = compile_function(_program(PRODUCTS))(*args)
    assert library._library is not None  # linked into the JIT for this program
    monkeypatch.setenv("XLAC_KERNEL_LIBRARY", "off")
    assert kernel_library.library_id() == "inline"
    inline = compile_function(_program(PRODUCTS))(*args)
    for got, want in zip(linked, inline, strict=True):
        np.testing.assert_array_equal(got, want)
    _check_against_numpy(PRODUCTS, args, linked)


def test_a_program_linking_the_library_shows_and_exports_its_kernels(installed):
    exe = compile_function(_program(PRODUCTS[:2]))
    assert _defined(exe.llvm_ir) and not _declared(exe.llvm_ir)  # self-contained
    assert exe.emit_object()  # an AOT object needs no library


def test_a_corrupt_library_is_not_used(store, tmp_path, monkeypatch):
    for entry in store.iterdir():
        damaged = bytearray(entry.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        (tmp_path / entry.name).write_bytes(bytes(damaged))
    monkeypatch.setenv("XLAC_INSTALLED_OBJECTS", str(tmp_path))
    kernel_library._find.cache_clear()
    try:
        assert kernel_library.kernel_library() is None
        assert all(p.exists() for p in tmp_path.iterdir())  # read-only: never deleted
        args = _arguments(PRODUCTS[:4], seed=3)
        _check_against_numpy(PRODUCTS[:4], args, compile_function(_program(PRODUCTS[:4]))(*args))
    finally:
        kernel_library._find.cache_clear()


def test_a_library_is_found_only_by_the_compiler_and_machine_that_made_it(store, monkeypatch):
    from runtime import cache

    monkeypatch.setenv("XLAC_INSTALLED_OBJECTS", str(store))
    kernel_library._find.cache_clear()
    other = dataclasses.replace(cache.host_target(), cpu=cache.host_target().cpu + "-other")
    monkeypatch.setattr(cache, "host_target", lambda: other)
    try:
        assert kernel_library.kernel_library() is None
    finally:
        kernel_library._find.cache_clear()


def test_installed_objects_are_looked_up_read_only(store):
    installed = CompileCache(store, use_default=False, max_bytes=None, read_only=True)
    assert installed.store("0" * 40 + "-" + "0" * 16, b"x", _info()) is None
    assert installed_cache().read_only


def _info():
    from runtime.cache import ProgramInfo

    return ProgramInfo("x", "", "", (), (), 0, False)


def test_the_cli_shows_and_builds_the_library(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XLAC_INSTALLED_OBJECTS", "off")
    kernel_library._find.cache_clear()
    try:
        assert xlac(["kernels", "info"]) == 0
        assert "not built" in capsys.readouterr().out
        assert xlac(["kernels", "build", "--cache-dir", str(tmp_path)]) == 0
        assert "built" in capsys.readouterr().out
        monkeypatch.setenv("XLAC_CACHE_DIR", str(tmp_path))
        assert xlac(["kernels", "info"]) == 0
        out = capsys.readouterr().out
        assert "cache: " + str(tmp_path) in out
        assert libraries.known_symbols()  # registered when found
    finally:
        kernel_library._find.cache_clear()


def test_a_program_without_a_product_never_looks_the_library_up(installed):
    import compiler as xp

    kernel_library._find.cache_clear()
    exe = xp.jit(lambda x: x + 1)
    np.testing.assert_array_equal(np.asarray(exe(np.ones(3, np.float32))), 2.0)
    assert kernel_library._find.cache_info().misses == 0


# A subprocess's program: one product, compiled and checked.
_ONE_PRODUCT = """
import json
import numpy as np
import runtime
from ir import Builder, DType, TensorType
from compiler import kernel_library
from compiler.backend import compile_function

b = Builder("p")
out = b.dot(b.param(TensorType(DType.f32, (50, 70))), b.param(TensorType(DType.f32, (70, 90))))
exe = compile_function(b.finish([out]))
x, y = np.ones((50, 70), np.float32), np.ones((70, 90), np.float32)
np.testing.assert_array_equal(exe(x, y)[0], 70.0)
"""


def test_a_library_that_does_not_link_is_not_used(store, tmp_path, monkeypatch):
    """An entry whose checksum holds but whose object does not define what it
    lists: found, fails to link, and programs define their kernels instead."""
    import os
    import subprocess
    import sys
    import textwrap

    from runtime.cache import ProgramInfo, find_object, store_object

    monkeypatch.setenv("XLAC_INSTALLED_OBJECTS", str(store))
    object_code, info = find_object(kernel_library._library_text(), name="xlac_kernels")
    bogus = ProgramInfo("xlac_kernels", "", "", (), (), 0, False,
                        exports=info.exports + ("xlac.gemm.f32.no_such_kernel",))
    store_object(kernel_library._library_text(), object_code, bogus,
                 cache=CompileCache(tmp_path, max_bytes=None))
    script = _ONE_PRODUCT + textwrap.dedent("""
        assert kernel_library.library_id() != "inline"  # stored, so keys say so
        assert kernel_library.kernel_library() is None
        assert not kernel_library.describe()["usable"]
        # The installed store is no cache: nothing of it counts as a hit or miss.
        assert all(e.program != "xlac_kernels" for e in runtime.cache_stats().events)
        print("ok")
    """)
    env = {**os.environ, "XLAC_INSTALLED_OBJECTS": str(tmp_path), "XLAC_CACHE_DIR": "off",
           "XLAC_KERNEL_LIBRARY": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_threads_compiling_at_once_share_one_library(store):
    """Each thread's first product finds the library at the same time; every
    program must keep the library's code alive (a replaced, collected copy
    once freed code that programs still called: a segfault)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import gc, threading
        import numpy as np
        from ir import Builder, DType, TensorType
        from compiler.backend import compile_function

        def product(seed):
            m, k, n = 40 + seed, 60 + 3 * seed, 70 + 2 * seed
            dtype = (DType.f32, DType.f64)[seed % 2]
            b = Builder(f"p{seed}")
            out = b.dot(b.param(TensorType(dtype, (m, k))), b.param(TensorType(dtype, (k, n))))
            exe = compile_function(b.finish([out]))
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((m, k)).astype(dtype.numpy)
            y = rng.standard_normal((k, n)).astype(dtype.numpy)
            return exe, x, y

        made = [None] * 8
        def work(i):
            made[i] = product(i)
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        gc.collect()
        for exe, x, y in made:
            (got,) = exe(x, y)
            np.testing.assert_allclose(got, x @ y, rtol=1e-4, atol=1e-4)
        from runtime import libraries
        assert len(libraries._registered) == 1, libraries._registered
        print("ok")
    """)
    import os
    env = {**os.environ, "XLAC_INSTALLED_OBJECTS": str(store), "XLAC_CACHE_DIR": "off",
           "XLAC_KERNEL_LIBRARY": ""}
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_second_process_links_the_cached_program_to_the_library(store, tmp_path):
    """A cache hit is never lowered: its library is found when it is linked."""
    import os
    import subprocess
    import sys
    import textwrap

    script = _ONE_PRODUCT + textwrap.dedent("""
        stats = runtime.cache_stats()
        print(json.dumps([stats.hits, stats.misses, exe._library.uses != ()]))
    """)
    env = {**os.environ, "XLAC_INSTALLED_OBJECTS": str(store), "XLAC_CACHE_DIR": str(tmp_path),
           "XLAC_KERNEL_LIBRARY": ""}
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(done.stdout.strip().splitlines()[-1])
    assert runs == ["[0, 1, true]", "[1, 0, true]"]


def test_the_library_key_covers_every_module_of_its_generator():
    """The key hashes a list of sources (reading them is cheap, parsing them to
    find the imports is not, on every cold start): it must be the generator's
    whole import closure within the compiler, or an edit would reuse a stale
    library."""
    import ast
    import pathlib

    root = pathlib.Path(kernel_library.__file__).resolve().parent.parent
    seen, todo = set(), ["compiler.codegen.kernel_set"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = root.joinpath(*module.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] in ("compiler", "ir"):
                todo.append(node.module)
    closure = {root.joinpath(*m.split(".")).with_suffix(".py") for m in seen}
    assert closure == {root / name for name in kernel_library._GENERATOR}
