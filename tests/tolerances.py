"""How close two results must be, from what XLA and Adam promise rather than what one CPU printed.

XLA promises bit-identical results only for one compiled program run again on one machine. Two
programs that compute the same function (a vmapped step and its single-seed twin, a scanned epoch
and a Python loop of steps, a sharded and a plain step, two processes and one) fuse and order their
reductions differently, and the kernels chosen depend on the CPU (AVX2, AVX-512, AMX) and on its
thread count. Adam then amplifies the difference: its update is about lr * m / (sqrt(v) + eps), so
where a gradient is ~0 the sign of float32 rounding noise (~1e-8, as large as eps) decides a step of
up to lr, and every later step compounds it. No float32 tolerance holds on every CPU.

So programs that train several steps are compared in float64 (``model.dtype="float64"`` under
``jax.enable_x64``): rounding noise is then ~1e-16 relative, a gradient of that size is far below
Adam's eps = 1e-8 and moves its weight by ~lr * 1e-8, and nothing is flipped. Bound: a reordered sum
of n = 12,544 terms (BatchNorm over B*H*W) moves by at most n * 2.2e-16 ~ 3e-12 relative; through
Adam's largest gain near g ~ eps (lr / eps = 1e6) that is ~3e-6 of lr per step, so ``FLOAT64_CROSS_PROGRAM``
(1e-7) holds for tens of steps with room, while a real fault (another data order, key or
all-reduce) moves weights by ~lr = 1e-2. Float32 programs are compared over one step on what
Adam does not touch (loss, gradient norm, BatchNorm statistics): ``ONE_FLOAT32_STEP``, ~1,000 ulps.
Seeds vmapped together are compared that way only: with the library's compiler options (YNNPACK off)
XLA:CPU (jaxlib 0.10.2) computes wrong float64 kernel gradients for the grouped convolutions a vmap
over two or more seeds makes (correlation 0.90 with the eager gradient; float32, a population of
one and XLA's default options are right), so ``population.each_member`` runs float64 seeds in turn.
On a GPU, float32 convolutions and matrix products run in TF32 unless asked otherwise, so the
``equivalence`` tests run under ``jax.default_matmul_precision("highest")`` (``tests/conftest.py``).
What the code promises to be bit-identical (a resumed run, the same program twice) is compared exactly.
"""

FLOAT64_CROSS_PROGRAM = dict(rtol=1e-7, atol=1e-7)
ONE_FLOAT32_STEP = dict(rtol=1e-4, atol=1e-5)
