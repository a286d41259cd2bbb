"""Fusion workloads side by side: xla-py vs numpy, JAX jit and PyTorch.

    python benchmarks/fusion.py [--rounds 15] [--only w1,w2,layernorm,...] [--threads 1,2]
                                [--torch-compile]
                                [--libraries jax,torch]

W1 gelu: ``y = 0.5*x*(1+tanh(0.7978845608*(x+0.044715*x*x*x)))`` on x f32[4194304].
W2 softmax cross-entropy forward and backward: logits f32[4096,1000], int32
labels; mean loss and d loss / d logits (``functional.value_and_grad`` of
``nn.cross_entropy`` under ``jit``; JAX ``jit(value_and_grad)``; PyTorch eager
``F.cross_entropy`` + ``autograd.grad``; numpy written out by hand).

Every contender runs in one process, rounds interleaved (benchmarks/harness.py).
Each thread count of ``--threads`` (default 1) gets a fresh subprocess, because
the libraries fix their thread pools when imported (benchmarks/matmul.py's
``child_environment``: XLAC_NUM_THREADS, OpenBLAS/OpenMP, torch, and for one
thread XLA's ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``).
With two threads each sample starts after ``--settle`` seconds of sleep, so the
previous library's spinning workers are idle. Every contender allocates its
results. ``numpy copy`` copies the workload's input bytes into a new array (read
+ write of as many bytes as the workload streams), the memory-bandwidth
reference: its time / a contender's time is the fraction of the bandwidth bound
reached. Each row also shows the median process CPU time per call, its ratio to
numpy's and its bandwidth fraction: other users of this shared machine inflate
wall time (waiting for a core), not CPU time. JAX may still use a second thread
(its CPU time then exceeds its wall time). ``torch.compile`` is only tried with
--torch-compile (its first compile takes a while). Kernel counts are the
top-level equations of the optimised IR (one kernel each). The issue's targets
on one thread: W1 <= 0.2x numpy's time in exactly 1 kernel, W2 <= 0.25x numpy's
time in <= 4 kernels; on two (issue 5): W1 no slower than JAX, W2 <= 0.7x JAX's time.

Held-out training-step workloads (issue 4's check), each against numpy, JAX jit
and PyTorch eager with its kernel count and the ideal one (one pass over the
data): layernorm, softmax, logsumexp, adam, bias_relu, mse, bce (see
``_workloads``; f32[4096,1024] activations, 4M-element Adam parameters). Their
bandwidth reference copies as many bytes as the workload reads and writes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.harness import (Contender, measure, optional_jax, optional_torch,  # noqa: E402
                                report, set_threads)
from benchmarks.matmul import child_environment  # noqa: E402
from compiler import functional, jit, nn  # noqa: E402
from compiler.frontend import numpy_api as xnp  # noqa: E402
from compiler.passes.fuse import kernel_count  # noqa: E402
from compiler.pipeline import optimize  # noqa: E402

N1 = 4194304
N2, C2 = 4096, 1000


def gelu_xla(x):
    return 0.5 * x * (1 + xnp.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def gelu_numpy(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x * x * x)))


def ce_xla(logits, labels):
    return nn.cross_entropy(logits, labels)


def ce_numpy(logits, labels):
    """Mean softmax cross-entropy and its gradient, the way one writes it in numpy."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = np.mean(np.log(s[:, 0]) - shifted[rows, labels])
    grad = e / s
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad


def _kernels(jitted, *args) -> int:
    return kernel_count(optimize(jitted.lower(*args).function))


def _max_diff(got, want) -> float:
    return max(float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))))
               for g, w in zip(got, want, strict=True))


def _cpu_seconds(contenders, rounds: int) -> dict[str, float]:
    """Median process CPU seconds per call, rounds interleaved like the harness.

    On this shared 2-core machine other users' processes take CPU away from the
    benchmark; wall time then includes waiting, CPU time does not (it does include
    all of this process's threads, e.g. JAX's worker)."""
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(rounds):
        for c in contenders:
            start = time.process_time()
            c.run()
            samples[c.name].append(time.process_time() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def _table(title, contenders, copy_name, checks, rounds):
    copy = next(c for c in contenders if c.name == copy_name).median
    cpu = _cpu_seconds(contenders, rounds)
    cpu_numpy, cpu_copy = cpu["numpy"], cpu[copy_name]

    def extra(c):
        note = (f"{copy / c.median:5.0%} of bandwidth | cpu {cpu[c.name] * 1e3:7.3f} ms "
                f"{cpu[c.name] / cpu_numpy:5.2f}x {cpu_copy / cpu[c.name]:5.0%}")
        if c.name in checks:
            note += f"  max |diff vs numpy| {checks[c.name]:.1e}"
        return note

    print("  (wall-clock medians and ratios; then the same from process CPU time)")
    return report(title, contenders, "numpy", extra)


_LIBRARIES = {"jax", "torch"}  # --libraries


def _threads() -> int:
    return int(os.environ.get("XLAC_NUM_THREADS", "1"))


def _setting() -> str:
    threads = _threads()
    return (f"{threads} thread{'s' if threads > 1 else ''}, "
            f"load average {os.getloadavg()[0]:.2f}")


def w1(rounds: int, torch_compile: bool, settle: float = 0.0) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N1).astype(np.float32)
    ours = jit(gelu_xla)
    want = gelu_numpy(x)
    checks = {"xla-py jit": _max_diff([ours(x)], [want])}
    contenders = [
        Contender("xla-py jit", lambda: ours(x)),
        Contender("numpy", lambda: gelu_numpy(x)),
        Contender("numpy copy (same bytes)", lambda: x.copy()),
    ]
    jax = optional_jax() if "jax" in _LIBRARIES else None
    if jax is not None:
        import jax.numpy as jnp

        xj = jax.device_put(x)
        jgelu = jax.jit(
            lambda v: 0.5 * v * (1 + jnp.tanh(0.7978845608 * (v + 0.044715 * v * v * v))))
        checks["jax.jit"] = _max_diff([jgelu(xj)], [want])
        contenders.append(Contender("jax.jit", lambda: jgelu(xj).block_until_ready()))
    torch = optional_torch() if "torch" in _LIBRARIES else None
    if torch is not None:
        xt = torch.from_numpy(x)

        def teager(v):
            return 0.5 * v * (1 + torch.tanh(0.7978845608 * (v + 0.044715 * v * v * v)))

        checks["torch eager"] = _max_diff([teager(xt).numpy()], [want])
        contenders.append(Contender("torch eager", lambda: teager(xt)))
        contenders.append(Contender("torch F.gelu(tanh)",
                                    lambda: torch.nn.functional.gelu(xt, approximate="tanh")))
        if torch_compile:
            tcomp = torch.compile(teager)
            tcomp(xt)
            contenders.append(Contender("torch.compile", lambda: tcomp(xt)))
    measure(contenders, rounds=rounds, settle=settle)
    _table(f"W1 gelu, x f32[{N1}] ({_setting()}); xla-py kernels: {_kernels(ours, x)}",
           contenders, "numpy copy (same bytes)", checks, rounds)


def w2(rounds: int, torch_compile: bool, settle: float = 0.0) -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((N2, C2)) * 3).astype(np.float32)
    labels = rng.integers(0, C2, N2).astype(np.int32)
    ours = jit(functional.value_and_grad(ce_xla))
    want = ce_numpy(logits, labels)
    checks = {"xla-py jit": _max_diff(ours(logits, labels), want)}
    contenders = [
        Contender("xla-py jit", lambda: ours(logits, labels)),
        Contender("numpy", lambda: ce_numpy(logits, labels)),
        Contender("numpy copy (same bytes)", lambda: logits.copy()),
    ]
    jax = optional_jax() if "jax" in _LIBRARIES else None
    if jax is not None:
        import jax.numpy as jnp

        def jloss(z, y):
            picked = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - picked)

        jvg = jax.jit(jax.value_and_grad(jloss))
        zj, yj = jax.device_put(logits), jax.device_put(labels)
        checks["jax.jit"] = _max_diff(jvg(zj, yj), want)
        contenders.append(Contender("jax.jit", lambda: jax.block_until_ready(jvg(zj, yj))))
    torch = optional_torch() if "torch" in _LIBRARIES else None
    if torch is not None:
        zt = torch.from_numpy(logits).requires_grad_()
        yt = torch.from_numpy(labels).long()

        def teager():
            loss = torch.nn.functional.cross_entropy(zt, yt)
            (grad,) = torch.autograd.grad(loss, zt)
            return loss, grad

        loss_t, grad_t = teager()
        checks["torch eager"] = _max_diff([loss_t.detach().numpy(), grad_t.numpy()], want)
        contenders.append(Contender("torch eager", teager))
        if torch_compile:
            tcomp = torch.compile(teager)
            tcomp()
            contenders.append(Contender("torch.compile", tcomp))
    measure(contenders, rounds=rounds, settle=settle)
    _table(f"W2 softmax cross-entropy fwd+bwd, logits f32[{N2},{C2}] ({_setting()}); "
           f"xla-py kernels: {_kernels(ours, logits, labels)}",
           contenders, "numpy copy (same bytes)", checks, rounds)


# -- held-out training-step workloads (issue 4, "how it will be checked") ---------------------
#
# Each is the forward (and backward where a training step needs it) of a layer or
# loss written as model code: autodiff through ``functional.value_and_grad`` for
# xla-py and JAX, ``torch.autograd`` for PyTorch, numpy written out by hand. A
# backward takes a given cotangent ``dy`` by differentiating ``sum(y * dy)``, which
# also yields that scalar (xla-py and JAX) besides y and the gradients.
# ``ideal`` is the kernel count of a perfect fusion: one pass over the data.

N3, C3 = 4096, 1024     # activations: 16 MiB per f32 array
N4 = 4194304            # one parameter tensor (Adam)
_EPS = 1e-5
_ADAM = dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, t=3)


def _layernorm(fnp, x, gamma, beta):
    mu = fnp.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    var = fnp.mean(xc * xc, axis=-1, keepdims=True)
    return xc / fnp.sqrt(var + _EPS) * gamma + beta


def layernorm_numpy(x, gamma, beta, dy):
    """y, sum(y*dy), dx, dgamma, dbeta, written the way one does in numpy."""
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    rstd = 1 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + _EPS)
    xhat = xc * rstd
    y = xhat * gamma + beta
    dxhat = dy * gamma
    dx = rstd * (dxhat - dxhat.mean(axis=1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
    return y, float(np.sum(y * dy)), dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def _adam_step(fnp, p, g, m, v):
    h = _ADAM
    m = h["b1"] * m + (1 - h["b1"]) * g
    v = h["b2"] * v + (1 - h["b2"]) * (g * g)
    m_hat = m / (1 - h["b1"] ** h["t"])
    v_hat = v / (1 - h["b2"] ** h["t"])
    return p - h["lr"] * m_hat / (fnp.sqrt(v_hat) + h["eps"]), m, v


def _bce(fnp, z, t):
    """Mean binary cross-entropy of sigmoid(z) against t, from the logits (stable)."""
    return fnp.mean(fnp.maximum(z, 0) - z * t + fnp.log1p(fnp.exp(-fnp.abs(z))))


def _bce_numpy(z, t):
    s = 1 / (1 + np.exp(-z))
    return float(_bce(np, z, t)), (s - t) / z.size


class Workload:
    """One held-out workload: inputs, the same computation for each library, the
    ideal kernel count and the bytes a single pass reads and writes."""

    def __init__(self, key, title, args, xla, numpy_fn, jax_fn, torch_fn, ideal):
        self.key, self.title, self.args = key, title, args
        self.xla, self.numpy_fn, self.jax_fn, self.torch_fn = xla, numpy_fn, jax_fn, torch_fn
        self.ideal = ideal


def _workloads() -> dict[str, Callable[[], Workload]]:
    rng = np.random.default_rng(0)

    def acts(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def layernorm():
        x, gamma, beta, dy = acts(N3, C3), acts(C3), acts(C3), acts(N3, C3)

        def loss(fnp):
            def f(x, gamma, beta, dy):
                y = _layernorm(fnp, x, gamma, beta)
                return fnp.sum(y * dy), y
            return f

        def xla(x, gamma, beta, dy):
            (total, y), grads = functional.value_and_grad(loss(xnp), argnums=(0, 1, 2),
                                                          has_aux=True)(x, gamma, beta, dy)
            return (y, total, *grads)

        def jax_fn(jax, jnp):
            vg = jax.value_and_grad(loss(jnp), argnums=(0, 1, 2), has_aux=True)
            return jax.jit(lambda *a: (lambda r: (r[0][1], r[0][0], *r[1]))(vg(*a)))

        def torch_fn(torch):
            xt, gt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, gamma, beta))
            dyt = torch.from_numpy(dy)

            def run():
                y = torch.nn.functional.layer_norm(xt, (C3,), gt, bt, eps=_EPS)
                return (y, *torch.autograd.grad(y, (xt, gt, bt), dyt))
            return run, (0, 2, 3, 4)

        return Workload("layernorm", f"layernorm fwd+bwd, x f32[{N3},{C3}], gamma, beta "
                        f"f32[{C3}]: y, dx, dgamma, dbeta", (x, gamma, beta, dy), xla,
                        layernorm_numpy, jax_fn, torch_fn, ideal=1)

    def softmax():
        x = acts(N3, C3) * 3

        def numpy_fn(x):
            e = np.exp(x - x.max(axis=1, keepdims=True))
            return (e / e.sum(axis=1, keepdims=True),)

        return Workload("softmax", f"softmax over rows, x f32[{N3},{C3}]", (x,),
                        lambda x: (nn.softmax(x),), numpy_fn,
                        lambda jax, jnp: jax.jit(lambda x: (jax.nn.softmax(x, axis=1),)),
                        lambda torch: ((lambda xt: lambda: (torch.softmax(xt, 1),))(
                            torch.from_numpy(x)), None), ideal=1)

    def logsumexp():
        x = acts(N3, C3) * 3

        def numpy_fn(x):
            m = x.max(axis=1, keepdims=True)
            return (np.log(np.exp(x - m).sum(axis=1)) + m[:, 0],)

        return Workload("logsumexp", f"row-wise logsumexp, x f32[{N3},{C3}] -> f32[{N3}]", (x,),
                        lambda x: (nn.logsumexp(x, axis=-1),), numpy_fn,
                        lambda jax, jnp: jax.jit(lambda x: (jax.nn.logsumexp(x, axis=1),)),
                        lambda torch: ((lambda xt: lambda: (torch.logsumexp(xt, 1),))(
                            torch.from_numpy(x)), None), ideal=1)

    def adam():
        p, g, m = acts(N4), acts(N4), acts(N4) * 0.1
        v = np.abs(acts(N4)) * 0.1

        def torch_fn(torch):
            pt, gt, mt, vt = (torch.from_numpy(a) for a in (p, g, m, v))
            # torch.optim.Adam updates in place; its functional form on copies
            # allocates results like every other contender.
            return (lambda: _adam_step(torch, pt, gt, mt, vt)), None

        return Workload("adam", f"Adam update, p, g, m, v f32[{N4}] -> p, m, v", (p, g, m, v),
                        lambda *a: _adam_step(xnp, *a), lambda *a: _adam_step(np, *a),
                        lambda jax, jnp: jax.jit(lambda *a: _adam_step(jnp, *a)),
                        torch_fn, ideal=1)

    def bias_relu():
        x, bias, dy = acts(N3, C3), acts(C3), acts(N3, C3)

        def loss(fnp, relu):
            def f(x, bias, dy):
                y = relu(x + bias)
                return fnp.sum(y * dy), y
            return f

        def xla(x, bias, dy):
            (total, y), grads = functional.value_and_grad(loss(xnp, nn.relu), argnums=(0, 1),
                                                          has_aux=True)(x, bias, dy)
            return (y, total, *grads)

        def numpy_fn(x, bias, dy):
            y = np.maximum(x + bias, 0)
            dx = np.where(y > 0, dy, 0)
            return y, float(np.sum(y * dy)), dx, dx.sum(axis=0)

        def jax_fn(jax, jnp):
            vg = jax.value_and_grad(loss(jnp, jax.nn.relu), argnums=(0, 1), has_aux=True)
            return jax.jit(lambda *a: (lambda r: (r[0][1], r[0][0], *r[1]))(vg(*a)))

        def torch_fn(torch):
            xt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, bias))
            dyt = torch.from_numpy(dy)

            def run():
                y = torch.relu(xt + bt)
                return (y, *torch.autograd.grad(y, (xt, bt), dyt))
            return run, (0, 2, 3)

        return Workload("bias_relu", f"bias + ReLU fwd+bwd, x f32[{N3},{C3}], b f32[{C3}]: "
                        "y, dx, db", (x, bias, dy), xla, numpy_fn, jax_fn, torch_fn, ideal=1)

    def mse():
        pred, target = acts(N3, C3), acts(N3, C3)

        def numpy_fn(pred, target):
            d = pred - target
            return float(np.mean(d * d)), d * (2 / d.size)

        def torch_fn(torch):
            pt = torch.from_numpy(pred).requires_grad_()
            tt = torch.from_numpy(target)

            def run():
                loss = torch.nn.functional.mse_loss(pt, tt)
                return (loss, *torch.autograd.grad(loss, pt))
            return run, None

        return Workload("mse", f"mean squared error fwd+bwd, f32[{N3},{C3}]: loss, dpred",
                        (pred, target),
                        lambda p, t: functional.value_and_grad(nn.mse)(p, t), numpy_fn,
                        lambda jax, jnp: jax.jit(jax.value_and_grad(
                            lambda p, t: jnp.mean((p - t) ** 2))), torch_fn, ideal=1)

    def bce():
        z = acts(N3, C3) * 2
        t = (rng.random((N3, C3)) < 0.5).astype(np.float32)

        def torch_fn(torch):
            zt = torch.from_numpy(z).requires_grad_()
            tt = torch.from_numpy(t)

            def run():
                loss = torch.nn.functional.binary_cross_entropy_with_logits(zt, tt)
                return (loss, *torch.autograd.grad(loss, zt))
            return run, None

        return Workload("bce", f"sigmoid binary cross-entropy fwd+bwd, logits f32[{N3},{C3}]: "
                        "loss, dlogits", (z, t),
                        lambda z, t: functional.value_and_grad(lambda a, b: _bce(xnp, a, b))(z, t),
                        _bce_numpy,
                        lambda jax, jnp: jax.jit(jax.value_and_grad(lambda a, b: _bce(jnp, a, b))),
                        torch_fn, ideal=1)

    return {"layernorm": layernorm, "softmax": softmax, "logsumexp": logsumexp, "adam": adam,
            "bias_relu": bias_relu, "mse": mse, "bce": bce}


def _bytes(values) -> int:
    return sum(np.asarray(v).nbytes for v in values)


def run_workload(w: Workload, rounds: int, settle: float = 0.0) -> None:
    """Time one held-out workload against numpy, JAX and PyTorch (see the module doc)."""
    ours = jit(w.xla)
    want = w.numpy_fn(*w.args)
    checks = {"xla-py jit": _max_diff(ours(*w.args), want)}
    # The bandwidth reference copies as many bytes as one pass reads and writes.
    streamed = np.zeros((_bytes(w.args) + _bytes(want)) // 8, np.float32)
    contenders = [
        Contender("xla-py jit", lambda: ours(*w.args)),
        Contender("numpy", lambda: w.numpy_fn(*w.args)),
        Contender("numpy copy (same bytes)", streamed.copy),
    ]
    jax = optional_jax() if "jax" in _LIBRARIES else None
    if jax is not None:
        import jax.numpy as jnp

        fj = w.jax_fn(jax, jnp)
        placed = [jax.device_put(a) for a in w.args]
        checks["jax.jit"] = _max_diff(jax.tree_util.tree_leaves(fj(*placed)), want)
        contenders.append(Contender("jax.jit", lambda: jax.block_until_ready(fj(*placed))))
    torch = optional_torch() if "torch" in _LIBRARIES else None
    if torch is not None:
        run, picked = w.torch_fn(torch)
        got = [t.detach().numpy() for t in run()]
        expected = want if picked is None else [want[i] for i in picked]
        checks["torch eager"] = _max_diff(got, expected)
        contenders.append(Contender("torch eager", run))
    measure(contenders, rounds=rounds, settle=settle)
    _table(f"{w.title} ({_setting()}); xla-py kernels: {_kernels(ours, *w.args)} "
           f"(ideal {w.ideal}); {_bytes(w.args) + _bytes(want) >> 20} MiB streamed",
           contenders, "numpy copy (same bytes)", checks, rounds)


HELD_OUT = ("layernorm", "softmax", "logsumexp", "adam", "bias_relu", "mse", "bce")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", default="w1,w2," + ",".join(HELD_OUT),
                        help="comma-separated: w1, w2, " + ", ".join(HELD_OUT))
    parser.add_argument("--threads", default="1", help="comma-separated thread counts")
    parser.add_argument("--settle", type=float, default=0.05,
                        help="seconds of sleep before each sample with 2+ threads")
    parser.add_argument("--torch-compile", action="store_true",
                        help="also time torch.compile (slow to compile)")
    parser.add_argument("--libraries", default="jax,torch",
                        help="other contenders besides xla-py and numpy (comma-separated; "
                             "'none' for neither)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _LIBRARIES.intersection_update(args.libraries.split(","))
    chosen = {w.strip() for w in args.only.split(",")}
    unknown = chosen - {"w1", "w2", *HELD_OUT}
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; "
                     f"choose from w1, w2, {', '.join(HELD_OUT)}")
    if not args.child:
        for threads in (int(t) for t in args.threads.split(",")):
            command = [sys.executable, str(Path(__file__).resolve()), "--child",
                       "--rounds", str(args.rounds), "--only", args.only,
                       "--settle", str(args.settle), "--libraries", args.libraries]
            command += ["--torch-compile"] if args.torch_compile else []
            subprocess.run(command, env=child_environment(threads), check=True)
        return
    threads = _threads()
    set_threads(threads)
    settle = args.settle if threads > 1 else 0.0
    if "w1" in chosen:
        w1(args.rounds, args.torch_compile, settle)
        print()
    if "w2" in chosen:
        w2(args.rounds, args.torch_compile, settle)
        print()
    workloads = _workloads()
    for key in HELD_OUT:
        if key in chosen:
            run_workload(workloads[key](), args.rounds, settle)
            print()


if __name__ == "__main__":
    main()
