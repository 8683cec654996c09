"""Paired statistics across seeds: is a rule's effect larger than seed-to-seed noise?

Every rule member shares its seed's initialisation and data order with that seed's baseline,
so the natural unit is the per-seed difference (e.g. D = Var(s_baseline) - Var(s_rule), the
paper's formula 7). We report its mean, a 95% confidence interval and the two-sided p-value of
the paired t-test (a one-sample t-test on the differences).

Why the t-test: with the handful of seeds a study can afford (3-10), rank tests cannot reach
significance at all (Wilcoxon's smallest two-sided p with 5 pairs is 0.0625), while the t-test
is exact if the differences are normal and robust for symmetric differences. Its assumption is
stated in the report; with many rules, Holm's correction controls the family-wise error rate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats


def paired_summary(differences, confidence: float = 0.95) -> dict:
  """Mean, CI and paired-t p-value of per-seed differences (NaN where n < 2)."""
  d = np.asarray(differences, np.float64)
  n = int(d.size)
  mean = float(d.mean()) if n else math.nan
  out = {"n": n, "mean": mean, "sd": math.nan, "ci_low": math.nan, "ci_high": math.nan,
         "t": math.nan, "p_value": math.nan}
  if n < 2:
    return out
  sd = float(d.std(ddof=1))
  se = sd / math.sqrt(n)
  out["sd"] = sd
  if se == 0.0:  # identical differences: no noise estimate; exact test is degenerate.
    out.update(ci_low=mean, ci_high=mean, p_value=1.0 if mean == 0 else 0.0,
               t=0.0 if mean == 0 else math.copysign(math.inf, mean))
    return out
  t = mean / se
  q = scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)
  out.update(t=t, ci_low=mean - q * se, ci_high=mean + q * se,
             p_value=float(2 * scipy_stats.t.sf(abs(t), df=n - 1)))
  return out


def holm(p_values) -> np.ndarray:
  """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
  p = np.asarray(p_values, np.float64)
  out = np.full_like(p, np.nan)
  valid = np.flatnonzero(~np.isnan(p))
  order = valid[np.argsort(p[valid])]
  m = order.size
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p[i]))
    out[i] = running
  return out
