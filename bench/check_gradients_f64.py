"""Do the CNN's fast paths give the plain gradients at the REAL sizes? Checked in float64.

  python -m bench.check_gradients_f64 [--batch 32] [--image 32]

In float32, two correct programs differ by more than round-off: a pre-activation within
round-off of 0 (ReLU) or a near-tie in a max-pool window takes the other branch, and one such
element moves a kernel gradient by up to a few % (measured: XLA's own float32 gradient is 2.6%
away from its float64 one at batch 64, 2e-6 at batch 32). So a float32 comparison at real sizes
cannot tell a wrong fast path from a flipped branch. In float64 every path must agree with
the plain one to ~1e-12. Runs each conv implementation alone and as a 2-member vmap ensemble,
on real CIFAR-10 images (../shared) when present, random ones otherwise. Exit status 1 on a
mismatch.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from lwi_jax.models.resnet_cnn import ResidualCNN  # noqa: E402
from lwi_jax.parallel import programs  # noqa: E402

CIFAR = os.path.join(REPO, "..", "shared", "data", "cifar10", "cifar-10-batches-py")


def images(batch: int, size: int):
  if size == 32 and os.path.isdir(CIFAR):
    from lwi_jax.data import cifar10
    split = cifar10.read_python_batch(os.path.join(CIFAR, "data_batch_1"))
    return jnp.asarray(split.inputs[:batch]), jnp.asarray(split.labels[:batch]), "CIFAR-10"
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)),
          jnp.asarray(rng.integers(0, 10, batch).astype(np.int32)), "random")


@functools.lru_cache(maxsize=None)
def _initial_variables(widths, image_shape):
  """The same (float32-drawn) initial values for every impl and dtype: initializers draw
  different numbers in float64. Initialised once (the init program compiles slowly in x64)."""
  model = ResidualCNN(10, widths=widths, dense_width=256, conv_impl="xla", dropout_rate=0.0,
                      dtype=jnp.float32)
  return programs.jit_init(lambda: model.init(jax.random.key(0), jnp.zeros(image_shape, jnp.uint8),
                                             train=False))()


def gradients(impl: str, dtype, x, y, members: int, widths):
  model = ResidualCNN(10, widths=widths, dense_width=256, conv_impl=impl, dropout_rate=0.0,
                      dtype=dtype)
  variables = jax.tree.map(lambda v: v.astype(dtype),
                           _initial_variables(tuple(widths), (1,) + tuple(x.shape[1:])))

  def loss(params):
    logits, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                            train=True, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  grad = jax.grad(loss)
  # compiled as a study compiles it (the CPU path's options on CPU)
  opts = dict(programs.compiler_options(
      ml_collections.ConfigDict({"name": "resnet_cnn", "conv_impl": impl}))) or None
  jit = lambda f: jax.jit(f, compiler_options=opts)  # noqa: E731
  if members == 1:
    return jit(grad)(variables["params"])
  stacked = jax.tree.map(lambda p: jnp.stack([p * (1 + 0.1 * i) for i in range(members)]),
                         variables["params"])
  return jax.tree.map(lambda g: g[0], jit(jax.vmap(grad))(stacked))


def worst(got, ref):
  """Largest |difference| of any leaf, relative to that leaf's largest reference element."""
  rows = [(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-300)), jax.tree_util.keystr(p))
          for (p, a), b in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(ref))
          if not (p[-2].key.startswith("Conv3x3") and p[-1].key == "bias")]  # exactly 0 (BN)
  return max(rows)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--image", type=int, default=32)
  p.add_argument("--widths", default="32,64,128")
  p.add_argument("--impls", default="matmul,cpu", help="fast paths checked against lax.conv")
  args = p.parse_args(argv)
  widths = tuple(int(w) for w in args.widths.split(","))
  x, y, source = images(args.batch, args.image)
  print(f"{source} images {tuple(x.shape)}, widths {widths}, jax {jax.__version__}")
  ref = gradients("xla", jnp.float64, x, y, 1, widths)
  f32 = worst(gradients("xla", jnp.float32, x, y, 1, widths), ref)
  print(f"  xla    float32 vs float64: {f32[0]:.1e} ({f32[1]})  <- float32 vs float64 of the same program, for scale")
  failed = False
  for impl in args.impls.split(","):
    for members in (1, 2):
      err, where = worst(gradients(impl, jnp.float64, x, y, members, widths), ref)
      ok = err < 1e-10
      failed |= not ok
      print(f"  {impl:6s} float64, {'alone' if members == 1 else 'vmap K=2'}: {err:.1e} ({where})"
            f"  {'ok' if ok else 'MISMATCH'}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
