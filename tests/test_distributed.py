"""Two processes on one host run one study together, survive a killed process, and agree with one.

Each process gets 2 forced host devices, so the ensemble mesh spans 4 devices in 2 processes
(JAX's distributed runtime on 127.0.0.1, gloo CPU collectives). The processes run `launch.py`'s
`main` through a small driver that only adds instrumentation: it reports which phases train,
which checkpoints are restored, who writes the outputs, and SIGKILLs process 1 when it is about
to save round 1's second epoch. Then:
  run A: process 1 dies mid-study; process 0 must fail (not hang) and say why;
  run B: the same command again: the baseline phase is reused, round 1 resumes from its epoch-1
         checkpoint (each process restoring its own shards), only process 0 writes;
and the results equal a single-process, single-device run of the same study.
The session's persistent compilation cache (conftest.py, inherited through the environment)
lets run B load the programs run A compiled.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lwi_jax.study import study as study_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_TIMEOUT = 240  # seconds per two-process run: a hang fails the test instead of CI

# One study: 3 seeds x 1 rule: 3 members per phase over 4 devices (padded with a copy).
OVERRIDES = {
    "data.max_len": 8, "data.min_validation_per_class": 4, "model.embed_dim": 4, "model.conv_features": (8,), "model.lstm_hidden": 8,
    "train.epochs": 2, "train.batch_size": 16, "train.eval_batch_size": 64,
    "train.eval_every_epoch": False, "seeds": (0, 1, 2), "rules": ("inverse_tpr:gamma=1",),
    "optimizer.name": "sgd", "optimizer.learning_rate": 0.1, "optimizer.schedule": "constant",
}

DRIVER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, os.getcwd())
    from absl import app
    import jax
    import launch
    from lwi_jax.parallel import sharding
    from lwi_jax.report import outputs
    from lwi_jax.runtime import checkpoint
    from lwi_jax.runtime import tensorboard
    from lwi_jax.study import study as study_lib
    from lwi_jax.study import trainer as trainer_lib

    def say(*parts):
      print("DRIVER", *parts, flush=True)

    def wrap(owner, name, before):
      original = getattr(owner, name)
      def wrapped(*args, **kwargs):
        before(*args, **kwargs)
        return original(*args, **kwargs)
      setattr(owner, name, wrapped)

    kill_at = os.environ.get("KILL_AT_SAVE", "")  # "<phase>:<epoch>"
    def save(self, epoch, carry):
      if kill_at and f"{os.path.basename(self.directory).split('-')[0]}:{epoch}" == kill_at:
        say("killing myself"); os.kill(os.getpid(), signal.SIGKILL)
    wrap(checkpoint.PhaseCheckpointer, "save", save)
    wrap(checkpoint.PhaseCheckpointer, "restore",
         lambda self, epoch, like: say("restore", os.path.basename(self.directory), epoch))
    wrap(trainer_lib.Trainer, "fit", lambda self, phase, *a, **k: say("fit", phase))
    fit = trainer_lib.Trainer.fit
    def fit_and_show_shards(self, *args, **kwargs):
      states, hp, history = fit(self, *args, **kwargs)
      leaf = jax.tree.leaves(states.params)[0]
      split = leaf.sharding.spec == jax.sharding.PartitionSpec("ensemble")
      say("states", leaf.shape[0], "members split", split, "local shards",
          [s.data.shape[0] for s in leaf.addressable_shards])
      return states, hp, history
    trainer_lib.Trainer.fit = fit_and_show_shards
    wrap(outputs, "write_outputs", lambda *a, **k: say("write_outputs"))
    wrap(tensorboard.TensorBoard, "__init__", lambda *a, **k: say("tensorboard"))
    def mesh(*args, **kwargs):
      say("processes", jax.process_count(), "local devices", jax.local_device_count(),
          "mesh devices", jax.device_count())
    wrap(sharding, "make_mesh", mesh)
    sys.argv = ["launch.py"] + sys.argv[1:]
    app.run(launch.main)
""")


def _flag_value(v):
  if isinstance(v, tuple):
    return "(" + ",".join(repr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
  return str(v)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _write_csv(path):
  """120 short strings in 3 classes whose letters overlap: learnable, not trivially."""
  rng = np.random.default_rng(0)
  letters = {"a": "aeiou", "b": "bcdfg", "c": "xyzqw"}
  rows = ["text,label"]
  for label, own in letters.items():
    for _ in range(40):
      rows.append("".join(rng.choice(list(own + "lmnrst"), rng.integers(3, 8))) + f",{label}")
  path.write_text("\n".join(rows) + "\n")


def _two_processes(workdir, csv, kill_at=""):
  """Runs both processes of one distributed study; returns [(returncode, output)] by process."""
  port = _free_port()
  flags = [f"--config={os.path.join('configs', 'names.py')}:csv", f"--config.data.path={csv}",
           f"--config.workdir={workdir}", "--config.train.distributed=True",
           f"--config.train.coordinator_address=127.0.0.1:{port}",
           "--config.train.num_processes=2", "--config.train.heartbeat_timeout_seconds=5",
           "--config.train.init_timeout_seconds=60"]
  flags += [f"--config.{k}={_flag_value(v)}" for k, v in OVERRIDES.items()]
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  procs, logs = [], []
  for pid in range(2):
    # Output to files, not pipes: a process blocked on a full pipe would stall the other one too.
    logs.append(open(workdir.parent / f"{workdir.name}-{kill_at or 'run'}-{pid}.log", "w+"))
    procs.append(subprocess.Popen(
        [sys.executable, "-c", DRIVER, *flags, f"--config.train.process_id={pid}"], cwd=REPO,
        env=dict(env, KILL_AT_SAVE=kill_at if pid == 1 else ""), stdout=logs[-1],
        stderr=subprocess.STDOUT, text=True))
  deadline = time.monotonic() + RUN_TIMEOUT
  try:
    for p in procs:
      p.wait(timeout=max(1.0, deadline - time.monotonic()))
  finally:
    for p in procs:  # SIGKILL: JAX's preemption notifier takes SIGTERM in a distributed run
      if p.poll() is None:
        p.kill()
        p.wait()
  out = []
  for p, log in zip(procs, logs):
    log.seek(0)
    out.append((p.returncode, log.read()))
    log.close()
  return out


def _driver_lines(output):
  return [line[len("DRIVER "):] for line in output.splitlines() if line.startswith("DRIVER ")]


def _reference(csv, workdir):
  """The same study in this process, on one device (no mesh)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("names_cfg", os.path.join(REPO, "configs",
                                                                         "names.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("csv")
  config.data.path, config.workdir = str(csv), str(workdir)
  for key, value in OVERRIDES.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = value
  return study_lib.run(config, log=lambda msg: None)


def _members(results):
  """(rule, seed) -> member record, for the baseline and every round."""
  return {(m["rule"], m["seed"]): m for phase in [results["baseline"], *results["rounds"]]
          for m in phase}


@pytest.mark.slow
def test_two_processes_kill_one_resume_and_equal_one_process(tmp_path):
  csv = tmp_path / "tiny.csv"
  _write_csv(csv)
  workdir = tmp_path / "distributed"

  # Run A: process 1 dies before saving round 1's epoch 2; process 0 must fail, and say why.
  (rc0, out0), (rc1, out1) = _two_processes(workdir, csv, kill_at="round1:2")
  assert rc1 == -9, out1[-3000:]
  assert "killing myself" in _driver_lines(out1)
  assert rc0 != 0, out0[-3000:]
  assert "another process died" in out0 and "Rerun the same command" in out0, out0[-3000:]
  assert "processes 2 local devices 2 mesh devices 4" in _driver_lines(out0)
  assert not (workdir / "results.json").exists()
  assert sorted(p.name.split("-")[0] for p in (workdir / "phases").glob("*.json")) == [
      "baseline"]

  # Run B: the same command resumes: baseline reused, round 1 restored after epoch 1.
  (rc0, out0), (rc1, out1) = _two_processes(workdir, csv)
  assert rc0 == 0 and rc1 == 0, out0[-3000:] + out1[-3000:]
  for rank, out in enumerate((out0, out1)):
    lines = _driver_lines(out)
    assert "fit baseline" not in lines and "fit round1" in lines, lines
    # 3 members padded to 4, split over the 4 devices: each process holds 2 of them.
    assert "states 4 members split True local shards [1, 1]" in lines, lines
    assert any(line.startswith("restore round1-") and line.endswith(" 1") for line in lines), lines
    # One writer: only process 0 writes the reports and the TensorBoard logs.
    assert ("write_outputs" in lines) == (rank == 0), lines
    assert ("tensorboard" in lines) == (rank == 0), lines

  with open(workdir / "results.json") as f:
    got = _members(json.load(f))
  want = _members(_reference(csv, tmp_path / "single"))
  assert sorted(got) == sorted(want) and len(got) == 6
  for key, m in want.items():
    for split in ("validation", "test"):  # TPRs are counts / n: equal unless a prediction flips
      np.testing.assert_allclose(got[key][split]["tpr"], m[split]["tpr"], atol=1e-6,
                                 err_msg=f"{key} {split} TPR")
    np.testing.assert_allclose(got[key]["initial_class_weights"], m["initial_class_weights"],
                               rtol=1e-5, err_msg=f"{key} weights")
    np.testing.assert_allclose(got[key]["history"]["loss"], m["history"]["loss"], rtol=1e-4,
                               err_msg=f"{key} training loss")
