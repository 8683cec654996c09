"""Statistics over test examples: paired, stratified bootstrap and McNemar's test.

A per-class TPR on 1,000 test images has a standard error of ~1.1 points, and every seed is
scored on the SAME test set, so averaging seeds cannot remove that noise and a t-test over 3
seeds (2 degrees of freedom) does not see it at all. This module resamples the test examples:

- **stratified**: each replicate draws, within every class, as many examples (with replacement)
  as the class has, so class supports, hence the meaning of a per-class TPR, stay fixed;
- **paired**: a replicate's indices are applied to the baseline and the rule alike (and, since
  every seed is scored on the same test set, to every seed), so the noise they share cancels;
- **combined across seeds**: a replicate's statistic is the mean over seeds of the per-seed
  paired difference (rule - baseline; D = Var(baseline) - Var(rule)), the same point estimate
  the paired t-test reports.

The interval is the bootstrap percentile interval and the two-sided p-value its inversion,
p = 2 min(P*(T* <= 0), P*(T* >= 0)), so "CI excludes 0" and "p < 0.05" agree. What it
conditions on: the trained members of the given seeds. It answers "is the difference larger than
the test set's sampling noise?"; the spread of training runs enters only through the seeds that
were trained (the paired t-test, `compare.test=paired_t`, looks at that spread instead and
ignores the test set's noise). tests/test_bootstrap.py checks the interval's coverage on
synthetic studies with a null and a planted effect.

Replicates are per-class counts, not confusion matrices (`resampled_counts`): with the
multinomial resampling counts [B, n_c] of class c, a replicate's correct predictions of class c
are counts @ correct [n_c, M], and the examples predicted as each class (precision, hence
macro-F1) one weighted bincount per member. Memory and work are O(B * M * C) and O(B * M * N),
where the confusion matrices were O(B * M * C^2) (1,000 classes: terabytes). Every count is an
exact integer in float64 and the scores use the same formulas (metrics.summarize_counts), so the
results are the same numbers `resampled_confusions` (kept as the reference) gives.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats

from lwi_jax import metrics


def _checked(predictions, labels, seed: int):
  """(predictions [M, N] int64, labels [N] int64, the resampling generator of `seed`)."""
  predictions = np.asarray(predictions, np.int64)
  labels = np.asarray(labels, np.int64)
  if labels.shape != (predictions.shape[1],):
    raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} disagree")
  return predictions, labels, np.random.default_rng([int(seed), 3_000_017])


def _class_counts(rng, n_c: int, num_samples: int) -> np.ndarray:
  """[B, n_c]: how often each of a class's n_c examples is drawn (n_c draws with replacement)
  in each replicate; both formulations consume the generator identically through this."""
  draws = rng.integers(0, n_c, (num_samples, n_c))
  return np.bincount((draws + n_c * np.arange(num_samples)[:, None]).ravel(),
                     minlength=num_samples * n_c).reshape(num_samples, n_c)


def resampled_confusions(predictions: np.ndarray, labels: np.ndarray, num_classes: int,
                         num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(observed [M, C, C], replicates [B, M, C, C]) of members' predictions [M, N].

  Every member sees the same stratified resample of the examples in a replicate (pairing).
  """
  predictions, labels, rng = _checked(predictions, labels, seed)
  m = predictions.shape[0]
  observed = np.zeros((m, num_classes, num_classes), np.int64)
  reps = np.zeros((num_samples, m, num_classes, num_classes), np.float64)
  for c in range(num_classes):
    idx = np.flatnonzero(labels == c)
    if idx.size == 0:
      continue
    onehot = np.eye(num_classes)[predictions[:, idx]]  # [M, n_c, C]
    observed[:, c, :] = onehot.sum(1)
    counts = _class_counts(rng, idx.size, num_samples)
    flat = onehot.transpose(1, 0, 2).reshape(idx.size, m * num_classes)
    # einsum's own loop, not BLAS: a multi-threaded BLAS on these small products is ~100x
    # slower on a loaded machine (thread contention), and this is not where time matters
    reps[:, :, c, :] = np.einsum("bi,ik->bk", counts.astype(np.float64), flat
                                 ).reshape(num_samples, m, num_classes)
  return observed, reps


PENDING_CELLS = 1 << 22  # (replicate, example) cells gathered before one bincount per member


def resampled_counts(predictions: np.ndarray, labels: np.ndarray, num_classes: int,
                     num_samples: int, seed: int) -> tuple[tuple, tuple]:
  """Per-class counts of `resampled_confusions`' matrices, without the matrices.

  Returns (observed, replicates), each (tp, support, predicted, total): tp, support and
  predicted are [M, C] (observed) and [B, M, C] (replicates), float64; total [M] / [B, M]. The
  same random draws as `resampled_confusions` (class by class, same generator).
  """
  predictions, labels, rng = _checked(predictions, labels, seed)
  m = predictions.shape[0]
  obs = [np.zeros((m, num_classes), np.float64) for _ in range(3)]
  reps = [np.zeros((num_samples, m, num_classes), np.float64) for _ in range(3)]
  offsets = num_classes * np.arange(num_samples)[:, None]
  # Examples predicted as each class, per replicate: (replicate, predicted class) cells and
  # their resampling counts, gathered over classes and added by one weighted bincount per
  # member every PENDING_CELLS cells (a bincount per class would cost O(B * C) each: O(B * C^2)).
  pending, size = [], 0

  def flush():
    for k in range(m):
      cells = np.concatenate([p[0][k] for p in pending])
      weights = np.concatenate([p[1] for p in pending])
      reps[2][:, k, :] += np.bincount(cells, weights, minlength=num_samples * num_classes
                                      ).reshape(num_samples, num_classes)
    pending.clear()

  for c in range(num_classes):
    idx = np.flatnonzero(labels == c)
    if idx.size == 0:
      continue
    preds = predictions[:, idx]  # [M, n_c]
    obs[0][:, c] = (preds == c).sum(1)
    obs[1][:, c] = idx.size
    for k in range(m):
      obs[2][k] += np.bincount(preds[k], minlength=num_classes)
    counts = _class_counts(rng, idx.size, num_samples)
    counts = counts.astype(np.float64)
    # einsum's own loop, not BLAS (see resampled_confusions)
    reps[0][:, :, c] = np.einsum("bi,ik->bk", counts, (preds == c).T.astype(np.float64))
    reps[1][:, :, c] = idx.size
    pending.append(([(offsets + preds[k][None, :]).ravel() for k in range(m)], counts.ravel()))
    size += counts.size
    if size >= PENDING_CELLS:
      flush()
      size = 0
  if pending:
    flush()
  return (*obs, obs[1].sum(-1)), (*reps, reps[1].sum(-1))


def summary(point: float, draws: np.ndarray, confidence: float = 0.95) -> dict:
  """Point estimate, bootstrap SD, percentile interval and its two-sided p-value."""
  draws = np.asarray(draws, np.float64)
  b = draws.size
  alpha = (1 - confidence) / 2
  below, above = np.sum(draws <= 0), np.sum(draws >= 0)
  p = min(1.0, 2 * min(below + 1, above + 1) / (b + 1))
  return {"n": b, "mean": float(point), "sd": float(draws.std(ddof=1)),
          "ci_low": float(np.quantile(draws, alpha)),
          "ci_high": float(np.quantile(draws, 1 - alpha)), "p_value": p, "method": "bootstrap"}


def per_class_summary(point: np.ndarray, draws: np.ndarray, confidence: float = 0.95) -> dict:
  """`summary` of every column: point [C], draws [B, C] -> lists of C means, intervals, p."""
  draws = np.asarray(draws, np.float64)
  b = draws.shape[0]
  alpha = (1 - confidence) / 2
  below, above = np.sum(draws <= 0, 0), np.sum(draws >= 0, 0)
  p = np.minimum(1.0, 2 * np.minimum(below + 1, above + 1) / (b + 1))
  return {"mean": np.asarray(point, np.float64).tolist(),
          "ci_low": np.quantile(draws, alpha, axis=0).tolist(),
          "ci_high": np.quantile(draws, 1 - alpha, axis=0).tolist(), "p_value": p.tolist()}


def mcnemar(baseline_correct: np.ndarray, rule_correct: np.ndarray) -> dict:
  """Exact McNemar test of two classifiers on the same examples (binomial on the discordant)."""
  b = int(np.sum(baseline_correct & ~rule_correct))  # only the baseline right
  c = int(np.sum(~baseline_correct & rule_correct))  # only the rule right
  p = min(1.0, 2 * float(scipy_stats.binom.cdf(min(b, c), b + c, 0.5)))  # b + c = 0: 1
  return {"baseline_only": b, "rule_only": c, "p_value": p}


def compare_with_baseline(baseline_preds: np.ndarray, rule_preds: np.ndarray,
                          labels: np.ndarray, num_classes: int, num_samples: int,
                          seed: int = 0, confidence: float = 0.95) -> dict:
  """Bootstrap summaries of D, Δaccuracy, Δmacro-F1, Δworst-class TPR, and McNemar per seed.

  Args:
    baseline_preds, rule_preds: predicted classes [S, N]; row s of each comes from seed s
      (paired).
    labels: the true classes [N] of the shared test set.
    num_classes: C.
    num_samples: bootstrap replicates (config.compare.bootstrap_samples); 0: McNemar only.
    seed: the resampling seed (config.compare.bootstrap_seed).
    confidence: of the percentile intervals.

  Returns:
    {"D", "delta_accuracy", "delta_macro_f1", "delta_worst_tpr"}: `summary` dicts (mean, sd,
    interval, p); "delta_tpr": each class's TPR change (`per_class_summary`: who paid for the
    evenness); "mcnemar": one exact test per seed.
  """
  baseline_preds, rule_preds = np.asarray(baseline_preds), np.asarray(rule_preds)
  if baseline_preds.shape != rule_preds.shape or baseline_preds.ndim != 2:
    raise ValueError(f"paired predictions must both be [seeds, N]: {baseline_preds.shape} vs "
                     f"{rule_preds.shape}")
  s = baseline_preds.shape[0]
  labels = np.asarray(labels)
  mcnemars = [mcnemar(baseline_preds[i] == labels, rule_preds[i] == labels) for i in range(s)]
  if num_samples == 0:  # compare.test != 'bootstrap': McNemar only, no resampling work
    return {"mcnemar": mcnemars}
  observed, reps = resampled_counts(np.concatenate([baseline_preds, rule_preds]), labels,
                                    num_classes, num_samples, seed)
  obs = metrics.summarize_counts(*observed, np)
  rep = metrics.summarize_counts(*reps, np)

  def paired(key, sign):
    diff = lambda x: sign * (x[..., s:] - x[..., :s]).mean(-1)
    return summary(diff(obs[key]), diff(rep[key]), confidence)

  out = {name: paired(key, sign) for name, key, sign in metrics.PAIRED_DIFFERENCES}
  per_class = lambda x: (x[..., s:, :] - x[..., :s, :]).mean(-2)
  out["delta_tpr"] = per_class_summary(per_class(obs["tpr"]), per_class(rep["tpr"]), confidence)
  out["mcnemar"] = mcnemars
  return out


def compare_rounds(baseline_phase: dict, round_phases: list[dict], labels: np.ndarray,
                   num_classes: int, num_samples: int, seed: int) -> list[dict] | None:
  """Per round, rule -> compare_with_baseline, from the phases' saved test predictions.

  None when a phase was saved before predictions were (an old workdir): the caller falls back.
  """
  phases = [baseline_phase, *round_phases]
  if any(p.get("test_predictions") is None for p in phases):
    return None
  base = {int(s): np.asarray(p) for s, p in zip(baseline_phase["seeds"],
                                                 baseline_phase["test_predictions"])}
  out = []
  for phase in round_phases:
    preds = np.asarray(phase["test_predictions"])
    per_rule = {}
    for rule in dict.fromkeys(phase["rules"]):
      idx = [i for i, r in enumerate(phase["rules"]) if r == rule]
      per_rule[rule] = compare_with_baseline(
          np.stack([base[int(phase["seeds"][i])] for i in idx]), preds[idx], labels,
          num_classes, num_samples, seed)
    out.append(per_rule)
  return out
