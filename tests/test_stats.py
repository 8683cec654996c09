"""The paired statistics against scipy on fixed numbers."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from lwi_jax.report import stats

BASE = np.array([0.031, 0.027, 0.035, 0.029, 0.033])
RULE = np.array([0.024, 0.026, 0.027, 0.022, 0.030])


def test_paired_summary_matches_scipy_ttest_rel():
  out = stats.paired_summary(BASE - RULE)
  ref = scipy_stats.ttest_rel(BASE, RULE)
  assert out["n"] == 5
  np.testing.assert_allclose(out["mean"], np.mean(BASE - RULE))
  np.testing.assert_allclose(out["t"], ref.statistic, rtol=1e-10)
  np.testing.assert_allclose(out["p_value"], ref.pvalue, rtol=1e-10)
  ci = ref.confidence_interval(0.95)
  np.testing.assert_allclose([out["ci_low"], out["ci_high"]], [ci.low, ci.high], rtol=1e-10)


def test_ci_contains_mean_and_shrinks_with_confidence():
  d = BASE - RULE
  wide, narrow = stats.paired_summary(d, 0.99), stats.paired_summary(d, 0.80)
  assert wide["ci_low"] < narrow["ci_low"] < narrow["mean"] < narrow["ci_high"] < wide["ci_high"]


def test_degenerate_cases():
  one = stats.paired_summary([0.01])
  assert one["n"] == 1 and np.isnan(one["p_value"]) and np.isnan(one["ci_low"])
  same = stats.paired_summary([0.002, 0.002, 0.002])
  assert same["p_value"] == 0.0 and same["ci_low"] == same["ci_high"] == pytest.approx(0.002)
  zero = stats.paired_summary([0.0, 0.0])
  assert zero["p_value"] == 1.0


def test_holm_matches_hand_computation():
  p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
  # sorted valid: 0.01 (x4) = .04, 0.03 (x3) = .09, 0.04 (x2) = .08 -> monotone .09, 0.5 (x1)
  np.testing.assert_allclose(stats.holm(p), [0.04, 0.09, 0.09, np.nan, 0.5])
