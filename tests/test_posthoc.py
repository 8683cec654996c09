"""Post-hoc logit offsets (lwi_jax/rules/posthoc.py) and the evenness measures every report
shows (metrics.imbalance_scores, per-class ΔTPR, most-confused pairs), against direct numpy."""

import numpy as np
import pytest

from lwi_jax import metrics
from lwi_jax.report import bootstrap
from lwi_jax.report import results as results_lib
from lwi_jax.rules import posthoc
from lwi_jax.rules import weighting


def _planted(seed=0, n=2000, bias=(1.0, -0.5, 0.3, -0.8, 0.0), signal=1.5):
  """Symmetric logits (every class equally learnable) plus a planted per-class bias."""
  rng = np.random.default_rng(seed)
  c = len(bias)
  labels = np.repeat(np.arange(c), n)
  logits = rng.normal(size=(c * n, c))
  logits[np.arange(c * n), labels] += signal
  return logits + np.asarray(bias), labels, np.asarray(bias)


def test_tpr_parity_recovers_planted_offsets_and_equalises_tprs():
  logits, labels, bias = _planted()
  c = len(bias)
  b = posthoc.fit_tpr_parity(logits, labels, c, max_drop_points=1.0)
  s0 = posthoc.tpr(logits.argmax(1), labels, c)
  s = posthoc.tpr(posthoc.adjusted_predictions(logits, b), labels, c)
  oracle = posthoc.tpr((logits - bias).argmax(1), labels, c)  # the bias removed exactly
  assert np.var(s0) > 0.01  # the premise: the bias makes the TPRs uneven
  # as even as removing the planted bias (up to one example per class of resolution) ...
  assert np.var(s) <= np.var(oracle) + 1e-12
  assert np.ptp(s) <= np.ptp(oracle) + 1.0 / 2000
  # ... by offsets close to minus the bias (both centred: argmax ignores a common shift)
  np.testing.assert_allclose(b - b.mean(), -(bias - bias.mean()), atol=0.1)
  acc = lambda pred: np.mean(pred == labels)
  assert acc(posthoc.adjusted_predictions(logits, b)) >= acc(logits.argmax(1)) - 0.01


@pytest.mark.parametrize("max_drop", [0.0, 0.5])
def test_tpr_parity_never_costs_more_than_the_accuracy_bound(max_drop):
  """Uneven learnability (no bias to remove): evening out the TPRs costs accuracy, and the fit
  stays within compare.max_accuracy_drop of the unadjusted accuracy on its split."""
  rng = np.random.default_rng(1)
  c, n = 4, 500
  labels = np.repeat(np.arange(c), n)
  logits = rng.normal(size=(c * n, c))
  logits[np.arange(c * n), labels] += np.array([0.5, 1.0, 2.0, 3.0])[labels]
  b = posthoc.fit_tpr_parity(logits, labels, c, max_drop_points=max_drop)
  acc0 = np.mean(logits.argmax(1) == labels)
  pred = posthoc.adjusted_predictions(logits, b)
  assert np.mean(pred == labels) >= acc0 - max_drop / 100 - 1e-12
  s0, s = posthoc.tpr(logits.argmax(1), labels, c), posthoc.tpr(pred, labels, c)
  assert np.var(s) <= np.var(s0)  # b = 0 is a candidate: never less even than no adjustment
  if max_drop > 0:
    assert np.var(s) < np.var(s0)


def _names_like(seed=0, n=1000):
  """Two confusable classes (a GB/US pair) with their boundary biased towards the first, and
  three easy ones: the weak class is weak because of the pair's overlap, so evening it costs
  accuracy, and the EG steps (in the logits' scale) overshoot the bound at once."""
  rng = np.random.default_rng(seed)
  c = 5
  labels = np.repeat(np.arange(c), n)
  logits = rng.normal(size=(c * n, c)) * 2.0
  logits[np.arange(c * n), labels] += 6.0
  pair = labels < 2
  z = rng.normal(size=pair.sum()) * 1.5 + np.where(labels[pair] == 0, 0.6, -0.6)
  logits[pair, 0], logits[pair, 1] = 8.0 + z, 7.0 - z
  return logits, labels


def test_tpr_parity_finds_the_offsets_where_the_accuracy_bound_binds():
  """Every EG iterate past b = 0 costs more than the bound here (the fit used to return 0):
  the segment towards the most even iterate holds offsets that are more even within it."""
  logits, labels = _names_like()
  b = posthoc.fit_tpr_parity(logits, labels, 5, max_drop_points=1.0)
  pred = posthoc.adjusted_predictions(logits, b)
  s0, s = posthoc.tpr(logits.argmax(1), labels, 5), posthoc.tpr(pred, labels, 5)
  assert np.var(s) < 0.95 * np.var(s0) and b[1] > b[0]  # the weak class of the pair gains
  assert np.mean(pred == labels) >= np.mean(logits.argmax(1) == labels) - 0.01 - 1e-12


def test_closed_form_matches_the_numpy_formula():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(300, 3))
  labels = rng.integers(0, 3, 300)
  logits[np.arange(300), labels] += np.array([0.1, 1.0, 3.0])[labels]
  for gamma in (0.0, 0.5, 2.0):
    b = posthoc.fit(posthoc.parse_one(f"logit_offsets:gamma={gamma}"), logits, labels, 3, 1.0)
    pred = logits.argmax(1)
    s = np.array([np.mean(pred[labels == k] == k) for k in range(3)])
    s = np.clip(s, weighting.SCORE_FLOOR, 1 - weighting.SCORE_FLOOR)
    np.testing.assert_allclose(b, -gamma * np.log(s / s.mean()), rtol=1e-12, atol=1e-12)
  np.testing.assert_array_equal(posthoc.closed_form_offsets([0.0, 1.0], 1.0),
                                -np.log(np.array([0.01, 0.99]) / 0.5))  # clipped like weights


@pytest.mark.parametrize("value, message", [
    (("logit_offsets:gamma=-1",), "gamma=-1 is invalid: it must be gamma >= 0"),
    (("logit_offsets:gamma=nan",), "it must be gamma >= 0"),
    (("logit_offsets:tau=1",), "'tau' is not a key of ['gamma']"),
    (("logit_offsets:gamma",), "must be written key=value"),
    (("tpr_parity:gamma=1",), "takes no hyper-parameter"),
    (("offsets",), "unknown post-hoc method 'offsets'"),
    (("tpr_parity", "tpr_parity"), "config.posthoc has duplicates"),
    ("tpr_parity", "must be a tuple of strings"),
])
def test_bad_posthoc_values_are_refused_in_one_line(value, message):
  with pytest.raises(ValueError) as e:
    posthoc.parse(value)
  assert message in str(e.value) and "\n" not in str(e.value)
  assert "config.posthoc" in str(e.value)


def test_parse_defaults_and_labels():
  specs = posthoc.parse(("logit_offsets", "logit_offsets:gamma=0.5", "tpr_parity"))
  assert [s.label for s in specs] == ["logit_offsets:gamma=1", "logit_offsets:gamma=0.5",
                                      "tpr_parity"]
  assert posthoc.parse(()) == []


def test_imbalance_scores_against_numpy():
  cm = np.array([[[8, 2, 0], [1, 5, 4], [0, 0, 10]], [[0, 5, 5], [0, 10, 0], [1, 1, 8]]])
  out = metrics.imbalance_scores(cm, 2, np)
  for i in range(2):
    n = cm[i].sum(1)
    s = np.diag(cm[i]) / n
    np.testing.assert_allclose(out["worst_k_tpr"][i], np.sort(s)[:2].mean())
    hm = 0.0 if (s == 0).any() else 3 / np.sum(1 / s)
    np.testing.assert_allclose(out["hmean_tpr"][i], hm)
    np.testing.assert_allclose(out["var_tpr_noise_corrected"][i],
                               np.var(s) - np.mean(s * (1 - s) / n))
  # the jax path gives the same numbers (float32)
  out32 = metrics.imbalance_scores(cm, 2)
  for k in out:
    np.testing.assert_allclose(np.asarray(out32[k]), out[k], rtol=1e-5, atol=1e-6)


def test_per_class_delta_tpr_interval_against_direct_numbers():
  rng = np.random.default_rng(3)
  labels = np.repeat(np.arange(3), 40)
  base = np.where(rng.random(120) < 0.7, labels, (labels + 1) % 3)[None]
  rule = np.where(rng.random(120) < 0.8, labels, (labels + 2) % 3)[None]
  out = bootstrap.compare_with_baseline(base, rule, labels, 3, 500, seed=0)
  d = out["delta_tpr"]
  direct = [np.mean(rule[0][labels == k] == k) - np.mean(base[0][labels == k] == k)
            for k in range(3)]
  np.testing.assert_allclose(d["mean"], direct)
  assert all(lo <= m <= hi for lo, m, hi in zip(d["ci_low"], d["mean"], d["ci_high"]))
  # each class's interval is the percentile interval of its own replicates: wider than 0
  assert all(hi > lo for lo, hi in zip(d["ci_low"], d["ci_high"]))


def test_most_confused_pairs_against_the_matrix():
  cms = [np.array([[5, 3, 0], [1, 7, 0], [0, 4, 4]]), np.array([[6, 1, 1], [4, 4, 0], [0, 2, 6]])]
  base = [{"status": "ok", "test": {"confusion": cm}} for cm in cms]
  rule = [{"status": "ok", "rule": "r", "test": {"confusion": np.eye(3, dtype=int) * 8}}]
  out = results_lib.confused_pairs(base, rule, top=2)
  mean = np.mean(cms, 0)
  assert [(p["true"], p["predicted"]) for p in out["pairs"]] == [(2, 1), (1, 0)]
  np.testing.assert_allclose(out["baseline"]["count"], [mean[2, 1], mean[1, 0]])
  np.testing.assert_allclose(out["baseline"]["share"], [mean[2, 1] / 8, mean[1, 0] / 8])
  assert out["rules"]["r"]["share"] == [0.0, 0.0]
