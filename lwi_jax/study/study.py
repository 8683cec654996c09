"""The study end to end (Algorithm 1 over many rules and seeds), resumable.

1. baseline: one unweighted member per seed, trained as one ensemble;
2. scores: per-class TPR `s` of each baseline member on the VALIDATION split, or (with
   `scores.method="crossfit"`) out-of-fold TPRs over the training pool from k fold members per
   seed trained as one more ensemble (lwi_jax/rules/scores.py);
3. weights: every (rule x seed) member gets w = W(s) from the baseline member of its seed;
4. retrain: all members in ONE ensemble, with the same initialisation and data order as their
   seed's baseline (paired design);
5. evaluate every member on the TEST split;
6. compare each rule with the baseline, paired by seed (lwi_jax/report).
`config.rounds` > 1 repeats 2-5 with the newest validation scores of each member.
Members whose rule says `retrain=head` are retrained in a phase of their own, `head<r>`: all of
them (every rule and seed) in one more ensemble that starts from their seed's trained baseline
and trains only the classifier head for `train.head_epochs` epochs; the round's result merges
both phases (phases.merge), so everything after step 4 sees one round.

Each phase is identified by a fingerprint and saved atomically (lwi_jax/study/phases.py), and
its training carry is checkpointed every epoch, so running the same command again resumes a
killed run, or reuses finished phases (adding a rule reuses the baseline).

A member whose loss, parameters or weights become NaN or infinite (checked inside the compiled
epoch) is reported by name and epoch, gets the status "non_finite", and is left out of every
comparison; members whose weights would derive from it are not trained on its scores (status
"source_non_finite"). `run` returns the study's `status`; launch.py turns a failed one into
exit code `errors.EXIT_NON_FINITE`.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from lwi_jax import data as data_lib
from lwi_jax import metrics
from lwi_jax.data import split_manifest
from lwi_jax.member import MemberHParams
from lwi_jax.parallel import ensemble, sharding
from lwi_jax.report import decision_markdown, outputs
from lwi_jax.report import results as results_lib
from lwi_jax.report.results import OK, SOURCE_NON_FINITE
from lwi_jax.rules import posthoc as posthoc_lib
from lwi_jax.rules import scores as scores_lib
from lwi_jax.runtime import console, io_utils, run_control
from lwi_jax.study import checks, memory, phases, posthoc_step, train_options, weights_step
from lwi_jax.study.trainer import Trainer, summaries_from_confusions

SPLIT_MANIFEST = "split_manifest.json"  # in the workdir


@dataclasses.dataclass(frozen=True)
class ScoreSource:
  """The scores one member's weights derive from, and who measured them.

  `finite` is False when the member(s) that measured them diverged: their predictions are
  argmaxes of NaN logits, so no weights are derived from them.
  """
  tpr: np.ndarray
  scored_by: str
  finite: bool


class Study:
  """Runs (or resumes) the phases of one config in its workdir."""

  def __init__(self, config: ml_collections.ConfigDict, log: console.Printer = console.print_line):
    self.config = config
    self.log = log
    self.specs = checks.validate_config(config)  # fails before any data is loaded
    self.posthoc = posthoc_lib.parse(config.get("posthoc", ()))
    self._logits = {}  # phase name -> its saved per-example logits (only with config.posthoc)
    self.workdir = os.path.abspath(config.workdir)
    self._trainer = None
    self._states = {}  # "baseline" -> its trained states, when this process trained it
    self._data = None
    self._data_hash = None
    # Per invocation (run() starts them afresh): the phases this study is made of, their clock.
    self._phase_keys = []
    self.clock = run_control.PhaseClock(self.workdir, primary=False)

  @property
  def data(self) -> data_lib.ClassificationData:
    if self._data is None:
      d = data_lib.load_dataset(self.config.data)
      checks.check_data(self.config, d)
      self._data = d
      self.log(f"data: {self.config.data.name}  train {len(d.train)}  validation "
               f"{len(d.validation)}  test {len(d.test)}  classes "
               + (f"{list(d.class_names)}" if d.num_classes <= 30 else
                  f"{d.num_classes} ({', '.join(d.class_names[:5])}, ...)"))
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
      trainer = Trainer(self.config, self.data, self.log)
      parts = memory.estimate(self.config, self.data, trainer.model, trainer.tx, len(self.specs))
      self.log(memory.check(parts, memory.available_bytes(), len(self.specs),
                            train_options.cpu_preset_hint(self.config, jax.default_backend())))
      self._trainer = trainer
    return self._trainer

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
    """Algorithm 1: baseline, scores, then per round weights + retrain + evaluate; compare."""
    seeds = list(self.config.seeds)
    self._write_split_manifest()
    base_key = self._baseline_key()
    baseline = self._train_baseline(seeds, base_key)                             # 1
    records = self._score_records(self.config.scores, seeds, baseline, base_key)  # 2
    sources = {m.label: ScoreSource(records[seeds.index(m.seed)]["tpr"],
                                    records[seeds.index(m.seed)]["scored_by"],
                                    records[seeds.index(m.seed)]["finite"])
               for m in self.specs}
    rounds = []
    for r in range(1, int(self.config.rounds) + 1):
      rounds.append(self._retrain(r, sources, base_key))                         # 3, 4, 5
      sources = {m.label: ScoreSource(np.asarray(rounds[-1]["validation"][i]["tpr"]),
                                      f"{m.label} (round {r})", rounds[-1]["status"][i] == OK)
                 for i, m in enumerate(self.specs)}
    return self._compare(baseline, rounds, records, posthoc_step.posthoc_rows(
        self.posthoc, baseline, rounds, self._logits, self.data, self.config, self.log))  # 6

  def split_manifest_path(self) -> str | None:
    """Where the data's split manifest goes (None for sources that do not write one)."""
    if self.data.split_manifest is None:
      return None
    return os.path.join(self.workdir, SPLIT_MANIFEST)

  def _write_split_manifest(self) -> None:
    """The loaded data's split manifest into the workdir (data sources never see the workdir),
    so the split can be inspected and reused (data.split_manifest)."""
    path = self.split_manifest_path()
    if path is None or not sharding.is_primary():
      return
    io_utils.atomic_write_text(path, split_manifest.to_text(self.data.split_manifest))
    self.log(f"split manifest: {path} (which file went to which split); reuse this split "
             f"exactly with --config.data.split_manifest={path}")

  def _baseline_key(self) -> str:
    """The baseline's fingerprint: the config and the content of what was loaded.

    A learned vocabulary is derived from the data, and so is everything else: the content hash
    of what was loaded (vocabulary included) is part of every phase's fingerprint.
    """
    vocab = self.data.info.get("vocabulary", {}).get("sha256")
    return phases.fingerprint(self.config, "baseline", *([vocab] if vocab else []),
                              self.data_hash)

  def _phase(self, name: str, key: str, labels, seeds, rules, make_hparams, extra=None,
             start=None, epochs=None) -> dict:
    """Loads a finished phase, or trains (resuming from its checkpoints) and saves it.

    `extra(states)` gives (fields added to the saved result, logits saved with config.posthoc:
    the crossfit phase's out-of-fold scores and logits); with config.posthoc the members'
    validation and test logits are saved beside the result too. `start()` gives the states to
    start from (head phases) and `epochs` the phase's epochs (None: initialised from the seeds,
    train.epochs).
    """
    path = phases.path(self.workdir, name, key)
    self._phase_keys.append(f"{name}-{key}")
    if sharding.primary_decides(os.path.exists(path)):
      self.log(f"[{name}] reusing finished phase {os.path.relpath(path, self.workdir)}")
      if self.posthoc:
        self._logits[name] = phases.read_logits(path)
        if self._logits[name] is None:
          raise ValueError(
              f"config.posthoc={tuple(self.config.posthoc)} needs per-example logits, and the "
              f"finished phase {path} has none ({os.path.basename(phases.logits_path(path))} "
              "is missing): delete that phase file to retrain it, or set --config.posthoc=()")
      return phases.read(path)
    self.clock.start(f"{name}-{key}")
    hparams = make_hparams()
    hparams_start = jax.tree.map(np.asarray, hparams)
    states, hp_end, history = self.trainer.fit(
        name, labels, seeds, hparams,
        checkpoint_dir=os.path.join(self.workdir, "checkpoints", f"{name}-{key}"),
        tensorboard_dir=os.path.join(self.workdir, "tensorboard", name), on_epoch=self.clock.tick,
        **({} if start is None else {"initial_states": start(), "epochs": epochs}))
    if name == "baseline":  # what head phases start from; other phases' states are let go
      self._states[name] = states
    # One evaluation pass per split: scores, per-example predictions and post-hoc logits.
    logits = {s: self.trainer.logits(states, s, len(seeds)) for s in ("validation", "test")}
    preds = {s: metrics.predicted_classes(x, self.data.num_classes) for s, x in logits.items()}
    scores = {s: summaries_from_confusions(self.trainer.confusions_of(p, s))
              for s, p in preds.items()}
    result = phases.result(labels, seeds, rules, hparams_start, jax.device_get(hp_end), history,
                           scores["validation"], scores["test"])
    # per-example predictions: what the bootstrap and McNemar's test resample (test), the split
    # report/selection.py chooses a rule on (validation)
    result.update(test_predictions=preds["test"], validation_predictions=preds["validation"])
    fields, extra_logits = extra(states) if extra is not None else ({}, {})
    result.update(fields)
    if self.posthoc:  # before the JSON: a phase file without its logits is never left behind
      logits.update(extra_logits)
      phases.write_logits(path, logits)
      self._logits[name] = logits
    saved = phases.write(path, result)
    self.clock.stop()
    return saved

  def _train_baseline(self, seeds: list[int], base_key: str) -> dict:
    """Step 1: one unweighted member per seed."""
    return self._phase(
        "baseline", base_key, [f"baseline@seed{s}" for s in seeds], seeds,
        ["baseline"] * len(seeds),
        lambda: ensemble.stack([MemberHParams.uniform(self.data.num_classes)] * len(seeds)))

  def _score_records(self, cfg, seeds, baseline, base_key) -> list[dict]:
    """Step 2, per seed: the scores behind round 1's weights, with their counts
    (scores.score_record).

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

    def out_of_fold(states):  # one pass over the training split: scores and post-hoc logits
      logits = self.trainer.logits(states, "train", len(pairs)).reshape(len(seeds), k, -1,
                                                                         self.data.num_classes)
      preds = metrics.predicted_classes(logits, self.data.num_classes)
      n = np.arange(len(self.data.train))  # each example scored by the member without it
      return ({"folds": k, "out_of_fold_confusion": [scores_lib.out_of_fold_confusion(
          preds[i], self.data.train.labels, folds[s], self.data.num_classes)
          for i, s in enumerate(seeds)]},
              {"out_of_fold": np.stack([logits[i, folds[s], n] for i, s in enumerate(seeds)])})

    phase = self._phase(
        "crossfit", phases.fingerprint(self.config, "crossfit", k, base_key),
        [f"fold{j}@seed{s}" for s, j in pairs], [s for s, _ in pairs],
        [f"fold{j}" for _, j in pairs],
        lambda: ensemble.stack([MemberHParams.uniform(self.data.num_classes,
                                                      example_mask=folds[s] != j)
                                for s, j in pairs]),
        extra=out_of_fold)
    fold_ok = np.reshape([st == OK for st in phase["status"]], (len(seeds), k)).all(1)
    return [dict(scores_lib.score_record(cm, cfg, f"crossfit:{k}"), seed=s,
                 scored_by=f"the {k} fold members of seed {s}", finite=bool(ok))
            for s, cm, ok in zip(seeds, phase["out_of_fold_confusion"], fold_ok)]

  def _retrain(self, r: int, sources: dict[str, ScoreSource], base_key: str) -> dict:
    """Steps 3-5 of round `r`: weights, the retrained ensemble(s), their validation/test scores.

    Full members train in phase `round<r>`, head-only members (retrain=head) in `head<r>`.
    """
    full = [i for i, m in enumerate(self.specs) if not m.rule.head_only]
    head = [i for i, m in enumerate(self.specs) if m.rule.head_only]
    parts = [(f"{name}{r}", idx, self._members_phase(name, r, idx, sources, base_key))
             for name, idx in (("round", full), ("head", head)) if idx]
    result = parts[0][2] if not head else phases.merge(parts, len(self.specs))
    if self.posthoc:  # the round's logits in its members' order, as `result`
      self._logits[f"members{r}"] = phases.merge_logits(
          [(idx, self._logits[name]) for name, idx, _ in parts])
    result["scores_used"] = [sources[m.label].tpr for m in self.specs]
    result["status"] = [st if sources[m.label].finite else SOURCE_NON_FINITE
                        for m, st in zip(self.specs, result["status"])]
    return result

  def _members_phase(self, kind: str, r: int, idx: list[int], sources, base_key: str) -> dict:
    """The phase of round `r` that trains the members `idx` of self.specs: `kind` "round"
    (full retraining) or "head" (from the baseline, head only, train.head_epochs epochs)."""
    specs = [self.specs[i] for i in idx]
    labels = [m.label for m in specs]
    seeds = [m.seed for m in specs]
    head = kind == "head"
    epochs = int(self.config.train.head_epochs) if head else None
    extra = [{k: self.config.train[k] for k in phases.HEAD_FIELDS}] if head else []
    start = (lambda: self.trainer.head_states(self._baseline_states(base_key),
                                              list(self.config.seeds), seeds)) if head else None
    key = phases.fingerprint(self.config, kind, r, labels, base_key,
                             self.config.scores.to_dict(), self.data_hash, *extra)
    return self._phase(f"{kind}{r}", key, labels, seeds, [m.rule.label for m in specs],
                       lambda: weights_step.member_hparams(
                           specs, sources, self.data, epochs or self.config.train.epochs,
                           len(self.config.seeds), self.log),
                       start=start, epochs=epochs)

  def _baseline_states(self, base_key: str):
    """The trained baseline members (in memory, or from the baseline's last checkpoint)."""
    if "baseline" not in self._states:
      self._states["baseline"] = self.trainer.restore_states(
          os.path.join(self.workdir, "checkpoints", f"baseline-{base_key}"),
          list(self.config.seeds), "config.rules retrain=head")
    return self._states["baseline"]

  def _compare(self, baseline: dict, rounds: list[dict], records: list[dict],
               posthoc: dict | None = None) -> dict:
    """Step 6: every rule against its seed's baseline; the outputs (process 0 writes them)."""
    results = results_lib.assemble_results(self.config, self.data, baseline, rounds, self.specs,
                                           self.clock.wall_seconds(self._phase_keys), posthoc)
    results["dataset"]["content_hash"] = self.data_hash
    if self.split_manifest_path():
      results["dataset"]["split_manifest"] = self.split_manifest_path()
    results["scores"] = {"config": self.config.scores.to_dict(), "seeds": records}
    scores_lib.attach_weight_intervals(results, records, self.specs, self.data.class_counts,
                                       self.config.train.epochs, self.config.scores)
    if not sharding.is_primary():  # one writer: process 0
      return results
    outputs.write_outputs(self.workdir, results, self.log)
    # Measured again: the statistics, report and plots are part of what the command did (at
    # 200 classes they were most of it); results.json keeps the time before writing them.
    self.log(f"outputs: {self.workdir}/ (report.md, results.json, summary.csv, plots/, "
             f"tensorboard/); {console.format_seconds(self.clock.wall_seconds(self._phase_keys))}"
             " in all")
    for line in decision_markdown.decision_lines(results, self.workdir):  # the console ends with it
      self.log(line)
    return results

def run(config: ml_collections.ConfigDict, log: console.Printer = console.print_line) -> dict:
  """Runs (or resumes) the study of `config`; writes everything into `config.workdir`.

  Args:
    config: a locked study config (configs/*.py).
    log: where the console lines go.

  Returns:
    The results dict (results.json); its `status` is "ok", or "non_finite" when any member
    diverged (report.markdown.failure_line says it in one line).
  """
  with sharding.explain_peer_failure():
    return Study(config, log).run()
