"""What the console's in-epoch progress bar costs: the names default's epoch with and without it.

  python -m bench.progress_overhead [--rounds 6] [--members 3] [--preset names]

The bar is fed by a host callback compiled into the epoch (train.train_epoch's `on_step`,
drawn by lwi_jax/runtime/console.py). Both programs train the same members on the real names data;
they are measured in interleaved rounds in one process (each once per round, so load from
elsewhere hits both alike), with the bar drawn to /dev/null. Prints min and median seconds
per epoch and their ratio, and checks that both give bit-identical parameters.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.run import load_config
from lwi_jax import data as data_lib
from lwi_jax import member
from lwi_jax.parallel import ensemble
from lwi_jax.parallel import programs
from lwi_jax.runtime import console
from lwi_jax.study import trainer as trainer_lib


def main(argv=None) -> dict:
  """Runs the measurement; returns {"times": {name: [s, ...]}, "bit_identical": bool}."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=6)
  parser.add_argument("--members", type=int, default=3)
  parser.add_argument("--preset", default="names")
  args = parser.parse_args(argv)

  config = load_config("names", args.preset)
  data = data_lib.load_dataset(config.data)
  trainer = trainer_lib.Trainer(config, data, log=lambda m: None, progress="off")
  cfg = config.train
  seeds = list(range(args.members))
  hp = ensemble.stack([member.MemberHParams.create(np.ones(data.num_classes))] * args.members)
  steps = len(data.train) // cfg.batch_size
  fns = {name: programs.ensemble_train_epoch_fn(cfg.batch_size, cfg.augment, cfg.ensemble_strategy,
                                             cfg.ensemble_chunk, None, trainer.compiler_options,
                                             on_step)
         for name, on_step in (("no bar", None), ("bar", console.on_train_step))}
  states0 = programs.init_ensemble(trainer.model, trainer.tx, trainer.sample_inputs, seeds)
  keys = programs.ensemble_epoch_keys(seeds, 0)

  def epoch(name):
    states, hps = jax.tree.map(jnp.copy, (states0, hp))  # donated arguments: fresh copies
    with open(os.devnull, "w") as sink, \
        console.epoch_progress("epoch", steps, name == "bar", stream=sink):
      t0 = time.perf_counter()
      out = fns[name](states, hps, keys, jnp.int32(0), trainer.train_inputs,
                      trainer.train_labels)
      jax.block_until_ready(out)
      return time.perf_counter() - t0, out

  results = {name: epoch(name)[1] for name in fns}  # compile both
  same = jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)),
                                   jax.device_get(results["bar"][0].params),
                                   jax.device_get(results["no bar"][0].params)))
  times = {name: [] for name in fns}
  for _ in range(args.rounds):
    for name in fns:
      times[name].append(epoch(name)[0])
  print(f"{args.preset}: {args.members} members, {steps} steps per epoch, {args.rounds} "
        f"interleaved rounds, backend {jax.default_backend()}")
  for name, t in times.items():
    print(f"  {name:>6}: min {min(t):.3f} s  median {statistics.median(t):.3f} s per epoch")
  print(f"  bar / no bar: min {min(times['bar']) / min(times['no bar']):.3f}x  median "
        f"{statistics.median(times['bar']) / statistics.median(times['no bar']):.3f}x")
  print(f"  parameters bit-identical: {same}")
  return {"times": times, "bit_identical": same}


if __name__ == "__main__":
  main()
