"""Issue 11, "NaN and infinity become ordinary-looking results" and "Finished phases are reused
after the data changed": each probe reproduced, now caught.

Probes: inverse_tpr:gamma=1e9 / class_difficulty:tau=1e9 gave weights [0, nan]; SGD at learning
rate 1e30 gave NaN loss from epoch 1, weights were still derived from the NaN baseline, the run
exited 0, report.md showed ordinary numbers and results.json stored NaN as null. Renaming a
class in the CSV reused both phases and reported old TPRs under the new class names.
One tiny in-process study (a names-format CSV, a 4-unit ConvLSTM, 1 epoch) serves all of them.
"""

import json
import math
import os

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax import member
from lwi_jax import optim
from lwi_jax import train
from lwi_jax.parallel import ensemble
from lwi_jax.parallel import programs
from lwi_jax.report import markdown
from lwi_jax.report import results as results_lib
from lwi_jax.rules import members
from lwi_jax.rules import weighting
from lwi_jax.runtime import errors
from lwi_jax.runtime import io_utils
from lwi_jax.study import study as study_lib
from lwi_jax.study import trainer as trainer_lib

from test_config_checks import csv_config, write_csv


# ------------------------------------------------------------ weight rules refuse overflow


@pytest.mark.parametrize("rule, hparams, name", [
    ("inverse_tpr", {"gamma": 1e9}, "gamma"),
    ("class_difficulty", {"tau": 1e9}, "tau"),
])
def test_extreme_exponent_is_refused_naming_rule_hparam_and_class(rule, hparams, name):
  scores, counts = np.array([0.9, 0.3]), np.array([10, 10])
  with pytest.raises(ValueError) as e:
    weighting.compute_weights(rule, scores, counts, ("cat", "dog"), **hparams)
  msg = str(e.value)
  assert rule in msg and f"{name}=1e+09" in msg and ("'cat'" in msg or "'dog'" in msg)
  assert "smaller" in msg


@pytest.mark.parametrize("text", ["drw:gamma=1e9", "oversample:gamma=1e9",
                                  "dynamic_difficulty:tau=1e9"])
def test_training_rules_built_on_weights_refuse_overflow_too(text):
  spec = members.parse_rule(text)
  with pytest.raises(ValueError) as e:
    spec.member_hparams(np.array([0.9, 0.3]), np.array([5, 5]), 4, ("a", "b"))
  assert f"config.rules {spec.label!r}" in str(e.value) and "1e+09" in str(e.value)
  assert "float32" in str(e.value) and ("'a'" in str(e.value) or "'b'" in str(e.value))


def test_ordinary_exponents_still_pass():
  w = weighting.compute_weights("inverse_tpr", np.array([0.9, 0.3]), np.array([5, 5]), gamma=5)
  assert np.isfinite(np.asarray(w)).all() and (np.asarray(w) > 0).all()


# ------------------------------------------------ the finite flag inside the compiled epoch


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    del train
    return nn.Dense(2)(x.astype(jnp.float32))


def test_finite_flag_is_per_member_and_computed_in_the_epoch_program():
  model = _Linear()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
  y = jnp.asarray(np.repeat([0, 1], 16), jnp.int32)
  tx = optim.make_optimizer(csv_config("/unused").optimizer, 4, 1)
  states = programs.init_ensemble(model, tx, x[:1], [0, 0])
  # Member 1's class weights are NaN (what an overflowing rule used to produce).
  hp = ensemble.stack([member.MemberHParams.create(np.ones(2)),
                       member.MemberHParams.create(np.array([np.nan, 1.0]))])
  fn = programs.ensemble_train_epoch_fn(8, "none", "vmap")
  states, _, m = fn(states, hp, programs.ensemble_epoch_keys([0, 0], 0), jnp.int32(0), x, y)
  np.testing.assert_array_equal(np.asarray(m["finite"]), [True, False])
  assert np.isfinite(np.asarray(m["loss"][0])) and np.isnan(np.asarray(m["loss"][1]))
  # The diverged member does not leak into its neighbour.
  assert bool(train.all_finite(ensemble.unstack(states.params, 0)))
  assert not bool(train.all_finite(ensemble.unstack(states.params, 1)))


# ------------------------------------------------------------------- JSON keeps NaN visible


def test_json_writes_nan_and_inf_as_strings_never_null(tmp_path):
  path = tmp_path / "r.json"
  io_utils.atomic_write_json(str(path), {"a": math.nan, "b": [math.inf, -math.inf, 1.5],
                                         "c": np.array([np.nan, 2.0])})
  text = path.read_text()
  assert "null" not in text and "NaN" not in text
  loaded = json.loads(text)
  assert loaded == {"a": "nan", "b": ["inf", "-inf", 1.5], "c": ["nan", 2.0]}
  back = io_utils.decode_non_finite(loaded)
  assert math.isnan(back["a"]) and back["b"][:2] == [math.inf, -math.inf]


# ---------------------------------------------------- comparisons exclude non-finite members


def _rec(label, rule, seed, status, var, acc=0.5):
  test = {"var_tpr": var, "accuracy": acc, "macro_f1": acc, "worst_tpr": acc,
          "tpr": np.array([acc, acc])}
  return {"label": label, "rule": rule, "seed": seed, "status": status, "round": 1,
          "test": test}


def test_compare_rules_leaves_out_non_finite_pairs():
  base = [_rec("b0", "baseline", 0, "ok", 0.04), _rec("b1", "baseline", 1, "non_finite", 0.25),
          _rec("b2", "baseline", 2, "ok", 0.02)]
  rule = [_rec("r0", "r", 0, "ok", 0.01), _rec("r1", "r", 1, "source_non_finite", 0.0),
          _rec("r2", "r", 2, "non_finite", 0.25)]
  only_bad = [_rec("q0", "q", 0, "non_finite", 0.0)]
  row, bad_row = results_lib.compare_rules(base, rule + only_bad)
  assert row["n"] == 1 and row["seeds"] == [0] and row["excluded"] == ["r1", "r2"]
  assert row["D"]["mean"] == pytest.approx(0.03)
  assert bad_row["n"] == 0 and bad_row["excluded"] == ["q0"] and math.isnan(bad_row["D"]["mean"])


# ----------------------------------- end to end: learning rate 1e30 on a tiny CSV (in-process)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("nan")
  config = csv_config(write_csv(tmp / "d.csv"), workdir=str(tmp / "w"))
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1e30
  config.rules = ("inverse_tpr:gamma=1", "focal")
  log = []
  results = study_lib.run(config, log=log.append)
  return config, results, "\n".join(log)


def test_diverged_run_is_reported_by_name_and_epoch(diverged):
  config, results, log = diverged
  assert results["status"] == "non_finite"
  assert "baseline@seed0 went non-finite" in log and "in epoch 1" in log
  assert "not derived" in log  # no weights from the NaN baseline
  base = results["baseline"][0]
  assert base["status"] == "non_finite" and base["non_finite_epoch"] == 1
  for m in results["rounds"][0]:
    assert m["status"] == "source_non_finite"
    np.testing.assert_array_equal(m["initial_class_weights"], np.ones(2))
  assert all(row["n"] == 0 for row in results["comparisons"][0])
  line = markdown.failure_line(results)
  assert line.startswith("FAILED") and "baseline@seed0 (baseline, epoch 1)" in line


def test_diverged_run_outputs_flag_it(diverged):
  config, _, _ = diverged
  report = open(os.path.join(config.workdir, "report.md")).read()
  assert "FAILED: non-finite members" in report and "`baseline@seed0` (baseline)" in report
  assert "excluded" in report
  with open(os.path.join(config.workdir, "results.json")) as f:
    text = f.read()
  saved = json.loads(text)
  assert saved["status"] == "non_finite"
  # null only where "none" is meant (no epoch, no best rule), never for a number.
  assert _null_keys(saved) <= {"epoch", "non_finite_epoch", "rule"}, _null_keys(saved)
  assert saved["baseline"][0]["history"]["loss"][0] == "nan"
  csv_text = open(os.path.join(config.workdir, "summary.csv")).read()
  assert ",non_finite," in csv_text and ",source_non_finite," in csv_text


def _null_keys(obj, key=None) -> set:
  if obj is None:
    return {key}
  if isinstance(obj, dict):
    return set().union(*(_null_keys(v, k) for k, v in obj.items()))
  if isinstance(obj, list):
    return set().union(*(_null_keys(v, key) for v in obj))
  return set()


def test_launch_exits_3_with_one_line(diverged, monkeypatch, capsys):
  import launch  # noqa: E402  (the real entry point, with study_lib.run stubbed to these results)
  _, results, _ = diverged
  monkeypatch.setattr(study_lib, "run", lambda config: results)
  launch.flags.FLAGS(["launch.py", "--config=configs/names.py:csv"])
  with pytest.raises(SystemExit) as e:
    launch.main(["launch.py"])
  assert e.value.code == errors.EXIT_NON_FINITE == 3
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("FAILED")


def test_edited_csv_never_reuses_a_phase(diverged, monkeypatch):
  # Renaming class 'aa' to 'zz' flips the sorted class order; the old TPRs used to be reported
  # under the new names because both phases were reused.
  # (Runs last: it edits the fixture's CSV.)
  config, first, first_log = diverged
  assert "reusing" not in first_log
  log = []
  study_lib.run(config, log=log.append)
  assert sum("reusing finished phase" in line for line in log) == 2  # same data: reused
  assert first["dataset"]["content_hash"] == data_lib.content_hash(
      data_lib.load_dataset(config.data))
  write_csv(config.data.path, classes=("zz", "bb"))

  def train_again(self, phase, *args, **kwargs):  # (retraining itself is tested elsewhere)
    raise RetrainedError(phase)

  monkeypatch.setattr(trainer_lib.Trainer, "fit", train_again)
  log.clear()
  study = study_lib.Study(config, log=log.append)
  with pytest.raises(RetrainedError, match="baseline"):
    study.run()
  assert not any("reusing" in line for line in log), log
  assert study.data.class_names == ("bb", "zz")
  assert study.data_hash != first["dataset"]["content_hash"]


class RetrainedError(Exception):
  pass
