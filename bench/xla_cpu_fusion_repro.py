"""XLA:CPU miscompile found while testing the fast paths: plain JAX, float64, no lwi_jax code.

  python -m bench.xla_cpu_fusion_repro            # prints the error of jit vs eager per size
  python -m bench.xla_cpu_fusion_repro --sizes 10 # one image size only
  XLA_FLAGS=--xla_cpu_use_fusion_emitters=false python -m bench.xla_cpu_fusion_repro

A residual block (conv -> BN -> ReLU, x0 + relu(BN(im2col_conv(x0))), reshape+max 2x2 pool, conv)
under `jax.jit` gives the FIRST layer's kernel gradient wrong by ~20% (float64 too, so not
round-off) on 10x10 and 12x12 images; eager execution and `--xla_cpu_use_fusion_emitters=false`
give the right one; 16x16 and 32x32 (the CIFAR size) come out right. The same happens to the
(then) hybrid convolution under vmap on those sizes. lwi-jax's unit tests therefore use 16x16 images, and
BUILD_NOTES.md records the float64 check of the production shapes (bench/check_gradients_f64.py).
Exit status 1 if any size is wrong, so this can tell when an XLA upgrade fixes it.
"""

from __future__ import annotations

import argparse
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def conv_xla(x, k):
  return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_im2col(x, k):
  n, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate([xp[:, a:a + h, b:b + w] for a in range(3) for b in range(3)], -1)
  return patches @ k.reshape(9 * c, -1)


def batch_norm(z):
  mean = z.mean((0, 1, 2))
  var = jnp.maximum(0.0, (z * z).mean((0, 1, 2)) - mean * mean)
  return (z - mean) * jax.lax.rsqrt(var + 1e-5)


def pool(y):
  n, h, w, c = y.shape
  return y.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def loss(kernels, x):
  k0, k1, k2 = kernels
  x0 = jax.nn.relu(batch_norm(conv_xla(x, k0)))
  y = pool(x0 + jax.nn.relu(batch_norm(conv_im2col(x0, k1))))
  h = conv_xla(y, k2)
  return jnp.sum(h * jnp.cos(jnp.arange(h.size, dtype=h.dtype).reshape(h.shape)))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="10,12,16,32", help="image sizes to check")
  sizes = [int(s) for s in p.parse_args(argv).sizes.split(",")]
  rng = np.random.default_rng(0)
  shapes = [(3, 3, 3, 16), (3, 3, 16, 16), (3, 3, 16, 16)]
  kernels = [jnp.asarray(jax.random.normal(jax.random.key(i), s, jnp.float64) * 0.2)
             for i, s in enumerate(shapes)]
  grad = jax.grad(loss)
  wrong = 0
  for size in sizes:
    x = jnp.asarray(rng.integers(0, 256, (8, size, size, 3)), jnp.float64) / 127.5 - 1
    eager = grad(kernels, x)
    jitted = jax.jit(grad)(kernels, x)
    errs = [float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(eager, jitted)]
    bad = max(errs) > 1e-9
    wrong += bad
    print(f"{size:2d}x{size:<2d} images: relative error of jit vs eager per kernel gradient "
          f"{', '.join(f'{e:.1e}' for e in errs)}  {'WRONG' if bad else 'ok'}")
  print(f"jax {jax.__version__}, XLA_FLAGS={__import__('os').environ.get('XLA_FLAGS', '')!r}")
  return 1 if wrong else 0


if __name__ == "__main__":
  sys.exit(main())
