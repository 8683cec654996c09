"""Statistics over test examples: bootstrap replicates, McNemar, report wiring, and calibration."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from lwi_jax import data as data_lib
from lwi_jax import metrics
from lwi_jax.report import bootstrap
from lwi_jax.report import markdown
from lwi_jax.report import results as results_lib
from lwi_jax.rules import scores
from lwi_jax.study import checks
from lwi_jax.study import trainer as trainer_lib

from tests.test_study import load_config


def test_summarize_matches_the_jax_metrics():
  cm = np.random.default_rng(0).integers(0, 30, (4, 5, 5))
  ref = trainer_lib.summaries_from_confusions(cm)
  got = metrics.summarize_confusion(cm, np)
  for key in metrics.SUMMARY_KEYS + ("tpr",):
    np.testing.assert_allclose(got[key], [r[key] for r in ref], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(got["var_tpr"][0],
                             float(metrics.summarize_confusion(jnp.asarray(cm[0]))["var_tpr"]),
                             rtol=1e-5)


def test_replicates_are_stratified_and_paired():
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(3), [10, 20, 30])
  preds = np.stack([labels, (labels + 1) % 3])  # member 0 always right, member 1 always wrong
  observed, reps = bootstrap.resampled_confusions(preds, labels, 3, 200, seed=0)
  np.testing.assert_array_equal(observed[0], np.diag([10, 20, 30]))
  np.testing.assert_array_equal(reps.sum(-1)[:, 0], np.tile([10, 20, 30], (200, 1)))  # supports
  preds = rng.integers(0, 3, (2, 60))
  preds[1] = preds[0]  # identical members: every replicate identical too (same indices)
  _, reps = bootstrap.resampled_confusions(preds, labels, 3, 50, seed=0)
  np.testing.assert_array_equal(reps[:, 0], reps[:, 1])
  assert reps[:, 0].std(0).max() > 0


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
  base = np.array([1, 1, 1, 1, 1, 0, 0, 1, 0, 0], bool)
  rule = np.array([0, 0, 0, 0, 1, 1, 0, 1, 0, 0], bool)
  m = bootstrap.mcnemar(base, rule)
  assert (m["baseline_only"], m["rule_only"]) == (4, 1)
  assert m["p_value"] == pytest.approx(scipy_stats.binomtest(1, 5, 0.5).pvalue)
  assert bootstrap.mcnemar(base, base)["p_value"] == 1.0


TPR = np.array([0.92, 0.85, 0.72, 0.6, 0.8])
EVEN = np.array([0.8, 0.8, 0.76, 0.72, 0.78])
PER_CLASS = 200


def _synthetic_predictions(rng, p_members, per_class, rho=0.6):
  """Predictions [M, N] of members with per-class TPRs p_members [M, C] on a fresh test set.

  Members share each example's latent difficulty z (correlation rho, as models that fail on the
  same hard examples), so the pairing matters; wrong predictions pick another class.
  """
  m, c = p_members.shape
  labels = np.repeat(np.arange(c), per_class)
  z = rng.standard_normal(labels.size)
  e = rng.standard_normal((m, labels.size))
  latent = np.sqrt(rho) * z + np.sqrt(1 - rho) * e
  correct = latent < scipy_stats.norm.ppf(p_members[:, labels])
  wrong = (labels + rng.integers(1, c, (m, labels.size))) % c
  return np.where(correct, labels, wrong), labels


def _study(rng, seeds, p_base, p_rule, samples):
  """One synthetic study: S seeds' baseline and rule members scored on one fresh test set."""
  preds, labels = _synthetic_predictions(rng, np.concatenate([p_base, p_rule]), PER_CLASS)
  return bootstrap.compare_with_baseline(preds[:seeds], preds[seeds:], labels, len(TPR),
                                         num_samples=samples, seed=int(rng.integers(1 << 30)))


def test_bootstrap_interval_of_D_is_calibrated_under_the_null_and_detects_a_planted_effect():
  """R synthetic studies (3 seeds, 5 classes x 200 test examples each, B = 400 replicates).

  The trained members are fixed (per-seed TPRs differ, as training runs do); every repetition
  draws a fresh test set from the population, which is the noise the bootstrap claims to cover.
  Null (the control): the rule's population TPRs equal its seed's baseline's, so D = 0 and
  Δaccuracy = 0. Coverage of the nominal 95% interval over R = 300 repetitions is
  Binomial(300, 0.95)/300 if calibrated: SD 1.26 points, so we accept [0.912, 0.988]
  (± 3 SD; a calibrated interval fails this with probability < 0.3%).
  Planted effect: more even TPRs (population D ≈ +1e-2): detected (p < 0.05) in >= 90%.
  """
  rng = np.random.default_rng(2026)
  seeds, reps = 3, 300
  p_base = np.clip(TPR + rng.normal(0, 0.03, (seeds, len(TPR))), 0.05, 0.95)  # seed effects
  covered = {"D": 0, "delta_accuracy": 0, "delta_worst_tpr": 0}
  for _ in range(reps):
    out = _study(rng, seeds, p_base, p_base, samples=400)
    for key in covered:
      covered[key] += out[key]["ci_low"] <= 0 <= out[key]["ci_high"]
  for key in ("D", "delta_accuracy"):
    assert 0.912 <= covered[key] / reps <= 0.988, (key, covered[key] / reps)
  # worst-class TPR is a minimum: its bootstrap is known to be conservative/biased; report only
  assert covered["delta_worst_tpr"] / reps >= 0.85

  p_rule = np.clip(EVEN + rng.normal(0, 0.03, (seeds, len(TPR))), 0.05, 0.95)
  true_d = np.mean(p_base.var(1) - p_rule.var(1))
  assert true_d > 5e-3
  detected = [_study(rng, seeds, p_base, p_rule, samples=400)["D"] for _ in range(20)]
  assert np.mean([d["p_value"] < 0.05 and d["ci_low"] > 0 for d in detected]) >= 0.9


def _phase(rng, rules, seeds, p, test_labels, val_confusion):
  preds = np.stack([_synthetic_predictions(rng, p[None], PER_CLASS)[0][0] for _ in seeds])
  c = len(TPR)
  test_cms = [np.zeros((c, c), int) for _ in seeds]
  for cm, pr in zip(test_cms, preds):
    np.add.at(cm, (test_labels, pr), 1)
  e = len(seeds)
  return {"labels": [f"{r}@seed{s}" for r, s in zip(rules, seeds)], "seeds": list(seeds),
          "rules": list(rules), "initial_class_weights": np.ones((e, c)),
          "final_class_weights": np.ones((e, c)), "sample_weights": np.ones((e, c)),
          "history": {k: np.ones((e, 2)) for k in trainer_lib.HISTORY_FIELDS},
          "validation": trainer_lib.summaries_from_confusions(np.stack([val_confusion] * e)),
          "test": trainer_lib.summaries_from_confusions(np.stack(test_cms)),
          "test_predictions": preds}


@pytest.mark.parametrize("test", ["bootstrap", "paired_t"])
def test_report_names_the_method_and_shows_score_intervals(test):
  rng = np.random.default_rng(3)
  config = load_config("names")
  config.seeds, config.rules, config.compare.test = (0, 1), ("inverse_tpr:gamma=1",), test
  config.compare.bootstrap_samples = 200
  specs = checks.validate_config(config)
  labels = np.repeat(np.arange(len(TPR)), PER_CLASS).astype(np.int32)
  split = data_lib.Split(np.zeros((labels.size, 2), np.int32), labels)
  data = data_lib.ClassificationData(split, split, split, tuple("abcde"))
  val_cm = np.diag([50, 45, 40, 30, 42]) + 2
  base = _phase(rng, ["baseline"] * 2, [0, 1], TPR, labels, val_cm)
  round1 = _phase(rng, ["inverse_tpr:gamma=1"] * 2, [0, 1], EVEN, labels, val_cm)
  round1["scores_used"] = [np.diag(val_cm) / val_cm.sum(1)] * 2
  results = results_lib.assemble_results(config, data, base, [round1], specs, 1.0)
  cfg = config.scores
  results["scores"] = {"config": cfg.to_dict(), "seeds": [
      dict(scores.score_record(val_cm, cfg, "validation"), seed=s) for s in (0, 1)]}
  for spec, member in zip(specs, results["rounds"][0]):
    member["weight_interval"] = scores.weight_intervals(spec.rule, results["scores"]["seeds"][0],
                                                        data.class_counts, 2, cfg, 0)
  row = results["comparisons"][0][0]
  assert len(row["mcnemar"]) == 2  # McNemar whatever the interval method
  assert row["D"].get("method") == ("bootstrap" if test == "bootstrap" else None)
  assert row["D"]["mean"] == pytest.approx(
      np.mean([b["var_tpr"] - r["var_tpr"] for b, r in zip(base["test"], round1["test"])]))
  report = markdown.report_markdown(results)
  assert f"Statistics: `{test}`" in report
  assert "McNemar" in report and "Wilson" in report
  assert "Scores behind the weights (method `validation`)" in report
  low, high = scores.wilson_interval(52, 60)  # class a: 50 + 2 right of 60 scored
  assert f"86.7 [{low * 100:.1f}, {high * 100:.1f}]" in report
