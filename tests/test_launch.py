"""launch.py's finished run (checked on tests/test_resume.py's run), CLI and config errors."""

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


def check_finished_run(workdir, proc, *, sizes, test_per_class, epochs):
  """What a finished `launch.py` run on the miniature CIFAR-10 directory leaves: strict JSON
  whose members are the rules x seeds with TPRs that agree with their confusion matrices, no
  temporary files, and a short console of the project's own lines.

  Called by tests/test_resume.py on its uninterrupted run: a cold `launch.py` study of its own
  cost this check 37 CPU-s (BUILD_NOTES, twelfth session), so it shares that run instead.
  """
  results = _strict_json(workdir / "results.json")
  cfg = results["config"]
  rules, seeds = cfg["rules"], cfg["seeds"]
  assert results["dataset"]["class_names"][0] == "airplane"
  assert results["dataset"]["sizes"] == sizes
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
    cm = np.asarray(t["confusion"], np.float64)  # the scores agree with the stored matrix
    assert cm.shape == (10, 10)
    np.testing.assert_array_equal(cm.sum(1), np.full(10, test_per_class))
    np.testing.assert_allclose(tpr, np.diag(cm) / cm.sum(1), rtol=1e-5)
    np.testing.assert_allclose(t["accuracy"], np.trace(cm) / cm.sum(), rtol=1e-5)
  _no_temporary_files_left(workdir)
  _console_is_short_and_quiet(proc, epochs, len(rules) * len(seeds))


def _console_is_short_and_quiet(proc, epochs, members):
  """The project's own lines only: no absl/orbax INFO records, no TPU-backend probe notice."""
  assert not re.search(r"^I\d{4} ", proc.stderr, re.M), proc.stderr[:3000]
  assert "Unable to initialize backend" not in proc.stderr
  out = proc.stdout
  for line in (f"[baseline] epoch {epochs}/{epochs}", f"[round1] epoch {epochs}/{epochs}",
               "| baseline |", "Best rule:", "outputs: "):
    assert line in out, out
  # per epoch a line in each of up to three phases; per member up to three (its weights, its
  # result, its rule's table row); 20 for the data, memory, tables' heads and the decision
  assert len(out.splitlines()) <= 20 + 3 * epochs + 3 * members, out


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
