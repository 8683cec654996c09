"""Issue #25: misconfigurations end with one line, a hint and exit 2, never a traceback or a
C++ abort. Each failed on the code before the fix (a traceback, SIGABRT, or a silent accept)."""

import os
import socket
import subprocess
import sys

import ml_collections
import pytest

from configs import tabular as tabular_config
from lwi_jax.parallel import sharding
from lwi_jax.study import checks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launch(*args, timeout=120):
  return subprocess.run([sys.executable, "launch.py", "--config=configs/tabular.py", *args],
                        cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _one_line_exit_2(proc, needle):
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr and needle in proc.stderr, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and needle in errors[0], proc.stderr[-3000:]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_process_id_out_of_range_is_one_line(tmp_path):
  proc = _launch("--config.train.distributed=True", "--config.train.num_processes=2",
                 "--config.train.process_id=5", f"--config.train.coordinator_address="
                 f"127.0.0.1:{_free_port()}", f"--config.workdir={tmp_path / 'w'}")
  _one_line_exit_2(proc, "train.process_id=5 is out of range for train.num_processes=2")


def test_a_peer_that_never_comes_is_named_by_our_own_timeout(tmp_path):
  proc = _launch("--config.train.distributed=True", "--config.train.num_processes=2",
                 "--config.train.process_id=0", "--config.train.init_timeout_seconds=2",
                 f"--config.train.coordinator_address=127.0.0.1:{_free_port()}",
                 f"--config.workdir={tmp_path / 'w'}")
  _one_line_exit_2(proc, "process 0 of 2: process(es) [1] did not join")


@pytest.mark.parametrize("train, needle", [
    (dict(coordinator_address="localhost"), "must be host:port"),
    (dict(coordinator_address="localhost:http"), "must be host:port"),
    (dict(num_processes=2, process_id=2), "process ids are 0 .. 1"),
    (dict(process_id=-2), "a process id >= 0 (-1 = auto)"),
])
def test_distributed_fields_are_checked(train, needle):
  cfg = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=0, process_id=-1))
  cfg.update(train)
  with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
    sharding.check_launch(cfg)
  assert sharding.check_launch(ml_collections.ConfigDict(dict(
      coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1))) == dict(
          coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)


def _config(**fields):
  config = tabular_config.get_config()
  for path, value in fields.items():
    node = config
    *parents, leaf = path.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


@pytest.mark.parametrize("where", ["file", "under"])
def test_a_workdir_that_is_a_file_or_lies_under_one(tmp_path, where):
  (tmp_path / "f").write_text("x")
  workdir = str(tmp_path / "f") if where == "file" else str(tmp_path / "f" / "run" / "deeper")
  with pytest.raises(ValueError, match=rf"{where if where == 'under' else 'is'}.*the file "
                     rf"{tmp_path / 'f'}, not a directory"):
    checks.check_config(_config(workdir=workdir))


@pytest.mark.parametrize("fields, needle", [
    (dict(seeds=(0, 4294967296)), r"seeds=\(0, 4294967296\) is invalid.*<= 4294967295"),
    (dict(seeds=(4294967295,)), None),
    ({"data.max_categories": -1}, r"data.max_categories=-1 is invalid.*\[1, 1000\]"),
    ({"data.max_categories": 100000}, r"data.max_categories=100000 is invalid"),
])
def test_seeds_and_max_categories_are_bounded(tmp_path, fields, needle):
  config = _config(workdir=str(tmp_path / "w"), **fields)
  if needle is None:
    checks.check_config(config)
  else:
    with pytest.raises(ValueError, match=needle):
      checks.check_config(config)
