"""A study killed mid-training and started again with the same command ends with the same results.

Three real `launch.py` processes on the generated miniature CIFAR-10 directory (conftest.py):
one uninterrupted (also checked as any finished run is: test_launch.check_finished_run), one
SIGKILLed right after its first retrain checkpoint (so inside the next epoch), then the same
command again. (A finished study run again reuses every phase and trains nothing:
tests/test_head_retrain.py, in process.)
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from test_launch import check_finished_run

pytestmark = pytest.mark.slow


def command(workdir, data_dir):
  return [sys.executable, os.path.join(REPO, "launch.py"), "--config=configs/cifar.py:cpu",
          f"--config.data.dir={data_dir}", "--config.data.train_per_class=40",
          "--config.data.test_per_class=10", "--config.data.min_validation_per_class=4",
          "--config.model.widths=(4,8,8)",
          "--config.model.dense_width=16", "--config.train.epochs=3",
          "--config.train.batch_size=24", "--config.train.eval_batch_size=100",
          # the rules whose state moves during training (weights every step, weights every
          # epoch, the sampler's order) and a head-only one (its phase starts from the
          # baseline's checkpoint); static weights resume like the baseline
          "--config.rules=('group_dro:eta=0.05','dynamic_difficulty:tau=1',"
          "'oversample:gamma=1','inverse_tpr:gamma=1,retrain=head')",
          "--config.seeds=(0,1)", "--config.compare.test=paired_t", f"--config.workdir={workdir}"]


def strip_timing(obj):
  if isinstance(obj, dict):
    return {k: strip_timing(v) for k, v in obj.items()  # every "*seconds" is a timing
            if not k.endswith("seconds") and k != "workdir"}
  if isinstance(obj, list):
    return [strip_timing(v) for v in obj]
  return obj


@pytest.fixture(scope="module")
def env():
  # The three processes compile the same programs: they share them through the session's
  # persistent compilation cache, which conftest.py names in the environment they inherit.
  return dict(os.environ, JAX_PLATFORMS="cpu")


def test_kill_and_resume_gives_the_same_results(tmp_path, env, tiny_cifar10_dir):
  data = tiny_cifar10_dir
  clean = tmp_path / "clean"
  done = subprocess.run(command(clean, data), cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
  # launch.py's end-to-end checks, on this run rather than on one more cold study of their own
  check_finished_run(clean, done, sizes={"train": 360, "validation": 40, "test": 100},
                     test_per_class=10, epochs=3)

  killed = tmp_path / "killed"
  proc = subprocess.Popen(command(killed, data), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while not glob.glob(str(killed / "checkpoints" / "round1-*" / "1")):
    assert proc.poll() is None, "run ended before its first retrain checkpoint"
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "results.json").exists()

  again = subprocess.run(command(killed, data), cwd=REPO, env=env, check=True, capture_output=True,
                         text=True, timeout=600)
  assert "[baseline] reusing finished phase" in again.stdout
  assert "[round1] resumed from the checkpoint after epoch" in again.stdout
  assert "[head1] training 2 members" in again.stdout  # from the baseline's checkpoint

  a = json.loads((clean / "results.json").read_text())
  b = json.loads((killed / "results.json").read_text())
  assert strip_timing(a) == strip_timing(b)
  assert (clean / "report.md").exists() and (killed / "plots" / "tpr_bars.png").exists()

