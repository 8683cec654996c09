"""Where the per-class TPRs `s` behind the weights come from, and how sure they are.

A weight w = W(s) is only as good as s. The `validation` method scores each seed's baseline on
the held-out validation split (60 images per class in the CIFAR `:cpu` preset: a standard error
of ~6 points per class). The `crossfit` method (`config.scores.method`) instead trains k fold
members per seed, each on the training pool minus one fold (a stratified k-fold split that
depends on the seed), and scores every training example with the member that did not see it:
the out-of-fold confusion matrix counts every training example once, so s rests on the whole
pool (CIFAR: ~4,500 per class) instead of the validation split. The k x seeds fold members
train as ONE ensemble: the only per-member difference is `MemberHParams.example_mask`, the
generic per-member data subset of `train.epoch_order`.

What crossfit changes and what it does not:
- the baseline and every retrained member still train on the WHOLE training pool (the folds
  only exist to score it), so a rule's retrain is paired with its seed's baseline as before;
- the validation split is still carved out and untouched by the folds; it is what model
  selection uses (the per-epoch validation curve, dynamic-difficulty weights, and the scores of
  rounds > 1, which come from each member's validation TPRs);
- a fold member takes the same number of optimizer steps per epoch as a full-pool member (its
  epoch cycles through a permutation of its subset), so it matches the baseline's schedule.

Uncertainty: every s_c is k_c successes out of n_c scored examples, so it gets a Wilson score
interval; a weight's interval comes from a parametric bootstrap of those counts pushed through
the rule (and the shrinkage), which works for every rule, including the training rules.
Optional shrinkage (`scores.shrinkage`) pulls noisy s_c toward s̄ before the rule sees them.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy import stats as scipy_stats

METHODS = ("validation", "crossfit")
SHRINKAGE = ("none", "add_kappa", "empirical_bayes")


def validate(cfg) -> None:
  """Raises naming the first `config.scores` field whose value cannot be used."""
  if cfg.method not in METHODS:
    raise ValueError(f"scores.method={cfg.method!r} is not one of {list(METHODS)}")
  if cfg.shrinkage not in SHRINKAGE:
    raise ValueError(f"scores.shrinkage={cfg.shrinkage!r} is not one of {list(SHRINKAGE)}")
  if cfg.method == "crossfit" and int(cfg.folds) < 2:
    raise ValueError(f"scores.folds={cfg.folds} must be >= 2 for scores.method='crossfit'")
  if not float(cfg.kappa) >= 0:
    raise ValueError(f"scores.kappa={cfg.kappa} must be >= 0")
  if not 0 < float(cfg.confidence) < 1:
    raise ValueError(f"scores.confidence={cfg.confidence} must be in (0, 1)")
  if int(cfg.weight_bootstrap) < 0:
    raise ValueError(f"scores.weight_bootstrap={cfg.weight_bootstrap} must be >= 0")


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
  """Fold index [N] in [0, k) of every example; each class is spread evenly over the folds."""
  labels = np.asarray(labels)
  for c, n in enumerate(np.bincount(labels)):
    if 0 < n < k:
      raise ValueError(f"scores.folds={k}: class {c} has only {n} training examples")
  rng = np.random.default_rng([int(seed), 1_000_003])
  folds = np.empty(labels.shape[0], np.int32)
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    folds[idx] = (np.arange(idx.size) + rng.integers(k)) % k
  return folds


def out_of_fold_confusion(predictions: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                          num_classes: int) -> np.ndarray:
  """Confusion [C, C] of fold member j's predictions [k, N] on the examples of fold j only."""
  k = predictions.shape[0]
  held = predictions[folds, np.arange(labels.shape[0])]  # each example by its held-out member
  assert held.shape == labels.shape and folds.max() < k
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, held), 1)
  return cm


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
  """Wilson score interval of a binomial proportion (good near 0 and 1, unlike Wald)."""
  k = np.asarray(successes, np.float64)
  n = np.maximum(np.asarray(n, np.float64), 1e-300)
  z = scipy_stats.norm.ppf(0.5 + confidence / 2)
  p = k / n
  denom = 1 + z * z / n
  centre = (p + z * z / (2 * n)) / denom
  half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
  return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def shrink(successes, n, method: str, kappa: float = 10.0) -> np.ndarray:
  """Per-class TPRs pulled toward their mean s̄ (the rules' reference point).

  - none: k_c / n_c;
  - add_kappa: (k_c + kappa s̄) / (n_c + kappa), kappa pseudo-examples at the mean;
  - empirical_bayes: normal-normal model s_c ~ N(mu, tau^2), k_c/n_c ~ N(s_c, s_c(1-s_c)/n_c);
    tau^2 by the method of moments, each class shrunk by B_c = v_c / (v_c + tau^2): noisy
    classes move more, and nothing moves when the spread is far larger than the noise.
  Works on a trailing class axis, so it also applies to bootstrap draws [B, C].
  """
  k = np.asarray(successes, np.float64)
  n = np.maximum(np.asarray(n, np.float64), 1.0)
  s = k / n
  mean = s.mean(-1, keepdims=True)
  if method == "none":
    return s
  if method == "add_kappa":
    return (k + kappa * mean) / (n + kappa)
  if method == "empirical_bayes":
    v = np.clip(s * (1 - s), 1e-6, None) / n
    tau2 = np.maximum(s.var(-1, keepdims=True) - v.mean(-1, keepdims=True), 0.0)
    b = v / (v + tau2 + 1e-12)
    return mean + (1 - b) * (s - mean)
  raise ValueError(f"scores.shrinkage={method!r} is not one of {list(SHRINKAGE)}")


def score_record(confusion: np.ndarray, cfg, source: str) -> dict:
  """What a seed's scores are, from the confusion matrix they were counted in."""
  cm = np.asarray(confusion, np.int64)
  k, n = np.diag(cm), cm.sum(1)
  low, high = wilson_interval(k, n, cfg.confidence)
  return {"method": cfg.method, "source": source, "confusion": cm, "successes": k, "n": n,
          "raw": k / np.maximum(n, 1), "wilson_low": low, "wilson_high": high,
          "shrinkage": cfg.shrinkage, "tpr": shrink(k, n, cfg.shrinkage, float(cfg.kappa))}


def weight_intervals(rule, record: dict, counts, epochs: int, cfg, seed: int) -> dict:
  """Interval of each class weight (and sampling weight) of `rule` from its seed's scores.

  Parametric bootstrap: k*_c ~ Binomial(n_c, k_c/n_c), then the same shrinkage and rule as the
  real weights (vmapped over the draws), percentiles at cfg.confidence.
  """
  draws = int(cfg.weight_bootstrap)
  k, n = np.asarray(record["successes"]), np.asarray(record["n"])
  rng = np.random.default_rng([int(seed), 2_000_003])
  if draws == 0:
    return {}
  ks = rng.binomial(n, k / np.maximum(n, 1), size=(draws, k.size))
  s = shrink(ks, n, cfg.shrinkage, float(cfg.kappa)).astype(np.float32)
  hp = jax.vmap(lambda x: rule.build(x, counts, epochs))(s)
  alpha = (1 - float(cfg.confidence)) / 2
  out = {}
  for field in ("class_weights", "sample_weights"):
    w = np.asarray(getattr(hp, field), np.float64)
    out[field] = {"low": np.quantile(w, alpha, axis=0), "high": np.quantile(w, 1 - alpha, axis=0),
                  "sd": w.std(0)}
  return out


def attach_weight_intervals(results: dict, records: list[dict], specs, counts, epochs: int,
                            cfg) -> None:
  """Each round-1 member of `results` gets its weights' intervals from its seed's record."""
  if not results["rounds"]:
    return
  by_seed = {rec["seed"]: rec for rec in records}
  for spec, member in zip(specs, results["rounds"][0]):
    member["weight_interval"] = weight_intervals(spec.rule, by_seed[spec.seed], counts, epochs,
                                                 cfg, spec.seed)
