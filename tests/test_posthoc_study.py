"""Post-hoc rows end to end: a tiny in-process study (a names-format CSV, a 4-unit ConvLSTM,
1 epoch) saves its logits, fits offsets on the scores' split, reports the rows with their cost,
and refuses to fit on a phase whose logits are gone."""

import json
import os

import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax import metrics
from lwi_jax.rules import posthoc
from lwi_jax.study import phases
from lwi_jax.study import study as study_lib

from test_config_checks import csv_config, write_csv

ARMS = ("logit_offsets:gamma=1", "tpr_parity")


def _run(tmp, method):
  config = csv_config(write_csv(tmp / "d.csv", classes=("aa", "bb", "cc")),
                      workdir=str(tmp / f"w_{method}"))
  config.posthoc = ARMS
  config.seeds = (0, 1)
  config.scores.method = method
  config.scores.folds = 2
  config.compare.bootstrap_samples = 200  # the statistics' paths, not their precision
  log = []
  return config, study_lib.run(config, log=log.append), log


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """Crossfit: the baseline's offsets come from out-of-fold logits, the rules' from validation
  (one study covers both fitting splits)."""
  return _run(tmp_path_factory.mktemp("posthoc"), "crossfit")


def test_results_hold_the_posthoc_rows_offsets_and_costs(study):
  config, results, log = study
  with open(os.path.join(config.workdir, "results.json")) as f:
    saved = json.load(f)
  rules = [r["rule"] for r in saved["comparisons"][-1]]
  expected = [f"{src}+{arm}" for arm in ARMS for src in ("baseline", "inverse_tpr:gamma=1")]
  assert rules == ["inverse_tpr:gamma=1", *expected]
  assert len(saved["rounds"][-1]) == 2  # the rounds keep their trained members only
  members = saved["posthoc"]
  assert sorted((m["rule"], m["seed"]) for m in members) == sorted(
      (r, s) for r in expected for s in (0, 1))
  for m in members:
    assert len(m["posthoc"]["offsets"]) == 3
    assert m["posthoc"]["fit_split"] == ("out_of_fold" if m["rule"].startswith("baseline+")
                                         else "validation")  # a rule has no out-of-fold logits
    assert np.isfinite(m["posthoc"]["offsets"]).all()
  rows = {r["rule"]: r for r in saved["comparisons"][-1]}
  assert saved["phase_seconds"]["baseline"] > 0 and rows["inverse_tpr:gamma=1"]["train_seconds"] > 0
  for arm in ARMS:
    assert rows[f"baseline+{arm}"]["train_seconds"] == 0  # no retraining
    assert (rows[f"inverse_tpr:gamma=1+{arm}"]["train_seconds"]
            == rows["inverse_tpr:gamma=1"]["train_seconds"])
    for key in ("D", "delta_accuracy", "delta_tpr"):  # the same statistics as a rule
      assert key in rows[f"baseline+{arm}"]
  assert {r["rule"] for r in saved["selection"]["front"]["test"]} >= set(expected)
  report = open(os.path.join(config.workdir, "report.md")).read()
  for needle in ("Is retraining worth it?", "noise-corrected Var", "Who paid",
                 "Most-confused pairs", "Post-hoc offsets", "| train s |"):
    assert needle in report
  assert any(line.startswith("post-hoc: logit_offsets:gamma=1, tpr_parity on 4 members")
             and "out-of-fold (baseline)" in line
             for line in log)


def test_posthoc_predictions_are_the_saved_logits_plus_offsets(study):
  config, results, _ = study
  phase_files = sorted(os.listdir(os.path.join(config.workdir, "phases")))
  base_json = next(f for f in phase_files if f.startswith("baseline") and f.endswith(".json"))
  logits = phases.read_logits(os.path.join(config.workdir, "phases", base_json))
  assert logits["test"].dtype == np.float32 and logits["test"].shape[0] == 2
  labels = data_lib.load_dataset(config.data).test.labels
  for member in results["posthoc"]:
    if not member["rule"].startswith("baseline+"):
      continue
    pred = posthoc.adjusted_predictions(logits["test"][member["seed"]],
                                        member["posthoc"]["offsets"])
    np.testing.assert_array_equal(member["test"]["confusion"], metrics.confusion_counts(pred, labels, 3))
  # with no offsets, the saved logits give the baseline's own saved confusion
  for base in results["baseline"]:
    pred = logits["test"][base["seed"]].argmax(-1)
    np.testing.assert_array_equal(base["test"]["confusion"], metrics.confusion_counts(pred, labels, 3))


def test_out_of_fold_logits_are_the_scores_behind_the_weights(study):
  config, results, _ = study
  path = next(os.path.join(config.workdir, "phases", f)
              for f in os.listdir(os.path.join(config.workdir, "phases"))
              if f.startswith("crossfit") and f.endswith(".json"))
  oof = phases.read_logits(path)["out_of_fold"]
  with open(path) as f:
    saved = json.load(f)
  # the argmax of the out-of-fold logits is the out-of-fold confusion the scores came from
  labels = data_lib.load_dataset(config.data).train.labels
  for i, cm in enumerate(saved["out_of_fold_confusion"]):
    np.testing.assert_array_equal(metrics.confusion_counts(oof[i].argmax(-1), labels, 3), cm)
  # a rule+post-hoc row fitted on the selection split is compared, never chosen there
  chosen = results["selection"]["chosen"]
  assert chosen is None or not chosen["rule"].startswith("inverse_tpr:gamma=1+")


def test_posthoc_on_a_phase_without_logits_is_refused_before_training(study):
  config, _, _ = study
  phase_dir = os.path.join(config.workdir, "phases")
  for f in os.listdir(phase_dir):
    if f.endswith(".logits.npz"):
      os.remove(os.path.join(phase_dir, f))
  log = []
  with pytest.raises(ValueError) as e:
    study_lib.run(config, log=log.append)
  msg = str(e.value)
  assert "config.posthoc=" in msg and "has none" in msg and "\n" not in msg
  assert not any("training" in line for line in log)
