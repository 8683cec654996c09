"""Where JAX loses to PyTorch per step: each convolution's gradients, layer by layer.

  python -m bench.conv_grad_layers [--preset cpu] [--widths 32,192,192] [--batch 256]
                                   [--rounds 15] [--no_torch]

For every 3x3 convolution of configs/cifar.py's network at `--preset` (conv_groups: per group a
convolution at the group's input size, a 2x2 pool, a convolution at half that size), times on
random data, in ONE process and interleaved round by round (bench/README.md):
  JAX weight gradient as the CPU path computes it (resnet_cnn.conv3x3_weight_grad: transposes
  to [C, H, W, N] and [H, W, N, O] + one canonical convolution), its convolution alone (inputs
  already transposed) and its transposes alone; JAX's input gradient; PyTorch's weight and
  input gradients (oneDNN, channels-last: aten.convolution_backward, one output each).
Medians in ms and the JAX / PyTorch ratios. The first layer's weight gradient reads the
whitening stem channels-first in training (cnn_base.ImageCNN.stem_channels_first), so its
JAX "weight grad" row times the path without that (the transposes show what it saves).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from bench import run as bench_run  # noqa: E402
from lwi_jax.models import resnet_cnn  # noqa: E402


def layer_shapes(config) -> list[tuple[int, int, int]]:
  """(size, c_in, c_out) of each convolution of the conv_groups network of `config`."""
  if config.model.name != "conv_groups":
    raise ValueError(f"model.name={config.model.name!r}: this tool lays out 'conv_groups' only")
  patch = config.model.whiten_patch  # whitening keeps both signs: 2 k^2 C channels (C = 3)
  c_in = 2 * patch ** 2 * 3 if patch else 3
  size, shapes = 32, []
  for width in config.model.widths:
    shapes += [(size, c_in, width), (size // 2, width, width)]
    size, c_in = size // 2, width
  return shapes


def _jax_cases(n: int, size: int, c: int, o: int) -> dict:
  keys = jax.random.split(jax.random.key(0))
  x = jax.random.normal(keys[0], (n, size, size, c))
  dy = jax.random.normal(keys[1], (n, size, size, o))
  kernel = jnp.zeros((3, 3, c, o))
  x_t, dy_t = jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3))

  def jit(fn):
    return jax.jit(fn, compiler_options=resnet_cnn.CPU_COMPILER_OPTIONS)

  # pylint: disable=protected-access
  fns = {"jax weight grad": (jit(resnet_cnn.conv3x3_weight_grad), (x, dy)),
         "jax conv alone": (jit(resnet_cnn._ungrouped_conv), (x_t, dy_t)),
         "jax transposes": (jit(lambda a, b: (jnp.transpose(a, (3, 1, 2, 0)),
                                              jnp.transpose(b, (1, 2, 0, 3)))), (x, dy)),
         "jax input grad": (jit(resnet_cnn._input_grad), (dy, kernel))}
  return {name: (lambda f=f, a=a: jax.block_until_ready(f(*a))) for name, (f, a) in fns.items()}


def _torch_cases(n: int, size: int, c: int, o: int, threads: int) -> dict:
  import torch  # noqa: PLC0415
  torch.set_num_threads(threads)
  last = torch.channels_last
  x = torch.randn(n, c, size, size).to(memory_format=last)
  dy = torch.randn(n, o, size, size).to(memory_format=last)
  w = torch.zeros(o, c, 3, 3).to(memory_format=last)

  def backward(mask):
    return lambda: torch.ops.aten.convolution_backward(
        dy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

  return {"torch weight grad": backward([False, True, False]),
          "torch input grad": backward([True, False, False])}


def measure(cases: dict, rounds: int) -> dict:
  """Median ms of each case; every case once per round, in the same order."""
  for fn in cases.values():  # compile / warm up
    fn()
  times = {name: [] for name in cases}
  for _ in range(rounds):
    for name, fn in cases.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="cpu")
  parser.add_argument("--widths", default="", help="e.g. 32,192,192 (default: the preset's), "
                      "as bench.time_to_accuracy's --widths")
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--rounds", type=int, default=15)
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="PyTorch threads")
  parser.add_argument("--no_torch", action="store_true")
  args = parser.parse_args(argv)
  config = bench_run.load_config("cifar", args.preset)
  if args.widths:
    config.model.widths = tuple(int(w) for w in args.widths.split(","))
  print(f"conv gradients by layer: preset {args.preset}, widths {tuple(config.model.widths)}, "
        f"batch {args.batch}, {args.rounds} rounds, "
        f"jax {jax.__version__} ({jax.default_backend()}), {os.cpu_count()} CPU cores")
  cols = ["jax weight grad", "jax conv alone", "jax transposes", "torch weight grad",
          "jax input grad", "torch input grad"]
  print("| layer (size, c_in -> c_out) | " + " | ".join(cols) + " | weight jax/torch | input "
        "jax/torch |\n|---|" + "---:|" * (len(cols) + 2))
  rows = []
  for size, c, o in layer_shapes(config):
    cases = _jax_cases(args.batch, size, c, o)
    if not args.no_torch:
      cases.update(_torch_cases(args.batch, size, c, o, args.threads))
    ms = measure(cases, args.rounds)
    ratio = {k: (ms[f"jax {k} grad"] / ms[f"torch {k} grad"] if f"torch {k} grad" in ms else None)
             for k in ("weight", "input")}
    cells = [f"{ms[k]:.1f}" if k in ms else "-" for k in cols]
    cells += [f"{r:.2f}x" if r else "-" for r in ratio.values()]
    print(f"| {size}x{size}, {c} -> {o} | " + " | ".join(cells) + " |", flush=True)
    rows.append(dict(size=size, c_in=c, c_out=o, ms=ms, ratio=ratio))
  return rows


if __name__ == "__main__":
  main()
