"""Vector transcendentals vs a scalar libm loop, numpy and JAX: ns per element.

    python benchmarks/transcendentals.py [--n 4194304] [--rounds 15] [--ops exp,log,tanh,logistic]

For each op, on n float32 from uniform(-10, 10) (|x| for log), side by side in
one process (benchmarks/harness.py: interleaved rounds, medians):

- ``xla-py``: the compiled kernel with codegen/vmath.py (the default);
- ``xla-py libm``: the same program compiled the same way with
  XLAC_SCALAR_LIBM=1: one libm call per element (``expf``, ``tanhf``...);
- ``numpy`` (logistic as ``1 / (1 + np.exp(-x))``, numpy has none);
- ``jax.jit`` when JAX is installed (XLA's own vectorised approximations);
- ``numpy copy``: the same bytes copied, the memory-bandwidth reference.

Every contender allocates its output, as numpy does. Single thread: numpy and
our kernels use one; JAX is asked for one (XLA_FLAGS below, set before JAX is
imported). The last column is each contender's max error on this data, in ulps
from the correctly rounded float32 result (float64 numpy reference). The
issue's target: xla-py at least 4x faster than the scalar libm loop.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.harness import Contender, measure, optional_jax, report, set_threads  # noqa: E402
from compiler.backend import compile_function  # noqa: E402
from ir import Builder, TensorType  # noqa: E402

OPS = ("exp", "log", "tanh", "logistic")


def _logistic(x):
    return 1 / (1 + np.exp(-x))


NUMPY = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "logistic": _logistic,
         "expm1": np.expm1, "log1p": np.log1p, "sin": np.sin, "cos": np.cos}


def _reference(op: str, x: np.ndarray) -> np.ndarray:
    """Float64 numpy, rounded once to float32 (logistic in its stable two-branch form)."""
    x64 = x.astype(np.float64)
    if op == "logistic":
        e = np.exp(-np.abs(x64))
        return np.where(x64 >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)
    return NUMPY[op](x64).astype(np.float32)


def _ulp_error(got: np.ndarray, want: np.ndarray) -> int:
    def ordered(a):
        bits = a.view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)

    ok = np.isfinite(want) & np.isfinite(got)
    return int(np.abs(ordered(got[ok]) - ordered(want[ok])).max(initial=0))


def compile_op(op: str, n: int, *, libm: bool):
    """The one-op program over f32[n], compiled by the backend the pipeline uses.

    ``libm=True`` lowers it with XLAC_SCALAR_LIBM=1 (part of the compile-cache
    key, so the two versions never share a cache entry).
    """
    b = Builder(f"{op}_libm" if libm else op)
    x = b.param(TensorType("f32", (n,)))
    fn = b.finish([getattr(b, op)(x)])
    saved = os.environ.get("XLAC_SCALAR_LIBM")
    os.environ["XLAC_SCALAR_LIBM"] = "1" if libm else "0"
    try:
        return compile_function(fn)
    finally:
        if saved is None:
            del os.environ["XLAC_SCALAR_LIBM"]
        else:
            os.environ["XLAC_SCALAR_LIBM"] = saved


def _jax_function(jax, op: str):
    jnp = jax.numpy
    fns = {"exp": jnp.exp, "log": jnp.log, "tanh": jnp.tanh, "logistic": jax.nn.sigmoid,
           "expm1": jnp.expm1, "log1p": jnp.log1p, "sin": jnp.sin, "cos": jnp.cos}
    return jax.jit(fns[op])


def bench(op: str, n: int, rounds: int, jax) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, n).astype(np.float32)
    if op in ("log", "log1p"):
        x = np.abs(x)
    ours, libm = compile_op(op, n, libm=False), compile_op(op, n, libm=True)
    want = _reference(op, x)
    contenders = [
        Contender("xla-py", lambda: ours(x)),
        Contender("xla-py libm", lambda: libm(x)),
        Contender("numpy", lambda: NUMPY[op](x)),
    ]
    outputs = {"xla-py": ours(x)[0], "xla-py libm": libm(x)[0], "numpy": NUMPY[op](x)}
    if jax is not None:
        jitted = _jax_function(jax, op)
        xj = jax.device_put(x)
        contenders.append(Contender("jax.jit", lambda: jitted(xj).block_until_ready()))
        outputs["jax.jit"] = np.asarray(jitted(xj))
    contenders.append(Contender("numpy copy", lambda: x.copy()))
    errors = {name: _ulp_error(np.asarray(out, np.float32), want) for name, out in outputs.items()}
    measure(contenders, rounds=rounds)

    def extra(c: Contender) -> str:
        error = f"{errors[c.name]:>6d} ulp" if c.name in errors else ""
        return f"{c.median / n * 1e9:7.3f} ns/elem {error}"

    report(f"{op}: {n} float32 (median of {rounds} rounds; ratio = time / xla-py time)",
           contenders, "xla-py", extra)
    medians = {c.name: c.median for c in contenders}
    return {"speedup_vs_libm": medians["xla-py libm"] / medians["xla-py"],
            "speedup_vs_numpy": medians["numpy"] / medians["xla-py"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1 << 22)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", default=",".join(OPS))
    args = parser.parse_args(argv)
    set_threads(1)
    jax = optional_jax()
    summary = {op: bench(op, args.n, args.rounds, jax) for op in args.ops.split(",")}
    print("\nsummary (target: >= 4x faster than the scalar libm loop)")
    for op, s in summary.items():
        verdict = "ok" if s["speedup_vs_libm"] >= 4 else "BELOW TARGET"
        print(f"  {op:9s} {s['speedup_vs_libm']:6.1f}x vs libm ({verdict}), "
              f"{s['speedup_vs_numpy']:5.2f}x vs numpy")


if __name__ == "__main__":
    main()
