"""The ensemble axis sharded over devices gives the same results as the one-device run.

XLA_FLAGS must be set before JAX initialises, so the multi-device checks run in a subprocess
with 4 fake CPU devices (--xla_force_host_platform_device_count=4). E = 4 is one member per
device, E = 3 is not divisible by 4 (the trainer pads the phase with a copy of the last member,
so the states stay split over the 4 devices; the copy is dropped from what it reports).
"""

import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from lwi_jax.data import names
from lwi_jax.parallel import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import importlib.util, os, sys
    import jax, jax.numpy as jnp, numpy as np
    assert jax.device_count() == 4, jax.devices()
    from lwi_jax import data as data_lib
    from lwi_jax import member
    from lwi_jax.parallel import ensemble, sharding
    from lwi_jax.study import trainer as trainer_lib

    spec = importlib.util.spec_from_file_location("cifar", os.path.join(sys.argv[1], "configs",
                                                                        "cifar.py"))
    cifar = importlib.util.module_from_spec(spec); spec.loader.exec_module(cifar)

    def config(shard, devices=0):
      c = cifar.get_config("cpu")
      c.model.widths, c.model.dense_width, c.model.conv_impl = (4, 4, 8), 8, "cpu"
      c.train.epochs, c.train.batch_size, c.train.eval_batch_size = 2, 8, 16
      c.train.augment, c.train.eval_every_epoch = "none", False
      c.train.shard_ensemble, c.train.num_devices = shard, devices
      # SGD, not Adam: Adam's first steps are ~lr * sign(g), which turns round-off in gradients
      # that are mathematically zero (conv biases before BatchNorm) into lr-sized differences.
      c.optimizer.name, c.optimizer.learning_rate, c.optimizer.schedule = "sgd", 0.05, "constant"
      return c

    rng = np.random.default_rng(0)
    def split(n):
      labels = rng.integers(0, 3, n).astype(np.int32)
      images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
      images[:, 0, 0, :] = labels[:, None] * 100
      return data_lib.types.Split(images, labels)
    data = data_lib.types.ClassificationData(split(32), split(20), split(20), ("a", "b", "c"))

    trainers = {}
    def run(shard, e, devices=0):
      if (shard, devices) not in trainers:  # one Trainer (one set of compiled functions) each
        trainers[shard, devices] = trainer_lib.Trainer(config(shard, devices), data,
                                                      log=lambda m: None)
        # The same optimizer object: the jitted init is cached on it (compiling it is ~10 s).
        trainers[shard, devices].tx = next(iter(trainers.values())).tx
      trainer = trainers[shard, devices]
      seeds = [i % 2 for i in range(e)]
      hp = ensemble.stack([member.MemberHParams.create(np.linspace(0.5, 1.5, 3) ** i,
                                                      focal_gamma=float(i % 3 == 2),
                                                      dro_eta=0.1 * (i % 2))
                           for i in range(e)])
      states, hp, history = trainer.fit("t", [str(i) for i in range(e)], seeds, hp)
      cms = trainer.confusions(states, "test")[:e]
      leaf = jax.tree.leaves(states.params)[0]
      if shard:  # padded to a multiple of the devices for the whole fit: split evenly, E=3 too
        d = devices or 4
        assert leaf.sharding.spec == jax.sharding.PartitionSpec("ensemble"), leaf.sharding
        assert len(leaf.sharding.device_set) == d and leaf.shape[0] == -(-e // d) * d
      params, batch_stats = jax.tree.map(lambda x: x[:e], (states.params, states.batch_stats))
      return jax.device_get((params, batch_stats, hp.class_weights, cms,
                             history["loss"], history["accuracy"], history["val_accuracy"]))

    # Members are independent, so the first 3 members of the unsharded E=4 run are the reference
    # for E=3 too (one compiled program fewer).
    ref4 = run(False, 4)
    for e in (4, 3):
      ref = jax.tree.map(lambda x: x[:e], ref4)
      got = run(True, e)
      for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ref), jax.tree.leaves(got)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5,
                                   err_msg=f"E={e}: {jax.tree_util.keystr(path)}")
      print(f"E={e} devices=4: sharded == unsharded", flush=True)
    try:
      run(True, 2, devices=5)
      raise SystemExit("expected a ValueError for num_devices=5")
    except ValueError as err:
      assert "train.num_devices=5" in str(err), err
    print("OK")
""")


@pytest.mark.slow
def test_sharded_ensemble_equals_unsharded_on_4_cpu_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", SCRIPT, REPO], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  assert "OK" in proc.stdout
  for e in (4, 3):
    assert f"E={e} devices=4: sharded == unsharded" in proc.stdout


LAYOUT_SCRIPT = textwrap.dedent("""
    import importlib.util, os, sys
    import jax, numpy as np
    assert jax.device_count() == 2, jax.devices()
    from lwi_jax import data as data_lib
    from lwi_jax import member
    from lwi_jax.parallel import ensemble
    from lwi_jax.study import trainer as trainer_lib

    spec = importlib.util.spec_from_file_location("tab", os.path.join(sys.argv[1], "configs",
                                                                      "tabular.py"))
    tab = importlib.util.module_from_spec(spec); spec.loader.exec_module(tab)
    rng = np.random.default_rng(0)
    def split(n):
      y = rng.integers(0, 3, n).astype(np.int32)
      return data_lib.types.Split((rng.normal(size=(n, 8)) + y[:, None] * 0.4).astype(np.float32), y)
    data = data_lib.types.ClassificationData(split(300), split(60), split(500), ("a", "b", "c"))
    E = 2
    def run(strategy, shard):
      c = tab.get_config()
      c.model.hidden_sizes = (8,)  # dropout stays on: the members' keys are checked too
      c.train.epochs, c.train.batch_size, c.train.eval_batch_size = 2, 32, 500
      c.train.eval_every_epoch, c.train.ensemble_strategy = False, strategy
      c.train.shard_ensemble, c.train.num_devices = shard, 2 if shard else 0
      trainer = trainer_lib.Trainer(c, data, log=lambda m: None)
      hp = ensemble.stack([member.MemberHParams.create(np.linspace(0.5, 1.5, 3) ** i)
                           for i in range(E)])
      states, _, _ = trainer.fit("t", [str(i) for i in range(E)], list(range(E)), hp)
      params = jax.device_get(jax.tree.map(lambda x: x[:E], states.params))
      return jax.tree.leaves(params), trainer.predictions(states, "test", E)
    for strategy in ("sequential", "vmap"):
      (p1, y1), (p2, y2) = run(strategy, False), run(strategy, True)
      bitwise = all(np.array_equal(a, b) for a, b in zip(p1, p2))
      diff = max(float(np.abs(a - b).max()) for a, b in zip(p1, p2))
      flips = float((y1 != y2).mean())
      print(f"{strategy}: bitwise {bitwise} max_param_diff {diff:.3g} flips {flips:.4f}")
""")


def test_sharded_vs_one_device_bitwise_with_sequential_round_off_with_vmap():
  """What README and sharding.py promise about layouts: `ensemble_strategy='sequential'` runs
  each member through the same one-member program on any layout, so 2 devices equal 1 device
  bitwise; the default 'vmap' batches a member with its device-mates, and a different batch
  width changes XLA's accumulation order: round-off (parameters within 1e-5 here), which may
  flip a few predictions in a longer run (at most 1% of test predictions allowed here)."""
  # Four programs (two strategies x two layouts) are most of this test's time: compiled once
  # per machine into JAX's persistent cache (keyed by the program, the flags and the versions,
  # so a cached executable is the one a compile would give), a rerun only executes them.
  cache = os.path.join(names.resolve_cache_dir(), "xla_test_cache")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  proc = subprocess.run([sys.executable, "-c", LAYOUT_SCRIPT, REPO], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  got = {}
  for line in proc.stdout.splitlines():
    if ": bitwise " in line:
      strategy, rest = line.split(": ", 1)
      fields = rest.split()
      got[strategy] = (fields[1] == "True", float(fields[3]), float(fields[5]))
  assert got["sequential"] == (True, 0.0, 0.0), proc.stdout
  bitwise, diff, flips = got["vmap"]
  assert diff <= 1e-5 and flips <= 0.01, proc.stdout


def test_mesh_from_config_off_by_default_and_validated():
  cfg = ml_collections.ConfigDict({"shard_ensemble": False, "num_devices": 0})
  assert sharding.mesh_from_config(cfg) is None
  cfg.shard_ensemble = True
  mesh = sharding.mesh_from_config(cfg)
  assert mesh.axis_names == ("ensemble",) and mesh.devices.size >= 1
  cfg.num_devices = 10_000
  with pytest.raises(ValueError, match="train.num_devices=10000"):
    sharding.mesh_from_config(cfg)


def test_initialize_distributed_is_a_no_op_when_off():
  sharding.initialize_distributed(ml_collections.ConfigDict({"train": {"distributed": False}}))


def test_initialize_distributed_passes_set_fields_and_leaves_the_rest_to_jax(monkeypatch):
  calls = []
  monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **kw: calls.append(kw))
  train = {"distributed": True, "coordinator_address": "", "num_processes": 0, "process_id": -1,
           "heartbeat_timeout_seconds": 7, "init_timeout_seconds": 30}
  assert sharding.initialize_distributed(ml_collections.ConfigDict({"train": train}))
  # Unset address / count / id: JAX's $JAX_COORDINATOR_ADDRESS and cluster auto-detection.
  assert calls[-1] == {"initialization_timeout": 30, "heartbeat_timeout_seconds": 7}
  train.update(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)
  sharding.initialize_distributed(ml_collections.ConfigDict({"train": train}))
  assert calls[-1] == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2,
                       "process_id": 1, "initialization_timeout": 30,
                       "heartbeat_timeout_seconds": 7}


def test_single_process_helpers():
  assert sharding.process_index() == 0 and sharding.is_primary()
  assert sharding.primary_decides(True) is True and sharding.primary_decides(0) is False
  with pytest.raises(sharding.jax.errors.JaxRuntimeError):  # not reworded in one process
    with sharding.explain_peer_failure():
      raise sharding.jax.errors.JaxRuntimeError("boom")


def test_launch_fields_are_not_part_of_the_phase_fingerprint():
  from lwi_jax.study import phases
  config = ml_collections.ConfigDict({"train": {"epochs": 1, "distributed": True,
                                                **{k: 0 for k in sharding.LAUNCH_FIELDS}}})
  key = phases.fingerprint(config, "baseline")
  for field in sharding.LAUNCH_FIELDS:  # e.g. process_id differs between the processes
    config.train[field] = 1
  assert phases.fingerprint(config, "baseline") == key
  config.train.epochs = 2
  assert phases.fingerprint(config, "baseline") != key
