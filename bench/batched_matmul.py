"""Why a vmapped ConvLSTM ensemble is not cheaper per member on XLA:CPU: its matmuls.

  python -m bench.batched_matmul [--calls 200] [--rounds 5]

The ConvLSTM step is a chain of small matrix products ([batch, 128] x [128, 256] per time step
for the LSTM gates). Under vmap they become batched products [K, batch, 128] x [K, 128, 256].
This times, for the LSTM's shapes, one member's product, the batched product of K=8 members
(what vmap produces) and, as the ceiling of any ensemble trick, one product with 8x the rows
(members sharing a weight matrix, which ensemble members do not). Per member, in microseconds
and GFLOP/s. Reported as measured; nothing asserted.
"""

from __future__ import annotations

import argparse
import time

import jax

K = 8


def best_seconds(fn, *args, calls: int = 200, rounds: int = 5) -> float:
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(rounds):
    t0 = time.perf_counter()
    for _ in range(calls):
      out = fn(*args)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - t0) / calls)
  return best


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--calls", type=int, default=200, help="calls per timed round")
  p.add_argument("--rounds", type=int, default=5, help="timed rounds (best is reported)")
  args = p.parse_args(argv)
  timing = dict(calls=args.calls, rounds=args.rounds)
  key = jax.random.key(0)
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}; per-member time of one product\n")
  print(f"| shape (one member) | 1 member us | vmap K={K} us/member | one [{K}*rows] product "
        "us/member | GFLOP/s (1 / vmap / one) |")
  print("|---|---:|---:|---:|---|")
  for rows, inner, out in ((32, 128, 256), (128, 128, 256), (256, 128, 256)):
    x1, w1 = jax.random.normal(key, (rows, inner)), jax.random.normal(key, (inner, out))
    xk, wk = jax.random.normal(key, (K, rows, inner)), jax.random.normal(key, (K, inner, out))
    t1 = best_seconds(lambda x, w: x @ w, x1, w1, **timing)
    tk = best_seconds(jax.vmap(lambda x, w: x @ w), xk, wk, **timing) / K
    tbig = best_seconds(lambda x, w: x @ w, xk.reshape(K * rows, inner), w1, **timing) / K
    gf = lambda t: 2 * rows * inner * out / t / 1e9  # noqa: E731
    print(f"| [{rows},{inner}]x[{inner},{out}] | {t1 * 1e6:.0f} | {tk * 1e6:.0f} | "
          f"{tbig * 1e6:.0f} | {gf(t1):.0f} / {gf(tk):.0f} / {gf(tbig):.0f} |")


if __name__ == "__main__":
  main()
