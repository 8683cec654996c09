"""Per-member step cost of the tabular MLP ensemble, K = 1, 8, 32, 64, beside the matmul peak.

  python -m bench.tabular_speed [--rounds 5] [--ks 1,8,32,64]

Cases, all measured in ONE process in interleaved rounds (bench/README.md):
  - `production`: programs.ensemble_train_epoch_fn, i.e. what a study runs: one epoch of the
    bundled satimage (2706 rows, batch 128 -> 21 steps) per call, vmapped members, every member
    with its own data order (its seed), dropout and class weights;
  - `sequential` / `unrolled`: the same epoch with the other ensemble strategies;
  - `batch 512`: the same epoch with 4x larger batches (fewer, larger products);
  - `shared batch`: train.train_step vmapped over members that SHARE each batch (the batch is
    not mapped), as members of one seed do in a study; JAX then folds the member axis of the
    first layer's product into one wide product x[B, F] @ W[F, K*H] (forward and weight
    gradient). `own batch` is the same step with one batch per member (the production layout),
    for comparison. Both scan over 21 pre-drawn batches.
FLOPs are analytic (bench/flops.py, matmuls only), the peak a 2048^3 float32 jnp.dot measured
in the same run. Reported as measured; nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import flops as flops_lib  # noqa: E402
from bench.run import Case, jax_case, load_config, measure, peak_cases  # noqa: E402
from lwi_jax import data as data_lib  # noqa: E402
from lwi_jax import member  # noqa: E402
from lwi_jax import models  # noqa: E402
from lwi_jax import optim  # noqa: E402
from lwi_jax import train  # noqa: E402
from lwi_jax.parallel import ensemble  # noqa: E402
from lwi_jax.parallel import programs  # noqa: E402


def _hparams(k: int, classes: int):
  rng = np.random.default_rng(k)
  return ensemble.stack([member.MemberHParams.create(rng.uniform(0.5, 2.0, classes))
                         for _ in range(k)])


def production_case(model, x, y, classes, k, batch, strategy, flops_step) -> Case:
  """bench.run's production case (its optimizer: Adam, cosine) on the MLP and satimage."""
  steps = len(y) // batch
  c = jax_case("mlp", model, "xla", strategy, k, x, y, classes, steps, flops_step(batch),
               types.SimpleNamespace(batch=batch))
  c.impl, c.strategy = "production", strategy if batch == 128 else f"{strategy}, batch {batch}"
  return c


def layout_case(model, tx, x, y, classes, k, batch, shared: bool, flops_step) -> Case:
  """train_step over 21 pre-drawn batches; members share them or each has its own."""
  steps = len(y) // batch
  rng = np.random.default_rng(0)
  per = 1 if shared else k
  idx = np.stack([rng.permutation(len(y))[:steps * batch].reshape(steps, batch)
                  for _ in range(per)], axis=1)  # [steps, per, batch]
  bx, by = jnp.asarray(x[idx]), jnp.asarray(y[idx])
  if shared:
    bx, by = bx[:, 0], by[:, 0]
  states = programs.init_ensemble(model, tx, jnp.asarray(x[:1]), list(range(k)))
  weights = _hparams(k, classes).class_weights
  keys = jax.random.split(jax.random.key(0), k)

  def member(state, w, key, batch_x, batch_y):
    def body(st, xs):
      bxs, bys, i = xs
      st, m = train.train_step(st, {"inputs": bxs, "labels": bys}, w, jax.random.fold_in(key, i))
      return st, m["loss"]
    return jax.lax.scan(body, state, (batch_x, batch_y, jnp.arange(steps)))

  in_axes = (0, 0, 0, None, None) if shared else (0, 0, 0, 1, 1)
  fn = jax.jit(jax.vmap(member, in_axes=in_axes), donate_argnums=(0,))
  t0 = time.perf_counter()
  compiled = fn.lower(states, weights, keys, bx, by).compile()
  compile_s = time.perf_counter() - t0
  box = {"states": states}

  def run():
    box["states"], loss = compiled(box["states"], weights, keys, bx, by)
    jax.block_until_ready(loss)

  run()
  return Case("jax", "mlp", "train_step scan", "shared batch" if shared else "own batch", k,
              steps, run, flops_step(batch) * steps * k, compile_s)


def main(argv=None) -> str:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--ks", default="1,8,32,64")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--layout_ks", default="8,32,64")
  p.add_argument("--chunks", default="4,8,16", help="ensemble_chunk values tried at the largest K")
  p.add_argument("--no_extras", action="store_true",
                 help="only the vmap K cases and the chunked ones (a short run)")
  args = p.parse_args(argv)
  ks = [int(k) for k in args.ks.split(",")]
  config = load_config("tabular")
  data = data_lib.load_dataset(config.data)
  x, y, classes = data.train.inputs, data.train.labels, data.num_classes
  model = models.create_model(config.model, classes, data.info)
  sizes = (x.shape[1], *config.model.hidden_sizes, classes)
  flops_step = lambda b: flops_lib.mlp_step_flops(b, sizes)  # noqa: E731
  tx = optim.make_optimizer(config.optimizer, len(y) // 128, 1)
  t_start = time.perf_counter()
  load0 = os.getloadavg()[0]
  cases = peak_cases(types.SimpleNamespace(peak_size=2048, torch=False))
  cases += [production_case(model, x, y, classes, k, 128, "vmap", flops_step) for k in ks]
  if not args.no_extras:
    cases += [production_case(model, x, y, classes, 8, 128, s, flops_step)
              for s in ("sequential", "unrolled")]
  # Chunked: groups of c members vmapped, the groups one after another (train.ensemble_chunk).
  cases += [production_case(model, x, y, classes, max(ks), 128, f"vmap:{c}", flops_step)
            for c in [int(c) for c in args.chunks.split(",") if c]]
  if not args.no_extras:
    cases += [production_case(model, x, y, classes, k, 512, "vmap", flops_step)
              for k in (1, 32)]
  for k in [] if args.no_extras else [int(k) for k in args.layout_ks.split(",")]:
    for shared in (False, True):
      cases.append(layout_case(model, tx, x, y, classes, k, 128, shared, flops_step))
  measure(cases, args.rounds, lambda msg: print(msg, file=sys.stderr, flush=True))
  peak = max(c.flops_per_call / min(c.wall) for c in cases if c.group == "peak")
  base = {}
  lines = [f"MLP {sizes}, jax {jax.__version__} on {jax.devices()[0].platform}, "
           f"{os.cpu_count()} CPUs; {args.rounds} interleaved rounds; load average "
           f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after; "
           f"{time.perf_counter() - t_start:.0f}s in all.\n",
           f"Matmul peak (2048^3 f32 jnp.dot, best round): {peak / 1e9:.1f} GFLOP/s.\n",
           "| case | strategy / layout | K | ms per member-step (min) | median | per member "
           "and example, vs production K=1 | fraction of peak | compile s |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  for c in cases:
    if c.group == "peak":
      continue
    t = c.per_member_step(min)
    batch = 512 if "512" in c.strategy else 128
    ref = base.setdefault("ref", t)  # the first case: production, vmap, K=1, batch 128
    lines.append(
        f"| {c.impl} | {c.strategy} | {c.members} | {t * 1e3:.3f} | "
        f"{c.per_member_step(np.median) * 1e3:.3f} | {t / ref * 128 / batch:.2f} | "
        f"{c.flops_per_call / min(c.wall) / peak:.2f} | {c.compile_seconds:.1f} |")
  text = "\n".join(lines)
  print(text)
  return text


if __name__ == "__main__":
  main()
