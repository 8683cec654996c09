"""The study end to end (Algorithm 1 over many rules and seeds), resumable.

1. baseline: one unweighted member per seed, trained as one ensemble;
2. scores: per-class TPR `s` of each baseline member on the VALIDATION split, or (with
   `scores.method="crossfit"`) out-of-fold TPRs over the training pool from k fold members per
   seed trained as one more ensemble (lwi_jax/scores.py);
3. weights: every (rule x seed) member gets w = W(s) from the baseline member of its seed;
4. retrain: all members in ONE ensemble, with the same initialisation and data order as their
   seed's baseline (paired design);
5. evaluate every member on the TEST split;
6. compare each rule with the baseline, paired by seed (see stats.py).
`config.rounds` > 1 repeats 2-5 with the newest validation scores of each member.

Each phase is identified by a fingerprint of the config fields it depends on and of the
content of the loaded data (`data.content_hash`: an edited CSV never reuses a phase). Its result is
written atomically to `phases/<phase>-<fingerprint>.json` and its training carry checkpointed
every epoch, so running the same command again resumes a killed run, or reuses finished phases
(adding a rule reuses the baseline).

A member whose loss, parameters or weights become NaN or infinite (checked inside the compiled
epoch) is reported by name and epoch, gets the status "non_finite", and is left out of every
comparison; members whose weights would derive from it are not trained on its scores (status
"source_non_finite"). `run` returns the study's `status`; launch.py turns a failed one into
exit code `EXIT_NON_FINITE`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lwi_jax import checkpoint as checkpoint_lib
from lwi_jax import console
from lwi_jax import config_checks
from lwi_jax import data as data_lib
from lwi_jax import ensemble, io_utils, members as members_lib, metrics, models, sharding, train
from lwi_jax import recipe, reporting, run_control, scores as scores_lib

Printer = Callable[[str], None]
HISTORY_FIELDS = ("loss", "accuracy", "val_accuracy", "seconds", "finite")
EXIT_NON_FINITE = 3  # launch.py's exit code when any member went non-finite
OK, NON_FINITE, SOURCE_NON_FINITE = reporting.OK, reporting.NON_FINITE, reporting.SOURCE_NON_FINITE


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


def validate_config(config: ml_collections.ConfigDict) -> list[members_lib.MemberSpec]:
  """Every check that can fail without data, run before anything is loaded or compiled."""
  config_checks.check_config(config)
  specs = members_lib.parse_members(config.rules, config.seeds)
  train.make_optimizer(config.optimizer, 1, 1)
  models.resolve_conv_impl(config.model.get("conv_impl", "auto"))
  models.check_config(config.model)
  ensemble.resolve_strategy(config.train.ensemble_strategy)
  recipe.check(config)
  scores_lib.validate(scores_lib.from_config(config))
  test = config.compare.test
  if test not in reporting.TESTS:
    raise ValueError(f"compare.test={test!r} is not one of {list(reporting.TESTS)}")
  if test == "bootstrap" and int(config.compare.get("bootstrap_samples", 2000)) < 100:
    raise ValueError(f"compare.bootstrap_samples={config.compare.bootstrap_samples} must be "
                     ">= 100 for a 95% percentile interval")
  if test == "paired_t" and len(config.seeds) < 2:
    raise ValueError(f"compare.test={test!r} needs at least 2 seeds (config.seeds="
                     f"{tuple(config.seeds)}); add seeds or set --config.compare.test=none")
  reporting.max_accuracy_drop(config)
  return specs


def fingerprint(config: ml_collections.ConfigDict, *parts) -> str:
  """Hash of what a phase's result depends on (not the workdir, not the report options).

  `parts` name the phase and carry the data's content hash, so the same config on edited data
  is a different phase.
  """
  d = config.to_dict()
  for key in ("workdir", "rules", "rounds", "compare", "scores"):  # scores: in the round parts
    d.pop(key, None)
  for key in sharding.LAUNCH_FIELDS:  # differ between the processes of one distributed run
    d.get("train", {}).pop(key, None)
  blob = json.dumps([d, parts], sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Trainer:
  """Device-resident data and compiled functions shared by all phases of one run."""

  def __init__(self, config: ml_collections.ConfigDict, data: data_lib.ClassificationData,
               log: Printer = _print, progress: bool | None = None):
    self.config = config
    self.data = data
    self.log = log
    # A progress bar inside each epoch (console.py): on a terminal, on one device.
    self.progress = console.interactive() if progress is None else progress
    self.num_classes = data.num_classes
    self.model = models.create_model(config.model, data.num_classes, data.info)
    self.compiler_options = models.compiler_options(config.model)
    steps_per_epoch = len(data.train) // config.train.batch_size
    if steps_per_epoch == 0:
      raise ValueError(f"train.batch_size={config.train.batch_size} is larger than the "
                       f"{len(data.train)} training examples")
    self.tx = train.make_optimizer(config.optimizer, steps_per_epoch, config.train.epochs)
    # Off by default: one device. On: members split over a device mesh, data on every device.
    self.mesh = sharding.mesh_from_config(config.train)
    self.train_inputs, self.train_labels = sharding.replicate(
        (data.train.inputs, data.train.labels), self.mesh)
    self.sample_inputs = jnp.asarray(data.train.inputs[:1])
    ebs = config.train.eval_batch_size
    self.eval_sets = {name: tuple(sharding.replicate(train.batch_for_eval(
        getattr(data, name).inputs, getattr(data, name).labels, ebs), self.mesh))
        for name in ("validation", "test")}

  def confusions(self, states, split: str) -> jax.Array:
    cfg = self.config.train
    fn = train.ensemble_confusion_fn(self.num_classes, cfg.ensemble_strategy,
                                     cfg.get("ensemble_chunk", 0), self.mesh,
                                     self.compiler_options, recipe.eval_flip(cfg, self.data))
    return fn(states, *self.eval_sets[split])

  def predictions(self, states, split: str, num_members: int | None = None) -> np.ndarray:
    """Predicted class of every example of `split` by the first `num_members` members, [E, N]."""
    if split not in self.eval_sets:  # the training pool: only cross-fitting scores it
      data = getattr(self.data, split)
      self.eval_sets[split] = tuple(sharding.replicate(train.batch_for_eval(
          data.inputs, data.labels, self.config.train.eval_batch_size), self.mesh))
    inputs, _, mask = self.eval_sets[split]
    cfg = self.config.train
    fn = train.ensemble_predictions_fn(cfg.ensemble_strategy, cfg.get("ensemble_chunk", 0),
                                       self.mesh, self.compiler_options,
                                       recipe.eval_flip(cfg, self.data))
    preds = np.asarray(fn(states, inputs, mask))[:num_members, :len(getattr(self.data, split))]
    return preds.astype(np.int16 if self.num_classes > 127 else np.int8)

  def epoch_fn(self, on_step=None):
    """The compiled (states, hparams, keys, epoch, inputs, labels) -> ... of this config
    (`on_step`: the progress callback, train.train_epoch)."""
    cfg = self.config.train
    return train.ensemble_train_epoch_fn(cfg.batch_size, recipe.augment_spec(cfg, self.data),
                                         cfg.ensemble_strategy, cfg.get("ensemble_chunk", 0),
                                         self.mesh, self.compiler_options, on_step,
                                         label_smoothing=recipe.label_smoothing(cfg))

  def evaluate(self, states, split: str, num_members: int | None = None) -> list[dict]:
    """Per-member summaries of the first `num_members` members (all: None), e.g. unpadded."""
    return summaries_from_confusions(np.asarray(self.confusions(states, split))[:num_members])

  def fit(self, phase: str, labels: list[str], seeds: list[int], hparams: train.MemberHParams,
          checkpoint_dir: str | None = None, tensorboard_dir: str | None = None,
          on_epoch: Callable[[], None] | None = None):
    """Trains len(seeds) members in one compiled program, resuming from `checkpoint_dir`.

    `on_epoch` is called after each epoch's checkpoint; a Ctrl-C (run_control) stops here.

    Returns (states, carried hparams, history {field: [E, epochs]}). With a mesh of D devices
    the members are padded to a multiple of D for the whole phase (copies of the last member),
    so the states stay split evenly over the devices instead of coming back whole on each;
    the returned states keep the padding (`evaluate` drops it), hparams and history do not.
    """
    cfg = self.config.train
    epochs, n = cfg.epochs, len(seeds)
    dynamic = bool(np.any(np.asarray(hparams.dynamic_tau) >= 0))
    eval_each_epoch = dynamic or cfg.get("eval_every_epoch", True)
    seeds = sharding.pad_to_mesh(list(seeds), self.mesh)
    carry = {"states": train.init_ensemble(self.model, self.tx, self.sample_inputs, seeds,
                                             mesh=self.mesh),
             "hparams": sharding.replicate(sharding.pad_to_mesh(hparams, self.mesh), self.mesh),
             "history": {k: np.full((n, epochs), np.nan, np.float32) for k in HISTORY_FIELDS}}
    ckpt = checkpoint_lib.PhaseCheckpointer(checkpoint_dir) if checkpoint_dir else None
    start = 0
    restored = ckpt.restore_latest(carry, self.log) if ckpt is not None else None
    if restored is not None:
      start, carry = restored
      self.log(f"[{phase}] resumed from the checkpoint after epoch {start}")
    states, hp = carry["states"], carry["hparams"]
    history = {k: np.array(v) for k, v in carry["history"].items()}
    writers = (reporting.TensorBoard(tensorboard_dir, labels)
               if tensorboard_dir and sharding.is_primary() else None)
    bar = self.progress and self.mesh is None
    epoch_fn = self.epoch_fn(console.on_train_step if bar else None)
    steps = len(self.data.train) // cfg.batch_size
    bar_steps = steps * ensemble.member_passes(cfg.ensemble_strategy,
                                               cfg.get("ensemble_chunk", 0), n)
    if start < epochs:
      self.log(f"[{phase}] training {n} member{'s' if n > 1 else ''} for {epochs - start} "
               f"epoch{'s' if epochs - start > 1 else ''} ({steps} steps each)")
    epoch_seconds = []
    for epoch in range(start, epochs):
      t0 = time.perf_counter()
      with console.epoch_bar(f"[{phase}] epoch {epoch + 1}/{epochs}", bar_steps, bar):
        states, hp, m = epoch_fn(states, hp, train.ensemble_epoch_keys(seeds, epoch),
                                 jnp.int32(epoch), self.train_inputs, self.train_labels)
        # waits for the epoch (the bar closes when it is done); padding members dropped
        m = jax.tree.map(lambda x: x[:n], jax.device_get(m))
      val_acc = np.full(n, np.nan, np.float32)
      if eval_each_epoch:
        cms = self.confusions(states, "validation")
        val_acc = (np.trace(np.asarray(cms), axis1=1, axis2=2) / np.asarray(cms).sum((1, 2)))[:n]
        if dynamic:
          hp = train.ensemble_dynamic_weights_update(hp, cms)
      finite = (np.asarray(m["finite"], bool)
                & np.isfinite(np.asarray(hp.class_weights)[:n]).all(1))
      seconds = time.perf_counter() - t0
      for k, v in (("loss", m["loss"]), ("accuracy", m["accuracy"]), ("val_accuracy", val_acc),
                   ("seconds", np.full(n, seconds)), ("finite", finite.astype(np.float32))):
        history[k][:, epoch] = v
      if ckpt is not None:
        ckpt.save(epoch + 1, {"states": states, "hparams": hp, "history": history})
      if on_epoch is not None:
        on_epoch()
      if writers is not None:
        writers.write(epoch + 1, {k: history[k][:, epoch] for k in HISTORY_FIELDS})
      epoch_seconds.append(seconds)
      # The first epoch of a process includes compiling: later ones tell the pace better.
      eta = float(np.median(epoch_seconds[1:] or epoch_seconds)) * (epochs - epoch - 1)
      left = ("~" if len(epoch_seconds) > 1 else "at most ~") + console.format_seconds(eta)
      self.log(f"[{phase}] epoch {epoch + 1}/{epochs}  {seconds:.1f}s  loss "
               f"{console.spread(history['loss'][:, epoch])}  val acc "
               f"{console.spread(history['val_accuracy'][:, epoch])}  "
               f"({left} left in this phase)")
      for i in np.flatnonzero(~finite & (first_non_finite(history["finite"][:, :epoch]) == 0)):
        self.log(f"[{phase}] {labels[i]} went non-finite (NaN/inf loss, parameters or weights) "
                 f"in epoch {epoch + 1}: it is excluded from every comparison")
      if not finite.any():
        self.log(f"[{phase}] every member is non-finite after epoch {epoch + 1}: stopping this "
                 "phase (lower the learning rate or the rule's hyper-parameters)")
        break
      if run_control.stop_requested():
        raise run_control.Stopped(phase, epoch + 1, epochs)
    if start < epochs:  # each member once, after its last epoch
      for i, label in enumerate(labels):
        self.log(f"    {label:<44s} loss {history['loss'][i, epoch]:.4f}  "
                 f"train acc {history['accuracy'][i, epoch]:.4f}  "
                 f"val acc {history['val_accuracy'][i, epoch]:.4f}"
                 + ("" if history["finite"][i, epoch] else "  NON-FINITE"))
    if writers is not None:
      writers.close()
    if ckpt is not None:
      ckpt.close()
    return states, jax.tree.map(lambda x: x[:n], hp), history


def _fmt_vec(v) -> str:
  return "[" + " ".join(f"{x:.3f}" for x in np.asarray(v)) + "]"


def first_non_finite(finite_history: np.ndarray) -> np.ndarray:
  """Per member, the first (1-based) epoch whose `finite` flag is 0; 0 if none."""
  bad = np.asarray(finite_history) == 0
  return np.where(bad.any(1), bad.argmax(1) + 1, 0) if bad.size else np.zeros(len(bad), int)


def _phase_result(labels, seeds, rules, hparams_start, hparams_end, history, val, test) -> dict:
  epochs = first_non_finite(history["finite"])
  return {"labels": labels, "seeds": seeds, "rules": rules,
          "status": [NON_FINITE if e else OK for e in epochs],
          "non_finite_epoch": [int(e) or None for e in epochs],
          "initial_class_weights": np.asarray(hparams_start.class_weights),
          "sample_weights": np.asarray(hparams_start.sample_weights),
          "final_class_weights": np.asarray(hparams_end.class_weights),
          "history": {k: np.asarray(v) for k, v in history.items()},
          "validation": val, "test": test}


def _read_phase(path: str) -> dict:
  """A finished phase's result; a damaged file is named with its fix (results are written
  atomically, so damage came from outside: a disk error or an edit)."""
  try:
    with open(path) as f:
      result = reporting.arrays_from_json(json.load(f))
    missing = {"labels", "history", "validation", "test"} - set(result)
    if missing:
      raise KeyError(f"missing {sorted(missing)}")
    return result
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"phase file {path} is corrupt ({type(e).__name__}: {str(e)[:120]}); "
                     "delete it and rerun the same command: the phase is then rebuilt from its "
                     "last checkpoint (or retrained)") from e


class Study:
  """Runs (or resumes) the phases of one config in its workdir."""

  def __init__(self, config: ml_collections.ConfigDict, log: Printer = _print):
    self.config = config
    self.log = log
    self.specs = validate_config(config)  # fails before any data is loaded
    self.workdir = os.path.abspath(config.workdir)
    self._trainer = None
    self._data = None
    self._data_hash = None
    # Per invocation (run() starts them afresh): the phases this study is made of, their clock.
    self._phase_keys = []
    self.clock = run_control.PhaseClock(self.workdir, primary=False)

  @property
  def data(self) -> data_lib.ClassificationData:
    if self._data is None:
      d = data_lib.load_dataset(self.config.data)
      config_checks.check_data(self.config, d)
      self._data = d
      self.log(f"data: {self.config.data.name}  train {len(d.train)}  validation "
               f"{len(d.validation)}  test {len(d.test)}  classes {list(d.class_names)}")
      for line in data_lib.summary_lines(d):
        self.log(line)
    return self._data

  @property
  def data_hash(self) -> str:
    """Content hash of the loaded data (loads it): a phase is only reused for the same data."""
    if self._data_hash is None:
      self._data_hash = data_lib.content_hash(self.data)
    return self._data_hash

  @property
  def trainer(self) -> Trainer:
    if self._trainer is None:
      self._trainer = Trainer(self.config, self.data, self.log)
    return self._trainer

  def _phase(self, name: str, key: str, labels, seeds, rules, make_hparams, extra=None) -> dict:
    """Loads a finished phase, or trains (resuming from its checkpoints) and saves it.

    `extra(states)` adds fields to the saved result (the crossfit phase's out-of-fold scores).
    """
    path = os.path.join(self.workdir, "phases", f"{name}-{key}.json")
    self._phase_keys.append(f"{name}-{key}")
    if sharding.primary_decides(os.path.exists(path)):
      self.log(f"[{name}] reusing finished phase {os.path.relpath(path, self.workdir)}")
      return _read_phase(path)
    self.clock.start(f"{name}-{key}")
    hparams = make_hparams()
    hparams_start = jax.tree.map(np.asarray, hparams)
    states, hp_end, history = self.trainer.fit(
        name, labels, seeds, hparams,
        checkpoint_dir=os.path.join(self.workdir, "checkpoints", f"{name}-{key}"),
        tensorboard_dir=os.path.join(self.workdir, "tensorboard", name), on_epoch=self.clock.tick)
    result = _phase_result(labels, seeds, rules, hparams_start, jax.device_get(hp_end), history,
                           self.trainer.evaluate(states, "validation", len(seeds)),
                           self.trainer.evaluate(states, "test", len(seeds)))
    # per-example test predictions: what the bootstrap and McNemar's test resample (compact ints)
    result["test_predictions"] = self.trainer.predictions(states, "test", len(seeds))
    if extra is not None:
      result.update(extra(states))
    text = io_utils.json_text(result)
    if sharding.is_primary():
      io_utils.atomic_write_text(path, text)
    self.clock.stop()
    # The saved form is the one every later step reads (resume == fresh), in every process.
    return reporting.arrays_from_json(json.loads(text))

  def _score_records(self, cfg, seeds, baseline, base_key) -> list[dict]:
    """Per seed: the scores behind round 1's weights, with their counts (scores.score_record).

    Each record also says which members scored it (`scored_by`) and whether they all stayed
    finite (`finite`): weights are never derived from the predictions of a diverged member.
    """
    if cfg.method == "validation":
      return [dict(scores_lib.score_record(baseline["validation"][i]["confusion"], cfg,
                                           "validation"), seed=s, scored_by=f"baseline@seed{s}",
                   finite=baseline["status"][i] == OK) for i, s in enumerate(seeds)]
    k = int(cfg.folds)
    folds = {s: scores_lib.stratified_folds(self.data.train.labels, k, s) for s in seeds}
    pairs = [(s, j) for s in seeds for j in range(k)]

    def make():
      ones = np.ones(self.data.num_classes, np.float32)
      return ensemble.stack([train.MemberHParams.create(ones, example_mask=folds[s] != j)
                             for s, j in pairs])

    def out_of_fold(states):
      preds = self.trainer.predictions(states, "train", len(pairs)).reshape(len(seeds), k, -1)
      return {"folds": k, "out_of_fold_confusion": [scores_lib.out_of_fold_confusion(
          preds[i], self.data.train.labels, folds[s], self.data.num_classes)
          for i, s in enumerate(seeds)]}

    phase = self._phase("crossfit", fingerprint(self.config, "crossfit", k, base_key),
                        [f"fold{j}@seed{s}" for s, j in pairs], [s for s, _ in pairs],
                        [f"fold{j}" for _, j in pairs], make, extra=out_of_fold)
    fold_ok = np.reshape([st == OK for st in phase["status"]], (len(seeds), k)).all(1)
    return [dict(scores_lib.score_record(cm, cfg, f"crossfit:{k}"), seed=s,
                 scored_by=f"the {k} fold members of seed {s}", finite=bool(ok))
            for s, cm, ok in zip(seeds, phase["out_of_fold_confusion"], fold_ok)]

  def _attach_score_uncertainty(self, results, cfg, records) -> None:
    """Score records into results.json; each round-1 member gets its weights' intervals."""
    results["scores"] = {"config": cfg.to_dict(), "seeds": records}
    if not results["rounds"]:
      return
    counts = self.data.class_counts
    by_seed = {rec["seed"]: rec for rec in records}
    for spec, member in zip(self.specs, results["rounds"][0]):
      member["weight_interval"] = scores_lib.weight_intervals(
          spec.rule, by_seed[spec.seed], counts, self.config.train.epochs, cfg, spec.seed)

  def run(self) -> dict:
    """The study under the workdir lock (primary process only), stopping cleanly on Ctrl-C."""
    os.makedirs(self.workdir, exist_ok=True)
    primary = sharding.is_primary()
    with run_control.workdir_lock(self.workdir, primary, self.log), \
        run_control.stop_after_epoch(self.log):
      self.clock = run_control.PhaseClock(self.workdir, primary)
      self._phase_keys = []
      return self._run()

  def _run(self) -> dict:
    cfg = self.config
    seeds = list(cfg.seeds)
    # A learned vocabulary is derived from the data, and so is everything else: the content
    # hash of what was loaded (vocabulary included) is part of every phase's fingerprint.
    vocab = self.data.info.get("vocabulary", {}).get("sha256")
    data_hash = self.data_hash
    base_key = fingerprint(cfg, "baseline", *([vocab] if vocab else []), data_hash)
    baseline = self._phase(
        "baseline", base_key, [f"baseline@seed{s}" for s in seeds], seeds, ["baseline"] * len(seeds),
        lambda: ensemble.stack([train.MemberHParams.create(
            np.ones(self.data.num_classes, np.float32))] * len(seeds)))
    score_cfg = scores_lib.from_config(cfg)
    records = self._score_records(score_cfg, seeds, baseline, base_key)
    scores = {m.label: records[seeds.index(m.seed)]["tpr"] for m in self.specs}
    # Where each member's scores come from, and whether the members behind them stayed finite.
    source = {m.label: (records[seeds.index(m.seed)]["scored_by"],
                        records[seeds.index(m.seed)]["finite"]) for m in self.specs}
    rounds = []
    for r in range(1, int(cfg.get("rounds", 1)) + 1):
      key = fingerprint(cfg, "round", r, [m.label for m in self.specs], base_key,
                        score_cfg.to_dict(), data_hash)
      used, src = dict(scores), dict(source)

      def make(used=used, src=src):
        counts, names = self.data.class_counts, self.data.class_names
        hps = []
        for m in self.specs:
          if src[m.label][1]:
            hps.append(m.rule.member_hparams(used[m.label], counts, cfg.train.epochs, names))
            continue
          # Scores of a diverged member are argmaxes of NaN logits: derive nothing from them.
          self.log(f"weights {m.label}: not derived, its source {src[m.label][0]} is "
                   "non-finite; trained with uniform weights only to keep the ensemble, and "
                   "excluded")
          hps.append(train.MemberHParams.create(np.ones(len(counts), np.float32)))
        for m, h in zip(self.specs, hps):
          self.log(f"weights {m.label:<44s} {_fmt_vec(h.class_weights)}"
                   + (f"  sampling {_fmt_vec(h.sample_weights)}" if bool(h.oversample) else ""))
        return ensemble.stack(hps)

      result = self._phase(f"round{r}", key, [m.label for m in self.specs],
                           [m.seed for m in self.specs], [m.rule.label for m in self.specs], make)
      result["scores_used"] = [used[m.label] for m in self.specs]
      result["status"] = [SOURCE_NON_FINITE if not src[m.label][1] else st
                          for m, st in zip(self.specs, result["status"])]
      rounds.append(result)
      scores = {m.label: np.asarray(result["validation"][i]["tpr"])
                for i, m in enumerate(self.specs)}
      source = {m.label: (f"{m.label} (round {r})", result["status"][i] == OK)
                for i, m in enumerate(self.specs)}

    results = reporting.assemble_results(cfg, self.data, baseline, rounds, self.specs,
                                         self.clock.wall_seconds(self._phase_keys))
    results["dataset"]["content_hash"] = data_hash
    self._attach_score_uncertainty(results, score_cfg, records)
    if not sharding.is_primary():  # one writer: process 0
      return results
    reporting.write_outputs(self.workdir, results, self.log)
    self.log(f"outputs: {self.workdir}/ (report.md, results.json, summary.csv, plots/, "
             f"tensorboard/); {console.format_seconds(results['wall_seconds'])} in all")
    return results


def run(config: ml_collections.ConfigDict, log: Printer = _print) -> dict:
  """Runs (or resumes) the study of `config`; writes everything into `config.workdir`.

  The returned results carry `status` ("ok", or "non_finite" when any member diverged; see
  `failure_line`).
  """
  with sharding.explain_peer_failure():
    return Study(config, log).run()


def failure_line(results: dict) -> str | None:
  """One line saying why a finished study cannot be trusted, or None if it can."""
  bad = results.get("non_finite_members", [])
  if results.get("status", OK) == OK:
    return None
  diverged = [f"{b['label']} ({b['phase']}, epoch {b['epoch']})" for b in bad
              if b["status"] == NON_FINITE]
  return (f"FAILED: {len(diverged)} member(s) went non-finite (NaN/inf): "
          f"{', '.join(diverged[:5])}{' ...' if len(diverged) > 5 else ''}; they and "
          f"{len(bad) - len(diverged)} member(s) derived from them are excluded from the "
          f"comparisons. See {os.path.join(results['config']['workdir'], 'report.md')}; lower "
          "the learning rate or the rule's hyper-parameters")
