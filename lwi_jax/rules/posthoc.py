"""Post-hoc arms: per-class additive logit offsets `b` [C] fitted on saved logits, no training.

A member's adjusted prediction is argmax_c(logits_c + b_c). The offsets are fitted on the
scores' split: the validation logits, or, for a baseline under `scores.method="crossfit"`, its
cross-fitted out-of-fold logits over the training pool (a retrained member has no out-of-fold
logits, so its offsets always come from its validation logits). Two methods
(`config.posthoc`, strings parsed like rule strings):

- `logit_offsets:gamma=g` (closed form, learnability-driven logit adjustment):
  b_c = -g * log(s_c / s̄), s the member's TPRs on the fitting split clipped to
  [SCORE_FLOOR, 1 - SCORE_FLOOR] like the weighting rules' scores, s̄ their mean. A weak class
  gets a positive offset, so it is predicted more often. Menon et al. 2021 use -tau*log(prior);
  with balanced classes the prior is uniform and measured learnability takes its place.
- `tpr_parity` (fitted): deterministic exponentiated-gradient steps on g = exp(b) towards equal
  TPRs on the fitting split, b <- b - eta_t (s(b) - s̄(b)), eta_t = eta_0 / sqrt(t), eta_0 the
  standard deviation of the fitting logits (so the steps are in the logits' own scale), for
  FIT_STEPS steps from b = 0; then the segment from 0 to the most even iterate, at
  LINE_POINTS evenly spaced points. Every candidate, b = 0 included, is scored; the one returned
  has the lowest Var(s) among those whose accuracy on the fitting split is at most
  `compare.max_accuracy_drop` points below the unadjusted accuracy there (ties: the earlier
  candidate). Why the segment: the steps are large (they reach parity in a few dozen), so on
  names every iterate past b = 0 cost more than a point and the fit returned b = 0 for every
  member; the segment passes through the offsets between none and parity, where the bound binds. So on the fitting split it never costs more accuracy than that bound, and it is
  never less even than no adjustment. Offsets are centred to mean 0 (argmax is invariant to a
  common shift).

Pure numpy: the fits are a few hundred argmaxes over [N, C] arrays.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from lwi_jax import metrics
from lwi_jax.rules import members, weighting

FIT_STEPS = 200
LINE_POINTS = 101  # on the segment from 0 to the most even iterate (module doc)
# method -> {hyper-parameter: HParam(default, predicate, allowed values in words)}, the shape
# of the weighting rules' registry
METHODS = {
    "logit_offsets": {"gamma": weighting.HParam(1.0, lambda g: g >= 0, "gamma >= 0")},
    "tpr_parity": {},
}


@dataclasses.dataclass(frozen=True)
class PosthocSpec:
  """One parsed `config.posthoc` string."""
  name: str
  hparams: dict

  @property
  def label(self) -> str:
    if not self.hparams:
      return self.name
    return self.name + ":" + ",".join(f"{k}={v:g}" for k, v in sorted(self.hparams.items()))


def parse_one(text: str, where: str = "config.posthoc") -> PosthocSpec:
  """`name` or `name:key=value,...`; raises one line naming the field and the allowed values."""
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"{where}: each entry must be a non-empty string like "
                     f"'logit_offsets:gamma=1', got {text!r}; methods: {sorted(METHODS)}")
  name, given = members.split_spec(text, where)
  if name not in METHODS:
    raise ValueError(f"{where}: unknown post-hoc method {name!r} in {text!r}; methods: "
                     f"{sorted(METHODS)}")
  allowed = METHODS[name]
  hparams = {k: hp.default for k, hp in allowed.items()}
  for key, v in given.items():
    if key not in allowed:
      raise ValueError(f"{where}: {text!r}: {key!r} is not a key of "
                       f"{sorted(allowed) or 'none (this method takes no hyper-parameter)'}")
    if not (np.isfinite(v) and allowed[key].ok(v)):
      raise ValueError(f"{where}: {text!r}: {key}={v:g} is invalid: it must be "
                       f"{allowed[key].text}")
    hparams[key] = v
  return PosthocSpec(name, hparams)


def parse(texts) -> list[PosthocSpec]:
  """config.posthoc (a tuple of strings; () = off) -> specs, distinct labels."""
  if isinstance(texts, str) or not isinstance(texts, (tuple, list)):
    raise ValueError(f"config.posthoc={texts!r} must be a tuple of strings like "
                     "('logit_offsets:gamma=1', 'tpr_parity'), or () for none")
  specs = [parse_one(t) for t in texts]
  labels = [s.label for s in specs]
  if len(set(labels)) != len(labels):
    raise ValueError(f"config.posthoc has duplicates: {labels}")
  return specs


def tpr(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Per-class TPR [C] of predictions [N] (a class without examples: 0)."""
  labels = np.asarray(labels)
  hits = np.bincount(labels, weights=(np.asarray(predictions) == labels), minlength=num_classes)
  return hits / np.maximum(np.bincount(labels, minlength=num_classes), 1)


def closed_form_offsets(scores: np.ndarray, gamma: float) -> np.ndarray:
  """b_c = -gamma * log(s_c / s̄), s clipped like the weighting rules' scores."""
  s = np.clip(np.asarray(scores, np.float64), weighting.SCORE_FLOOR, 1 - weighting.SCORE_FLOOR)
  return -float(gamma) * np.log(s / s.mean())


def fit_tpr_parity(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                   max_drop_points: float, steps: int = FIT_STEPS) -> np.ndarray:
  """Offsets [C] towards equal TPRs on (logits [N, C], labels [N]); the method: module doc."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  eta0 = float(np.std(logits)) or 1.0
  floor = None
  best, best_var = np.zeros(num_classes), np.inf
  most_even, most_even_var = np.zeros(num_classes), np.inf

  def score(b):
    pred = np.argmax(logits + b, -1)
    s = tpr(pred, labels, num_classes)
    return s, float(np.mean(pred == labels)), float(np.mean((s - s.mean()) ** 2))

  b = np.zeros(num_classes)
  for t in range(steps + 1):
    s, acc, var = score(b)
    if floor is None:  # t = 0: the unadjusted member
      floor = acc - max_drop_points / 100.0 - 1e-12
    if acc >= floor and var < best_var:
      best, best_var = b.copy(), var
    if var < most_even_var:
      most_even, most_even_var = b.copy(), var
    b = b - eta0 / np.sqrt(t + 1) * (s - s.mean())
    b -= b.mean()
  for lam in np.linspace(0.0, 1.0, LINE_POINTS)[1:-1]:
    _, acc, var = score(lam * most_even)
    if acc >= floor and var < best_var:
      best, best_var = lam * most_even, var
  return best


def fit(spec: PosthocSpec, logits: np.ndarray, labels: np.ndarray, num_classes: int,
        max_drop_points: float) -> np.ndarray:
  """The offsets [C] of `spec` fitted on (logits [N, C], labels [N])."""
  if spec.name == "logit_offsets":
    s = tpr(np.argmax(logits, -1), labels, num_classes)
    return closed_form_offsets(s, spec.hparams["gamma"])
  return fit_tpr_parity(logits, labels, num_classes, max_drop_points)


def adjusted_predictions(logits: np.ndarray, offsets: np.ndarray) -> np.ndarray:
  """argmax(logits + b) [..., N] of logits [..., N, C]."""
  return np.argmax(np.asarray(logits, np.float64) + np.asarray(offsets, np.float64), -1)


def summary(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """The score dict a phase saves per member (metrics.summarize_confusion + the matrix)."""
  cm = metrics.confusion_counts(predictions, labels, num_classes)
  out = {k: np.asarray(v) for k, v in metrics.summarize_confusion(cm, np).items()}
  out["confusion"] = cm
  return out


def member_sources(phase: dict, logits: dict, fit_split: str, fit_logits) -> list[dict]:
  """The `sources` of `posthoc_phase` for every member of a decoded phase.

  Args:
    phase: a decoded phase (study/phases.py).
    logits: its saved logits {"validation", "test": [M, N, C]}.
    fit_split: the split the offsets are fitted on ("validation" or "out_of_fold").
    fit_logits: [M, N, C] on that split.
  """
  n = len(phase["labels"])
  return [{"label": label, "rule": phase["rules"][i], "seed": phase["seeds"][i],
           "status": phase.get("status", ["ok"] * n)[i], "fit_split": fit_split,
           "fit_logits": fit_logits[i], "validation_logits": logits["validation"][i],
           "test_logits": logits["test"][i],
           "record": {"non_finite_epoch": phase.get("non_finite_epoch", [None] * n)[i],
                      **{k: phase[k][i] for k in ("initial_class_weights",
                                                  "final_class_weights", "sample_weights")},
                      "history": {k: v[i] for k, v in phase["history"].items()}}}
          for i, label in enumerate(phase["labels"])]


def posthoc_phase(specs: list[PosthocSpec], sources: list[dict], split_labels: dict,
                  num_classes: int, max_drop_points: float) -> dict:
  """The post-hoc rows of a study, shaped like a saved phase (report/results.py reads both).

  Args:
    specs: the parsed config.posthoc.
    sources: one dict per finished member the offsets stack on: "label", "rule", "seed",
      "status", "fit_split" ("validation" or "out_of_fold"), "fit_logits" [N, C] (on that
      split), "validation_logits", "test_logits", and "record" (fields copied to the rows:
      initial/final class weights, sample weights, history).
    split_labels: split name ("validation", "test", "out_of_fold") -> true classes.
    num_classes: C.
    max_drop_points: compare.max_accuracy_drop (tpr_parity's accuracy bound on the fit split).

  Returns:
    labels, seeds, rules ("<source rule>+<method>"), status, validation/test summaries and
    predictions, and per row: `posthoc` (method, offsets, fit split, source, fit seconds).
  """
  out = {k: [] for k in ("labels", "seeds", "rules", "status", "non_finite_epoch", "validation",
                         "test", "validation_predictions", "test_predictions", "posthoc",
                         "initial_class_weights", "final_class_weights", "sample_weights",
                         "history")}
  for spec in specs:
    for src in sources:
      t0 = time.perf_counter()
      finite = src["status"] == "ok" and bool(np.isfinite(src["fit_logits"]).all())
      b = (fit(spec, src["fit_logits"], split_labels[src["fit_split"]], num_classes,
               max_drop_points) if finite else np.zeros(num_classes))
      seconds = time.perf_counter() - t0
      rule = f"{src['rule']}+{spec.label}"
      out["labels"].append(f"{rule}@seed{src['seed']}")
      out["seeds"].append(int(src["seed"]))
      out["rules"].append(rule)
      out["status"].append(src["status"])
      out["non_finite_epoch"].append(src["record"].get("non_finite_epoch"))
      for split in ("validation", "test"):
        pred = adjusted_predictions(src[f"{split}_logits"], b)
        out[f"{split}_predictions"].append(pred)
        out[split].append(summary(pred, split_labels[split], num_classes))
      out["posthoc"].append({"method": spec.label, "offsets": b.tolist(),
                             "fit_split": src["fit_split"], "source": src["label"],
                             "source_rule": src["rule"], "fit_seconds": seconds})
      for key in ("initial_class_weights", "final_class_weights", "sample_weights", "history"):
        out[key].append(src["record"][key])
  return out
