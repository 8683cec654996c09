"""The method end to end: baseline -> validation TPRs -> class weights -> retrain -> test.

1. train one unweighted member per seed (one ensemble);
2. per-class TPR `s` of each baseline member on the VALIDATION split;
3. every member's class weights w = W(s) from the baseline member with the same seed;
4. retrain all (rule x seed) members in one ensemble, starting from the same initialisation
   and data order as their seed's baseline (paired design);
5. evaluate every member on the TEST split and write results.json atomically.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lwi_jax import data as data_lib
from lwi_jax import ensemble, io_utils, members as members_lib, metrics, models, train, weighting

Printer = Callable[[str], None]


def _print(msg: str) -> None:
  print(msg, flush=True)


def summaries_from_confusions(cms: np.ndarray) -> list[dict]:
  """Per-member score dicts (numpy) from stacked confusion matrices [E, C, C]."""
  stacked = jax.vmap(metrics.summarize_confusion)(jnp.asarray(cms))
  out = []
  for i in range(cms.shape[0]):
    s = {k: np.asarray(v[i]) for k, v in stacked.items()}
    s["confusion"] = np.asarray(cms[i])
    out.append(s)
  return out


class Trainer:
  """Holds the device-resident data and compiled functions shared by all phases of one run."""

  def __init__(self, config: ml_collections.ConfigDict, data: data_lib.ClassificationData,
               log: Printer = _print):
    self.config = config
    self.data = data
    self.log = log
    self.num_classes = data.num_classes
    self.model = models.create_model(config.model, data.num_classes, data.info)
    steps_per_epoch = len(data.train) // config.train.batch_size
    if steps_per_epoch == 0:
      raise ValueError(f"train.batch_size={config.train.batch_size} is larger than the "
                       f"{len(data.train)} training examples")
    self.tx = train.make_optimizer(config.optimizer, steps_per_epoch, config.train.epochs)
    self.train_inputs = jax.device_put(data.train.inputs)
    self.train_labels = jax.device_put(data.train.labels)
    self.sample_inputs = jnp.asarray(data.train.inputs[:1])
    ebs = config.train.eval_batch_size
    self.eval_sets = {name: tuple(map(jax.device_put, train.batch_for_eval(
        getattr(data, name).inputs, getattr(data, name).labels, ebs)))
        for name in ("validation", "test")}

  def fit(self, phase: str, labels: list[str], seeds: list[int], hparams: train.MemberHParams):
    """Trains len(seeds) members in one compiled program; returns (states, history)."""
    cfg = self.config.train
    states = train.init_ensemble(self.model, self.tx, self.sample_inputs, seeds)
    epoch_fn = train.ensemble_train_epoch_fn(cfg.batch_size, cfg.augment, cfg.ensemble_strategy)
    history = [[] for _ in seeds]
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
      t0 = time.perf_counter()
      states, m = epoch_fn(states, hparams, train.ensemble_epoch_keys(seeds, epoch),
                           self.train_inputs, self.train_labels)
      m = jax.device_get(m)
      seconds = time.perf_counter() - t0
      elapsed = time.perf_counter() - start
      eta = elapsed / (epoch + 1) * (cfg.epochs - epoch - 1)
      self.log(f"[{phase}] epoch {epoch + 1}/{cfg.epochs}  {seconds:.1f}s "
               f"(elapsed {elapsed:.0f}s, ~{eta:.0f}s left, {len(seeds)} members)")
      for i, label in enumerate(labels):
        row = {"epoch": epoch + 1, "loss": float(m["loss"][i]),
               "accuracy": float(m["accuracy"][i]), "seconds": seconds}
        history[i].append(row)
        self.log(f"    {label:<40s} loss {row['loss']:.4f}  train acc {row['accuracy']:.4f}")
    return states, history

  def evaluate(self, states, split: str) -> list[dict]:
    fn = train.ensemble_confusion_fn(self.num_classes, self.config.train.ensemble_strategy)
    return summaries_from_confusions(np.asarray(fn(states, *self.eval_sets[split])))


def _fmt_vec(v) -> str:
  return "[" + " ".join(f"{x:.3f}" for x in np.asarray(v)) + "]"


def run(config: ml_collections.ConfigDict, log: Printer = _print) -> dict:
  """Runs the whole method for `config` and writes `<workdir>/results.json`."""
  member_specs = members_lib.parse_members(config.rules, config.seeds)  # fails before any work
  train.make_optimizer(config.optimizer, 1, 1)
  t_start = time.perf_counter()
  data = data_lib.load_dataset(config.data)
  log(f"data: {config.data.name}  train {len(data.train)}  validation {len(data.validation)}  "
      f"test {len(data.test)}  classes {list(data.class_names)}")
  trainer = Trainer(config, data, log)
  seeds = list(config.seeds)

  # 1-2. Baseline per seed and its validation TPRs.
  uniform = train.MemberHParams.create(np.ones(data.num_classes, np.float32))
  base_states, base_hist = trainer.fit("baseline", [f"uniform@seed{s}" for s in seeds], seeds,
                                       ensemble.stack([uniform] * len(seeds)))
  base_val = trainer.evaluate(base_states, "validation")
  base_test = trainer.evaluate(base_states, "test")
  del base_states
  scores = {s: base_val[i]["tpr"] for i, s in enumerate(seeds)}

  # 3. Weights from the same seed's validation scores.
  weights = [np.asarray(weighting.compute_weights(
      m.rule.weight_rule, scores[m.seed], data.class_counts, **m.rule.weight_hparams))
      for m in member_specs]
  for m, w in zip(member_specs, weights):
    log(f"weights {m.label:<40s} {_fmt_vec(w)}")

  # 4. Retrain every member in one ensemble.
  hparams = ensemble.stack([train.MemberHParams.create(w, m.rule.focal_gamma)
                            for m, w in zip(member_specs, weights)])
  states, hist = trainer.fit("retrain", [m.label for m in member_specs],
                             [m.seed for m in member_specs], hparams)
  # 5. Test split.
  test = trainer.evaluate(states, "test")

  log("\ntest split: per-class TPR, accuracy, Var(s)")
  for i, s in enumerate(seeds):
    log(f"  {'baseline@seed' + str(s):<40s} acc {base_test[i]['accuracy']:.4f}  "
        f"var {base_test[i]['var_tpr']:.5f}  tpr {_fmt_vec(base_test[i]['tpr'])}")
  for m, r in zip(member_specs, test):
    log(f"  {m.label:<40s} acc {r['accuracy']:.4f}  var {r['var_tpr']:.5f}  "
        f"tpr {_fmt_vec(r['tpr'])}")

  results = {
      "config": config.to_dict(),
      "dataset": {"name": config.data.name, "class_names": list(data.class_names),
                  "sizes": {"train": len(data.train), "validation": len(data.validation),
                            "test": len(data.test)},
                  "train_class_counts": data.class_counts, "info": data.info},
      "backend": jax.default_backend(),
      "baseline": [{"seed": s, "validation": base_val[i], "test": base_test[i],
                    "history": base_hist[i]} for i, s in enumerate(seeds)],
      "members": [{"label": m.label, "rule": m.rule.name, "hparams": m.rule.hparams,
                   "seed": m.seed, "class_weights": w, "weights_from_validation_tpr": scores[m.seed],
                   "test": r, "history": h}
                  for m, w, r, h in zip(member_specs, weights, test, hist)],
      "wall_seconds": time.perf_counter() - t_start,
  }
  path = os.path.join(config.workdir, "results.json")
  io_utils.atomic_write_json(path, results)
  log(f"wrote {path} ({results['wall_seconds']:.0f}s)")
  return results
