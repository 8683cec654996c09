"""Members and memory per device when the ensemble is split over 1, 2 and 4 devices.

  python -m bench.sharding_scale            # the names study's round 1: 11 rules x 3 seeds

One process with 4 forced host devices (set below, before JAX starts) builds the ensemble mesh
over the first 1, 2 and 4 of them (train.num_devices), on the same study. Per device it reports
members (padded to a multiple of D, see lwi_jax/parallel/sharding.py), the bytes of the
member-stacked train state the device holds (its addressable shards, padded as Trainer.fit pads them), and XLA's memory analysis of the
compiled per-device epoch program (arguments incl. the replicated dataset, outputs, temporaries).
Forced host devices share this machine's cores, so the measured epoch time does NOT show the
speed-up of real devices; the estimate for D real devices is the measured one-device time
scaled by the per-device work, ceil(E/D)/E (members never communicate; the only cross-device
traffic is the small per-epoch metrics all-gather).
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import math  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.run import load_config  # noqa: E402
from lwi_jax import data as data_lib  # noqa: E402
from lwi_jax import member  # noqa: E402
from lwi_jax.parallel import ensemble  # noqa: E402
from lwi_jax.parallel import programs  # noqa: E402
from lwi_jax.parallel import sharding  # noqa: E402
from lwi_jax.rules import members  # noqa: E402
from lwi_jax.study import trainer as trainer_lib  # noqa: E402

_STEPS = flags.DEFINE_integer("timed_steps", 10, "optimizer steps per timed epoch call")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "interleaved timing rounds (best is reported)")
_QUICK = flags.DEFINE_bool("quick", False, "smoke run: 3 members, a tiny ConvLSTM; not a result")


def _config():
  return load_config("names", "study")


def _per_device_bytes(tree) -> dict:
  out = defaultdict(int)
  for leaf in jax.tree.leaves(tree):
    for shard in leaf.addressable_shards:
      out[shard.device] += shard.data.nbytes
  return out


def _subset(d: data_lib.ClassificationData, n: int) -> data_lib.ClassificationData:
  train_split = data_lib.types.Split(d.train.inputs[:n], d.train.labels[:n])
  return data_lib.types.ClassificationData(train_split, d.validation, d.test, d.class_names,
                                           d.info)


def main(argv):
  del argv
  assert jax.device_count() == 4, jax.devices()
  config = _config()
  if _QUICK.value:
    config.rules, config.seeds = ("inverse_tpr:gamma=1", "focal:gamma=2", "uniform"), (0,)
    config.model.embed_dim, config.model.conv_features, config.model.lstm_hidden = 4, (8,), 8
  specs = members.parse_members(config.rules, config.seeds)
  e = len(specs)
  seeds = [m.seed for m in specs]
  full = data_lib.load_dataset(config.data)
  timed = _subset(full, _STEPS.value * config.train.batch_size)
  hp = ensemble.stack([member.MemberHParams.create(np.ones(full.num_classes, np.float32))] * e)
  print(f"names study round 1: E = {e} members, train {len(full.train)} examples, "
        f"batch {config.train.batch_size}, backend {jax.default_backend()}")
  rows, runs = [], {}
  for d in (1, 2, 4):
    config.train.shard_ensemble, config.train.num_devices = True, d
    cfg = config.train
    for name, data in (("full", full), ("timed", timed))[:2 if _ROUNDS.value else 1]:
      trainer = trainer_lib.Trainer(config, data, log=lambda m: None)
      # As Trainer.fit does: the phase's members padded to a multiple of D.
      seeds_d = sharding.pad_to_mesh(list(seeds), trainer.mesh)
      hp_d = sharding.replicate(sharding.pad_to_mesh(hp, trainer.mesh), trainer.mesh)
      states = programs.init_ensemble(trainer.model, trainer.tx, trainer.sample_inputs, seeds_d,
                                   mesh=trainer.mesh)
      fn = programs.ensemble_train_epoch_fn(cfg.batch_size, cfg.augment, cfg.ensemble_strategy,
                                         cfg.get("ensemble_chunk", 0), trainer.mesh,
                                         trainer.compiler_options)
      args = (states, hp_d, programs.ensemble_epoch_keys(seeds_d, 0), jnp.int32(0),
              trainer.train_inputs, trainer.train_labels)
      t0 = time.perf_counter()
      compiled = fn.lower(*args).compile()
      compile_s = time.perf_counter() - t0
      if name == "full":
        ma = compiled.memory_analysis()
        rows.append({"devices": d, "members_per_device": math.ceil(e / d),
                     # padded and split as in Trainer.fit: what each device holds all phase
                     "state_mb": max(_per_device_bytes(states).values()) / 2**20,
                     "padded": math.ceil(e / d) * d - e,
                     "arg_mb": ma.argument_size_in_bytes / 2**20,
                     "out_mb": ma.output_size_in_bytes / 2**20,
                     "temp_mb": ma.temp_size_in_bytes / 2**20, "compile_s": compile_s})
      else:
        runs[d] = (compiled, args)
  best = {d: math.inf for d in (1, 2, 4)}
  for _ in range(_ROUNDS.value):  # 0: memory only, no timing
    for d, (compiled, args) in runs.items():
      states, hp_d = args[0], args[1]
      t0 = time.perf_counter()
      out = compiled(jax.tree.map(jnp.copy, states), jax.tree.map(jnp.copy, hp_d), *args[2:])
      jax.block_until_ready(out)
      best[d] = min(best[d], time.perf_counter() - t0)
      # The epoch program leaves the states split as it found them.
      assert max(_per_device_bytes(out[0]).values()) == max(_per_device_bytes(states).values())
  one = best[1]
  print("\n| devices | members / device (padding) | train state / device MB | "
        "compiled epoch program / device MB (args + out + temp) | measured s / "
        f"{_STEPS.value} steps (forced devices, shared cores) | estimate on real devices |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    d = r["devices"]
    share = r["members_per_device"] / e  # of the one-device work
    measured = f"{best[d]:.2f}" if _ROUNDS.value else "not measured"
    est = (f"{one * share:.2f} s ({1 / share:.2f}x)" if _ROUNDS.value
           else f"{share:.2f} of one device's time ({1 / share:.2f}x)")
    print(f"| {d} | {r['members_per_device']} ({r['padded']}) | {r['state_mb']:.2f} | "
          f"{r['arg_mb']:.1f} + {r['out_mb']:.2f} + {r['temp_mb']:.1f} | {measured} | {est} |")
  print("\ncompile s (full program): " + ", ".join(f"D={r['devices']}: {r['compile_s']:.1f}"
                                                  for r in rows))


if __name__ == "__main__":
  app.run(main)
