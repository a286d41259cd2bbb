"""Training benchmarks (issue 6), side by side on this machine, medians.

    python benchmarks/training.py                  # W4, W5 and W6
    python benchmarks/training.py --only W4,W6     # some of them
    python benchmarks/training.py --only W5 --repeats 5
    python benchmarks/training.py --only W4 --fresh-processes 5   # as a loop calls the step

W4  one MLP training step: x f32[256,784], int32 labels, W1[784,512] b1[512]
    W2[512,512] b2[512] W3[512,10] b3[10], ReLU, mean softmax cross-entropy,
    SGD lr=0.01, returning the loss and the new parameters; xla-py jit (with
    and without donation) against a hand-written numpy step, JAX jit with
    donation and PyTorch eager. Targets: no slower than numpy; 0.85x JAX.
    Each contender runs in a process of its own, rounds still interleaved
    (harness.measure_isolated): in one process the idle worker pools of
    OpenBLAS, OpenMP and XLA outnumber the cores and slow whoever runs next.
W5  compile latency of that step in a fresh process: the first call minus a
    steady-state call, cold (empty compile cache) and warm (populated cache),
    against JAX's cold first call (and JAX with its persistent cache).
    Targets: cold at most 0.8x JAX cold, warm at most 30 ms. Cold uses the
    objects built at install time (the GEMM kernel library and the thread
    pool, [Installed objects] in runtime/cache.py), as JAX uses the kernels
    compiled into jaxlib; "not installed" is a cold start without them.
W6  per-call overhead of jit(lambda x: x + 1) on f32[1] against JAX jit,
    PyTorch eager and numpy. Target: at most 3 us.

Every library runs with its default threads on this machine (2 cores);
``--threads N`` asks all of them for N (useful when another process keeps a
core busy: a 2-thread BLAS then waits on it and looks many times slower).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time


def _thread_environment(argv) -> None:
    """``--threads N``: thread pools that are sized when a library loads (OpenBLAS
    under numpy, XLA's) read these variables, so they are set before any import."""
    if "--threads" not in argv or argv.index("--threads") + 1 >= len(argv):
        return
    n = argv[argv.index("--threads") + 1]
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLAC_NUM_THREADS"):
        os.environ[name] = n
    if n == "1":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()


_thread_environment(sys.argv)

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harness import (Contender, measure, measure_isolated, optional_jax,  # noqa: E402
                     optional_torch, report, serve, set_threads)

SIZES = (784, 512, 512, 10)
BATCH = 256
LR = 0.01
NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")


def make_problem(seed: int = 0):
    """He-initialised float32 parameters (a dict), a batch and int32 labels."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (m, n) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True), 1):
        params[f"W{i}"] = (rng.standard_normal((m, n)) * np.sqrt(2.0 / m)).astype(np.float32)
        params[f"b{i}"] = np.zeros(n, np.float32)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    labels = rng.integers(0, SIZES[-1], BATCH).astype(np.int32)
    return params, x, labels


def copy_params(params):
    return {k: np.array(v, copy=True) for k, v in params.items()}


# -- the step in each framework ------------------------------------------------------


def xla_step():
    """The W4 step for xla-py (not yet jitted)."""
    from compiler import functional, nn

    def loss_fn(params, x, labels):
        h = nn.relu(x @ params["W1"] + params["b1"])
        h = nn.relu(h @ params["W2"] + params["b2"])
        return nn.cross_entropy(h @ params["W3"] + params["b3"], labels)

    def step(params, x, labels):
        loss, grads = functional.value_and_grad(loss_fn)(params, x, labels)
        return {k: params[k] - LR * grads[k] for k in params}, loss

    return step


def numpy_step(params, x, labels):
    """A hand-written float32 step: forward, backward, SGD in place; returns the loss."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in NAMES)
    z1 = x @ W1 + b1
    h1 = np.maximum(z1, 0)
    z2 = h1 @ W2 + b2
    h2 = np.maximum(z2, 0)
    logits = h2 @ W3 + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = np.mean(np.log(total[:, 0]) - shifted[rows, labels])
    d_logits = exp / total
    d_logits[rows, labels] -= 1
    d_logits *= np.float32(1.0 / len(labels))
    d_h2 = d_logits @ W3.T
    d_z2 = d_h2 * (z2 > 0)
    d_h1 = d_z2 @ W2.T
    d_z1 = d_h1 * (z1 > 0)
    grads = {"W3": h2.T @ d_logits, "b3": d_logits.sum(0), "W2": h1.T @ d_z2, "b2": d_z2.sum(0),
             "W1": x.T @ d_z1, "b1": d_z1.sum(0)}
    lr = np.float32(LR)
    for k in NAMES:
        params[k] -= lr * grads[k]
    return loss


def jax_step(jax):
    import jax.numpy as jnp

    def loss_fn(params, x, labels):
        h = jax.nn.relu(x @ params["W1"] + params["b1"])
        h = jax.nn.relu(h @ params["W2"] + params["b2"])
        logits = h @ params["W3"] + params["b3"]
        picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    def step(params, x, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, labels)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), loss

    return jax.jit(step, donate_argnums=0)


def torch_step(torch):
    def step(params, x, labels):
        h = torch.relu(x @ params["W1"] + params["b1"])
        h = torch.relu(h @ params["W2"] + params["b2"])
        loss = torch.nn.functional.cross_entropy(h @ params["W3"] + params["b3"], labels)
        for p in params.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params.values():
                p -= LR * p.grad
        return loss

    return step


# -- W4 --------------------------------------------------------------------------------


def w4_contenders() -> dict:
    """Each W4 contender's name and a factory that builds its one-step callable
    (imports happen in the factory, so a child process loads one library only)."""

    def numpy_run():
        params, x, labels = make_problem()
        return lambda: numpy_step(params, x, labels)

    def xla_run(donate: bool):
        from compiler import jit

        params, x, labels = make_problem()
        if not donate:
            plain = jit(xla_step())
            return lambda: plain(params, x, labels)
        donating = jit(xla_step(), donate_argnums=0)
        state = {"params": params}

        def run():
            state["params"], loss = donating(state["params"], x, labels)
            return loss

        return run

    def jax_run():
        jax = optional_jax()
        params, x, labels = make_problem()
        jstep = jax_step(jax)
        state = {"params": jax.tree_util.tree_map(jax.numpy.asarray, params)}
        jx, jl = jax.numpy.asarray(x), jax.numpy.asarray(labels)

        def run():
            state["params"], loss = jstep(state["params"], jx, jl)
            loss.block_until_ready()

        return run

    def torch_run():
        torch = optional_torch()
        params, x, labels = make_problem()
        tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        tx, tl = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
        tstep = torch_step(torch)
        return lambda: tstep(tparams, tx, tl)

    contenders = {"numpy (hand-written)": numpy_run,
                  "xla-py jit (donated)": lambda: xla_run(True),
                  "xla-py jit (no donation)": lambda: xla_run(False)}
    if optional_jax() is not None:
        contenders["JAX jit (donated)"] = jax_run
    if optional_torch() is not None:
        contenders["PyTorch eager"] = torch_run
    return contenders


def w4(rounds: int, shared_process: bool) -> None:
    """W4 side by side. By default each contender runs in a process of its own
    (``measure_isolated``); ``--shared-process`` runs them all in this one."""
    params, x, labels = make_problem()
    _check_w4_agreement(params, x, labels, optional_jax(), optional_torch())
    factories = w4_contenders()
    if shared_process:
        contenders = [Contender(name, factory()) for name, factory in factories.items()]
        measure(contenders, rounds=rounds, warmup=3, min_seconds=0.05, settle=0.15)
        where = "all in one process"
    else:
        script = str(pathlib.Path(__file__).resolve())
        contenders = measure_isolated(
            {name: [sys.executable, script, "--serve-w4", name] for name in factories},
            rounds=rounds, warmup=3, min_seconds=0.05, settle=0.1)
        where = "each in a process of its own"
    report(f"W4: one MLP training step (256x784 -> 512 -> 512 -> 10, SGD; {where})", contenders,
           "numpy (hand-written)")


def w4_fresh_processes(repeats: int, steps: int) -> None:
    """W4 as a training loop runs it: each contender in a fresh process that
    calls its step ``steps`` times back to back (after 20 warm-up steps) and
    reports the median step; contenders alternate, ``repeats`` processes each.
    Medians over processes, and each process's figure (this machine is bimodal
    across processes: a whole process runs in a fast or a slow state)."""
    script = str(pathlib.Path(__file__).resolve())
    names = list(w4_contenders())
    per_process: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            done = subprocess.run([sys.executable, script, "--w4-child", name, "--steps", str(steps)],
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise SystemExit(f"W4 child {name!r} failed:\n{done.stderr}")
            per_process[name].append(float(done.stdout.strip().splitlines()[-1]))
    base = statistics.median(per_process["numpy (hand-written)"])
    jax_name = "JAX jit (donated)"
    print(f"W4: one MLP training step, {steps} steps back to back per fresh process, "
          f"median over {repeats} processes each")
    print(f"  {'contender':<28} {'median':>10} {'vs numpy':>9} {'vs JAX':>7}   per process (ms)")
    for name, values in per_process.items():
        median = statistics.median(values)
        vs_jax = (f"{median / statistics.median(per_process[jax_name]):6.2f}x"
                  if jax_name in per_process else "     -")
        print(f"  {name:<28} {median * 1e3:7.3f} ms {median / base:8.2f}x {vs_jax}   "
              + " ".join(f"{v * 1e3:.2f}" for v in values), flush=True)


def _w4_child(name: str, steps: int) -> None:
    run = w4_contenders()[name]()
    for _ in range(20):
        run()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(statistics.median(times))


def _check_w4_agreement(params, x, labels, jax, torch) -> None:
    """One step from the same start in every framework: the losses must agree."""
    from compiler import jit

    losses = {"numpy": float(numpy_step(copy_params(params), x, labels))}
    losses["xla-py"] = float(jit(xla_step())(copy_params(params), x, labels)[1])
    if jax is not None:
        start = jax.tree_util.tree_map(jax.numpy.asarray, copy_params(params))
        jx, jl = jax.numpy.asarray(x), jax.numpy.asarray(labels)
        losses["JAX"] = float(jax_step(jax)(start, jx, jl)[1])
    if torch is not None:
        tparams = {k: torch.tensor(v, requires_grad=True) for k, v in copy_params(params).items()}
        loss = torch_step(torch)(tparams, torch.from_numpy(x),
                                 torch.from_numpy(labels.astype(np.int64)))
        losses["PyTorch"] = float(loss.detach())
    spread = max(losses.values()) - min(losses.values())
    print("W4 first-step losses: " + ", ".join(f"{k} {v:.6f}" for k, v in losses.items()),
          flush=True)
    if spread > 1e-3 * max(abs(v) for v in losses.values()):
        raise SystemExit(f"W4: the frameworks disagree on the loss: {losses}")


# -- W5 --------------------------------------------------------------------------------


def child(kind: str) -> None:
    """One fresh-process measurement: the first call's latency beyond a steady call."""
    params, x, labels = make_problem()
    if kind == "xla":
        from compiler import jit

        step = jit(xla_step(), donate_argnums=0)
        start = time.perf_counter()
        params, loss = step(params, x, labels)
        first = time.perf_counter() - start
        steady = []
        for _ in range(5):
            start = time.perf_counter()
            params, loss = step(params, x, labels)
            steady.append(time.perf_counter() - start)
        import runtime

        stats = runtime.cache_stats()
        extra = {"hits": stats.hits, "misses": stats.misses}
    else:
        jax = optional_jax()
        if kind == "jax-cache":
            jax.config.update("jax_compilation_cache_dir", os.environ["BENCH_JAX_CACHE"])
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        step = jax_step(jax)
        jparams = jax.tree_util.tree_map(jax.numpy.asarray, params)
        jx, jl = jax.numpy.asarray(x), jax.numpy.asarray(labels)
        jx.block_until_ready()
        start = time.perf_counter()
        jparams, loss = step(jparams, jx, jl)
        loss.block_until_ready()
        first = time.perf_counter() - start
        steady = []
        for _ in range(5):
            start = time.perf_counter()
            jparams, loss = step(jparams, jx, jl)
            loss.block_until_ready()
            steady.append(time.perf_counter() - start)
        extra = {}
    print(json.dumps({"first": first, "steady": statistics.median(steady),
                      "latency": first - statistics.median(steady), **extra}))


def _run_child(kind: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--child", kind],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"W5 child {kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def w5(repeats: int) -> None:
    have_jax = optional_jax() is not None
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-w5-") as scratch:
        for r in range(repeats):  # interleaved, like the harness's rounds
            xla_cache = os.path.join(scratch, f"xla{r}")
            bare_cache = os.path.join(scratch, f"bare{r}")
            runs = [("xla-py cold (empty cache)", "xla", {"XLAC_CACHE_DIR": xla_cache}),
                    ("xla-py warm (disk cache)", "xla", {"XLAC_CACHE_DIR": xla_cache}),
                    # As on a machine whose install-time build failed: the kernels
                    # and the thread pool compiled with the program.
                    ("xla-py cold, not installed", "xla",
                     {"XLAC_CACHE_DIR": bare_cache, "XLAC_INSTALLED_OBJECTS": "off"})]
            if have_jax:
                jax_cache = os.path.join(scratch, f"jax{r}")
                runs += [("JAX cold", "jax", {}),
                         ("JAX populate", "jax-cache", {"BENCH_JAX_CACHE": jax_cache}),
                         ("JAX warm (persistent cache)", "jax-cache",
                          {"BENCH_JAX_CACHE": jax_cache})]
            for name, kind, env in runs:
                results.setdefault(name, []).append(_run_child(kind, env))
    results.pop("JAX populate", None)
    base = "JAX cold" if "JAX cold" in results else "xla-py cold (empty cache)"
    base_latency = statistics.median(r["latency"] for r in results[base])
    print("W5: compile latency of the W4 step in a fresh process "
          f"(first call minus a steady call; median of {repeats})")
    print(f"  {'contender':<28} {'latency':>12} {'vs ' + base:>14}   first call / steady call")
    for name, runs in results.items():
        latency = statistics.median(r["latency"] for r in runs)
        first = statistics.median(r["first"] for r in runs)
        steady = statistics.median(r["steady"] for r in runs)
        hits = ""
        if "hits" in runs[-1]:
            hits = f"  cache hits {runs[-1]['hits']} misses {runs[-1]['misses']}"
        print(f"  {name:<28} {latency * 1e3:9.1f} ms {latency / base_latency:13.2f}x   "
              f"{first * 1e3:.1f} ms / {steady * 1e3:.2f} ms{hits}", flush=True)


# -- W6 --------------------------------------------------------------------------------


def w6(rounds: int) -> None:
    from compiler import jit

    x = np.zeros(1, np.float32)
    f = jit(lambda x: x + 1)
    f(x)
    contenders = [Contender("xla-py jit", lambda: f(x)), Contender("numpy", lambda: x + 1)]
    jax = optional_jax()
    if jax is not None:
        jf = jax.jit(lambda x: x + 1)
        jx = jax.numpy.zeros(1, jax.numpy.float32)
        jf(jx).block_until_ready()
        contenders.append(Contender("JAX jit", lambda: jf(jx).block_until_ready()))
    torch = optional_torch()
    if torch is not None:
        tx = torch.zeros(1)
        contenders.append(Contender("PyTorch eager", lambda: tx + 1))
    measure(contenders, rounds=rounds, warmup=100, min_seconds=0.05)
    report("W6: per-call overhead of jit(lambda x: x + 1) on f32[1]", contenders, "xla-py jit")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="W4,W5,W6", help="comma-separated subset of W4,W5,W6")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (W4, W6)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per W5 contender")
    parser.add_argument("--threads", type=int, help="threads for every library")
    parser.add_argument("--shared-process", action="store_true",
                        help="W4: run every contender in this process (their thread pools "
                             "then compete for the cores)")
    parser.add_argument("--fresh-processes", type=int, default=0, metavar="N",
                        help="W4 as a loop runs it: N fresh processes per contender, "
                             "alternating, each timing --steps back-to-back steps")
    parser.add_argument("--steps", type=int, default=300, help="steps per fresh W4 process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--serve-w4", help=argparse.SUPPRESS)
    parser.add_argument("--w4-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    if args.w4_child:
        if args.threads:
            set_threads(args.threads)
        _w4_child(args.w4_child, args.steps)
        return
    if args.serve_w4:
        if args.threads:
            set_threads(args.threads)
        serve(w4_contenders()[args.serve_w4]())
        return
    if args.threads:
        set_threads(args.threads)
    wanted = {w.strip().upper() for w in args.only.split(",")}
    print(f"machine: {os.cpu_count()} cores; numpy {np.__version__}", flush=True)
    if "W6" in wanted:
        w6(args.rounds)
    if "W4" in wanted:
        if args.fresh_processes:
            w4_fresh_processes(args.fresh_processes, args.steps)
        else:
            w4(args.rounds, args.shared_process)
    if "W5" in wanted:
        w5(args.repeats)


if __name__ == "__main__":
    main()
