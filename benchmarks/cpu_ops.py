"""Where XLA:CPU spends the train step: each 3x3 convolution of the CNN (forward, input gradient,
kernel gradient) under XLA's default options (YNNPACK convolutions) and the library's
``train.COMPILER_OPTIONS`` (XLA's Eigen convolutions), beside other formulations of the kernel
gradient and PyTorch's convolution on the same threads; then each max-pool's gradient, as
``nn.max_pool`` and as ``models.max_pool_2x2`` on the CPU.

Every operation is its own jitted program on device-resident random data; the operations take turns,
``--repeats`` rounds of ``--calls`` calls each, and an operation's time is its best round. Results
are checked against ``lax.conv_general_dilated``'s gradient before timing.

    python benchmarks/cpu_ops.py --threads 2
    python benchmarks/cpu_ops.py --threads 2 --layers 1 --pools 0   # the 28x28 convolution and pool
"""

from __future__ import annotations

import argparse
import math
import os
import time

from throughput import limit_threads  # beside this file; before JAX starts


def conv(x, w):
    from jax import lax
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def padded_shifts(x):
    """The 9 windows of a 3x3 SAME convolution: ``[x_pad[:, a:a+H, b:b+W] for a, b]``."""
    import jax.numpy as jnp
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [xp[:, a:a + h, b:b + w] for a in range(3) for b in range(3)]


def kernel_gradient_forms():
    """Kernel gradient ``(x, w, g) -> dL/dw [3, 3, I, O]`` of ``conv`` in several formulations."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def autodiff(x, w, g):
        return jax.vjp(lambda k: conv(x, k), w)[1](g)[0]

    def shifted_matmuls(x, w, g):  # 9 matmuls [I, BHW] @ [BHW, O]
        return jnp.stack([jnp.einsum("bhwi,bhwo->io", s, g) for s in padded_shifts(x)]).reshape(w.shape)

    def im2col(x, w, g):  # one matmul [9I, BHW] @ [BHW, O]
        patches = jnp.concatenate(padded_shifts(x), axis=-1).reshape(-1, 9 * x.shape[-1])
        return (patches.T @ g.reshape(-1, g.shape[-1])).reshape(w.shape)

    def as_3d(x, w, g):  # a third, unit spatial axis: YNNPACK takes 2-D convolutions only
        conv3 = lambda a, k: lax.conv_general_dilated(a, k, (1, 1, 1), "SAME",
                                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
        return jax.vjp(lambda k: conv3(x[:, None], k), w[None])[1](g[:, None])[0][0]

    return {"autodiff": autodiff, "9 shifted matmuls": shifted_matmuls, "im2col matmul": im2col, "3-D conv": as_3d}


def jax_ops(compiler_options: dict | None, label: str, kernel_forms: bool):
    """name -> jitted ``(x, w, g) -> array``: forward, input gradient, kernel gradient(s)."""
    import jax

    forms = kernel_gradient_forms()
    ops = {"forward": lambda x, w, g: conv(x, w),
           "input grad": lambda x, w, g: jax.vjp(lambda a: conv(a, w), x)[1](g)[0],
           "kernel grad": forms["autodiff"]}
    if kernel_forms:
        ops.update({f"kernel grad, {name}": f for name, f in forms.items() if name != "autodiff"})
    return {f"JAX {label}: {name}": jax.jit(f, compiler_options=compiler_options) for name, f in ops.items()}


def torch_ops(x, w, g):
    """PyTorch's channels-last convolution on the same data: forward, and forward with both gradients."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    tx = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    tw = torch.from_numpy(np.asarray(w)).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    tg = torch.from_numpy(np.asarray(g)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    tx.requires_grad_(), tw.requires_grad_()

    def backward():
        return torch.autograd.grad(F.conv2d(tx, tw, padding=1), (tx, tw), tg)

    return {"torch: forward": lambda: F.conv2d(tx.detach(), tw.detach(), padding=1),
            "torch: forward + both grads": backward}


def time_ops(ops: dict, repeats: int, calls: int) -> dict[str, float]:
    """Best seconds per call of each op, the ops taking turns."""
    import jax

    best = dict.fromkeys(ops, math.inf)
    for name, op in ops.items():  # first call: compile
        jax.block_until_ready(op())
    for _ in range(repeats):
        for name, op in ops.items():
            start = time.perf_counter()
            for _ in range(calls):
                out = op()
            jax.block_until_ready(out)
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return best


def pool_ops(compiler_options: dict):
    """name -> jitted ``(x, g) -> dL/dx`` of the 2x2 max-pool after a ReLU, two formulations."""
    import flax.linen as nn
    import jax

    from jaxcnn.model import max_pool_2x2

    forms = {"nn.max_pool": lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), "max_pool_2x2": max_pool_2x2}
    return {f"JAX library: {name} grad": jax.jit(lambda x, g, f=f: jax.vjp(lambda a: f(jax.nn.relu(a)), x)[1](g)[0],
                                                 compiler_options=compiler_options) for name, f in forms.items()}


def report(title: str, best: dict[str, float], base: str, totals: dict[str, float]) -> None:
    print(f"\n{title}; load average {os.getloadavg()[0]:.1f}", flush=True)
    for name, seconds in best.items():
        totals[name] = totals.get(name, 0.0) + seconds
        print(f"  {name:45s} {seconds * 1e3:9.1f} ms  {seconds / best[base]:6.2f}x {base}", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, help="CPU threads (default: every CPU this process may use)")
    p.add_argument("--batch", type=int, default=128, help="(default: %(default)s)")
    p.add_argument("--layers", default="0,1,2,3,4,5",
                   help="which of the CNN's 6 convolutions, 0-based (default: %(default)s)")
    p.add_argument("--pools", default="0,1,2", help="which of the 3 max-pools, 0-based (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="rounds (default: %(default)s)")
    p.add_argument("--calls", type=int, default=2, help="calls per op per round (default: %(default)s)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    args = p.parse_args(argv)
    threads = limit_threads(args.threads)
    if not args.no_torch:
        import torch
        torch.set_num_threads(threads)
    import jax
    import numpy as np

    from jaxcnn.training.steps import COMPILER_OPTIONS
    from machine import describe

    print(describe(threads), flush=True)
    layers = [(28, 1, 32), (28, 32, 32), (14, 32, 64), (14, 64, 64), (7, 64, 128), (7, 128, 128)]
    totals: dict[str, float] = {}
    for index in (int(i) for i in args.layers.split(",")):
        side, cin, cout = layers[index]
        rng = np.random.default_rng(index)
        x, w, g = (jax.device_put(rng.standard_normal(s, dtype=np.float32)) for s in
                   ((args.batch, side, side, cin), (3, 3, cin, cout), (args.batch, side, side, cout)))
        jitted = {**jax_ops(None, "XLA default", kernel_forms=True), **jax_ops(COMPILER_OPTIONS, "library", False)}
        reference = np.asarray(jitted["JAX XLA default: kernel grad"](x, w, g))
        for name, f in jitted.items():
            if "kernel grad" in name:
                np.testing.assert_allclose(np.asarray(f(x, w, g)), reference, rtol=1e-4,
                                           atol=1e-4 * np.abs(reference).max(), err_msg=name)
        ops = {name: (lambda f=f: f(x, w, g)) for name, f in jitted.items()}
        if not args.no_torch:
            ops.update(torch_ops(x, w, g))
        report(f"conv {index}: batch {args.batch}, {side}x{side}, {cin} -> {cout} channels",
               time_ops(ops, args.repeats, args.calls), "JAX library: forward", totals)
    for index in (int(i) for i in args.pools.split(",") if i):
        side, channels = [(28, 32), (14, 64), (7, 128)][index]
        rng = np.random.default_rng(10 + index)
        x, g = (jax.device_put(rng.standard_normal(s, dtype=np.float32)) for s in
                ((args.batch, side, side, channels), (args.batch, side // 2, side // 2, channels)))
        jitted = pool_ops(COMPILER_OPTIONS)
        grads = [np.asarray(f(x, g)) for f in jitted.values()]
        np.testing.assert_array_equal(grads[0], grads[1])
        report(f"max-pool {index}: batch {args.batch}, {side}x{side}, {channels} channels",
               time_ops({name: (lambda f=f: f(x, g)) for name, f in jitted.items()}, args.repeats, args.calls),
               "JAX library: max_pool_2x2 grad", totals)
    print(f"\nall: convolutions {args.layers}, max-pools {args.pools}; load average {os.getloadavg()[0]:.1f}\n")
    print("| operation | ms, summed | / library conv forward |\n|---|---:|---:|")
    base = totals.get("JAX library: forward", math.nan)
    for name, seconds in totals.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main()
