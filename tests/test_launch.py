"""launch.py end to end on a generated miniature CIFAR-10 directory, plus CLI / config errors."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = os.path.join("configs", "cifar.py")
TINY = ["--config.data.train_per_class=20", "--config.data.test_per_class=20",
        "--config.data.min_validation_per_class=2",
        "--config.model.widths=(4,8,8)", "--config.model.dense_width=16",
        "--config.train.epochs=1", "--config.train.batch_size=32",
        "--config.train.eval_batch_size=100",
        # the :cpu preset's study is 7 rules x 2 seeds; 2 rules x 2 seeds exercise the same paths
        "--config.rules=('uniform','inverse_tpr:gamma=1')"]


def _launch(args, timeout):
  return subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout)


def _final_members(results):
  """Member records of the final weighting round (one per rule x seed)."""
  if "members" in results:
    return results["members"]
  return results["rounds"][-1]


def _strict_json(path):
  def no_constants(name):
    raise ValueError(f"{path}: non-standard JSON constant {name}")
  with open(path) as f:
    return json.load(f, parse_constant=no_constants)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_cifar10_dir):
  workdir = tmp_path_factory.mktemp("launch") / "run"
  proc = _launch([f"--config={CONFIG}:cpu", f"--config.data.dir={tiny_cifar10_dir}", *TINY,
                  f"--config.workdir={workdir}"], timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return workdir, proc


@pytest.mark.slow
def test_results_json(run):
  workdir, proc = run
  results = _strict_json(workdir / "results.json")
  cfg = results["config"]
  rules, seeds = cfg["rules"], cfg["seeds"]
  assert results["dataset"]["class_names"][0] == "airplane"
  assert results["dataset"]["sizes"] == {"train": 180, "validation": 20, "test": 200}
  members = _final_members(results)
  assert len(members) == len(rules) * len(seeds) >= 4
  assert sorted((m["rule"], m["seed"]) for m in members) == \
      sorted((r, s) for r in rules for s in seeds)
  for m in members:
    t = m["test"]
    tpr = np.asarray(t["tpr"], np.float64)
    assert tpr.shape == (10,)
    assert ((tpr >= 0) & (tpr <= 1)).all()
    assert 0.0 <= t["accuracy"] <= 1.0
    np.testing.assert_allclose(t["var_tpr"], np.var(tpr), rtol=1e-5, atol=1e-7)
    if "confusion" in t:  # the scores agree with the stored confusion matrix
      cm = np.asarray(t["confusion"], np.float64)
      assert cm.shape == (10, 10)
      np.testing.assert_array_equal(cm.sum(1), np.full(10, 20))  # 20 test images per class
      np.testing.assert_allclose(tpr, np.diag(cm) / cm.sum(1), rtol=1e-5)
      np.testing.assert_allclose(t["accuracy"], np.trace(cm) / cm.sum(), rtol=1e-5)
  # In the same test as the run's other checks: under pytest-xdist, a second test using the
  # module fixture could land on the other worker and pay for a second launch.
  _no_temporary_files_left(workdir)
  _console_is_short_and_quiet(proc)


def _console_is_short_and_quiet(proc):
  """The project's own lines only: no absl/orbax INFO records, no TPU-backend probe notice."""
  assert not re.search(r"^I\d{4} ", proc.stderr, re.M), proc.stderr[:3000]
  assert "Unable to initialize backend" not in proc.stderr
  out = proc.stdout
  for line in ("[baseline] epoch 1/1", "[round1] epoch 1/1", "| baseline |", "Best rule:",
               "outputs: "):
    assert line in out, out
  assert len(out.splitlines()) <= 40, out


def _no_temporary_files_left(workdir):
  leftovers = []
  for root, dirs, files in os.walk(workdir):
    for name in dirs + files:
      if name.startswith(".") or name.endswith(".tmp") or name.endswith("-tmp"):
        leftovers.append(os.path.join(root, name))
  assert not leftovers, leftovers
  assert (workdir / "results.json").stat().st_size > 0


def test_bad_rule_exits_nonzero_listing_valid_rules(tmp_path):
  proc = _launch([f"--config={CONFIG}:cpu", "--config.rules=('nonsense',)",
                  f"--config.workdir={tmp_path / 'w'}"], timeout=120)
  assert proc.returncode != 0
  out = proc.stdout + proc.stderr
  assert "nonsense" in out
  for rule in ("uniform", "inverse_tpr", "class_difficulty", "effective_number",
               "inverse_frequency", "focal"):
    assert rule in out
  assert not (tmp_path / "w" / "results.json").exists()


@pytest.mark.parametrize("field, value, needle", [
    ("train.ensemble_strategy", "pmap", "train.ensemble_strategy"),
    ("model.conv_impl", "cudnn", "model.conv_impl"),
    ("data.source", "ftp", "data.source"),
])
def test_bad_field_is_named(tmp_path, tiny_cifar10_dir, field, value, needle):
  # In-process through study_lib.run (a subprocess per case would cost seconds of imports).
  from lwi_jax.study import study as study_lib
  spec = importlib.util.spec_from_file_location("cifar_config", os.path.join(REPO, CONFIG))
  cifar = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(cifar)
  config = cifar.get_config("cpu")
  config.data.dir = tiny_cifar10_dir
  config.workdir = str(tmp_path / "w")
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ValueError) as e:
    study_lib.run(config, log=lambda msg: None)
  assert needle in str(e.value) and repr(value) in str(e.value)
  assert not (tmp_path / "w" / "results.json").exists()
