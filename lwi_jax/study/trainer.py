"""The device side of a study: data on the device(s), the compiled ensemble programs, and
`Trainer.fit`, which trains one phase's members together and resumes from its checkpoints.

One Trainer serves every phase of a run (baseline, cross-fitting, rounds), so each program is
compiled once per run; what differs between phases is only the stacked `MemberHParams`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lwi_jax import data as data_lib
from lwi_jax import metrics, models, optim, train
from lwi_jax.member import MemberHParams
from lwi_jax.parallel import ensemble, programs, sharding
from lwi_jax.rules import weighting
from lwi_jax.runtime import checkpoint as checkpoint_lib
from lwi_jax.runtime import console, run_control
from lwi_jax.runtime.tensorboard import TensorBoard
from lwi_jax.study import phases, train_options

HISTORY_FIELDS = ("loss", "accuracy", "val_accuracy", "seconds", "finite")
# Off a terminal, an epoch expected to take at least this long gets a pace line after its
# first steps (a names epoch of ~2 s stays silent).
PACE_LINE_MIN_EPOCH_SECONDS = 60.0
PROGRESS_MODES = ("bar", "pace", "off")


def summaries_from_confusions(cms: np.ndarray) -> list[dict]:
  """Per-member score dicts (numpy) from stacked confusion matrices [E, C, C]."""
  stacked = jax.vmap(metrics.summarize_confusion)(jnp.asarray(cms))
  out = []
  for i in range(cms.shape[0]):
    s = {k: np.asarray(v[i]) for k, v in stacked.items()}
    s["confusion"] = np.asarray(cms[i])
    out.append(s)
  return out


@dataclasses.dataclass
class _Carry:
  """What a phase carries from epoch to epoch (and checkpoints): states, hparams, history."""
  states: train.TrainState
  hparams: MemberHParams
  history: dict[str, np.ndarray]

  def as_tree(self) -> dict:
    return {"states": self.states, "hparams": self.hparams, "history": self.history}


class Trainer:
  """Device-resident data and compiled functions shared by all phases of one run."""

  def __init__(self, config: ml_collections.ConfigDict, data: data_lib.ClassificationData,
               log: console.Printer = console.print_line, progress: str | None = None):
    self.config = config
    self.data = data
    self.log = log
    # Inside each epoch (console.py), on one device: "bar" on a terminal; off one, "pace" (the
    # first steps' pace, when an epoch is long) only for an accelerator-sized preset on a CPU:
    # JAX never caches a program with a host callback on disk, so other runs keep "off".
    if progress is None:
      progress = ("bar" if console.interactive() else
                  "pace" if train_options.cpu_preset_hint(config, jax.default_backend()) else
                  "off")
    if progress not in PROGRESS_MODES:
      raise ValueError(f"progress={progress!r} is not one of {list(PROGRESS_MODES)}")
    self.progress = progress
    self.num_classes = data.num_classes
    self.model = models.create_model(config.model, data.num_classes, data.info, data.train.inputs)
    self.compiler_options = programs.compiler_options(config.model)
    self.steps_per_epoch = len(data.train) // config.train.batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(f"train.batch_size={config.train.batch_size} is larger than the "
                       f"{len(data.train)} training examples")
    self.tx = optim.make_optimizer(config.optimizer, self.steps_per_epoch, config.train.epochs)
    # Off by default: one device. On: members split over a device mesh, data on every device.
    self.mesh = sharding.mesh_from_config(config.train)
    self.eval_flip = train_options.eval_flip(config.train, data)
    self.eval_translate = train_options.eval_translate(config.train, data)
    self.train_inputs, self.train_labels = sharding.replicate(
        (data.train.inputs, data.train.labels), self.mesh)
    self._validation_set = None
    self.sample_inputs = jnp.asarray(data.train.inputs[:1])
    self._eval_sets = {}

  @property
  def strategy(self) -> str:
    return self.config.train.ensemble_strategy

  @property
  def chunk(self) -> int:
    return self.config.train.ensemble_chunk

  def _eval_set(self, split: str) -> tuple:
    """(inputs, mask) of `split` in eval batches, on the device(s); built once. The labels stay
    on the host: the confusions are counted there (confusions_of)."""
    if split not in self._eval_sets:
      d = getattr(self.data, split)
      inputs, _, mask = train.batch_for_eval(d.inputs, d.labels, self.config.train.eval_batch_size)
      self._eval_sets[split] = tuple(sharding.replicate((inputs, mask), self.mesh))
    return self._eval_sets[split]

  def logits(self, states, split: str, num_members: int | None = None) -> np.ndarray:
    """Logits [E, N, C] (float32) of `split` ("train": cross-fitting only) by the first
    `num_members` members (all: None). The one evaluation program: confusions, predictions and
    post-hoc arms all read these, so they agree and a phase compiles one program per split."""
    inputs, mask = self._eval_set(split)
    fn = programs.ensemble_logits_fn(self.strategy, self.chunk, self.mesh,
                                     self.compiler_options, self.eval_flip, self.eval_translate)
    out = np.asarray(fn(states, inputs, mask), np.float32)
    return out[:num_members, :len(getattr(self.data, split))]

  def predictions(self, states, split: str, num_members: int | None = None) -> np.ndarray:
    return metrics.predicted_classes(self.logits(states, split, num_members), self.num_classes)

  def confusions(self, states, split: str, num_members: int | None = None) -> np.ndarray:
    return self.confusions_of(self.predictions(states, split, num_members), split)

  def confusions_of(self, predictions: np.ndarray, split: str) -> np.ndarray:
    """Confusion matrices [E, C, C] (int32) of predictions [E, N] of `split`."""
    labels = getattr(self.data, split).labels
    return np.stack([metrics.confusion_counts(p, labels, self.num_classes)
                     for p in predictions]).astype(np.int32)

  def epoch_fn(self, on_step=None):
    """The compiled (states, hparams, keys, epoch, inputs, labels) -> ... of this config
    (`on_step`: the progress callback, train.train_epoch)."""
    cfg = self.config.train
    return programs.ensemble_train_epoch_fn(
        cfg.batch_size, train_options.augment_spec(cfg, self.data), self.strategy, self.chunk,
        self.mesh, self.compiler_options, on_step,
        label_smoothing=train_options.label_smoothing(cfg))

  def validation_set(self) -> tuple:
    """The validation split, unbatched, on the device(s): what the online rule's updates draw
    their batches from (train.train_epoch). Put there once, when a phase first needs it."""
    if self._validation_set is None:
      self._validation_set = tuple(sharding.replicate(
          (self.data.validation.inputs, self.data.validation.labels), self.mesh))
    return self._validation_set

  def head_states(self, baseline_states, baseline_seeds: list[int], seeds: list[int]):
    """Stacked states of head-only members: member i starts from the trained baseline member
    of seeds[i], with a fresh `optim.make_head_optimizer` state over `train.head_epochs`
    epochs (only the head's parameters will move)."""
    head = models.head_name(self.config.model, "config.rules retrain=head")
    epochs = int(self.config.train.head_epochs)
    tx = optim.make_head_optimizer(self.config.optimizer, self.steps_per_epoch, epochs, head)
    idx = np.asarray([list(baseline_seeds).index(s) for s in seeds])
    params, stats = jax.tree.map(lambda x: x[idx], (baseline_states.params,
                                                    baseline_states.batch_stats))
    if head not in params:
      raise ValueError(f"config.rules retrain=head: the model has no parameters named {head!r} "
                       f"(top-level: {sorted(params)})")
    states = jax.vmap(lambda p, b: train.TrainState.create(
        apply_fn=self.model.apply, params=p, tx=tx, batch_stats=b))(params, stats)
    return sharding.shard_members(sharding.pad_to_mesh(states, self.mesh), self.mesh)

  def restore_states(self, checkpoint_dir: str, seeds: list[int], what: str):
    """The states of a finished phase of len(seeds) members (full epochs, default optimizer),
    from its last epoch checkpoint; an error naming `what` if there is none."""
    like = self._initial_carry(sharding.pad_to_mesh(list(seeds), self.mesh), len(seeds),
                               ensemble.stack([MemberHParams.uniform(self.num_classes)]
                                              * len(seeds)), self.config.train.epochs)
    ckpt = checkpoint_lib.PhaseCheckpointer(checkpoint_dir)
    try:
      restored = ckpt.restore_latest(like.as_tree(), self.log)
    finally:
      ckpt.close()
    if restored is None or restored[0] != self.config.train.epochs:
      raise ValueError(f"{what} needs the trained parameters of its last epoch, but "
                       f"{checkpoint_dir} holds no checkpoint of epoch "
                       f"{self.config.train.epochs}: delete that phase's file under phases/ "
                       "and rerun the same command to train it again")
    return restored[1]["states"]

  def evaluate(self, states, split: str, num_members: int | None = None) -> list[dict]:
    """Per-member summaries of the first `num_members` members (all: None), e.g. unpadded."""
    return summaries_from_confusions(self.confusions(states, split, num_members))

  def fit(self, phase: str, labels: list[str], seeds: list[int], hparams: MemberHParams,
          checkpoint_dir: str | None = None, tensorboard_dir: str | None = None,
          on_epoch: Callable[[], None] | None = None, initial_states=None,
          epochs: int | None = None):
    """Trains len(seeds) members in one compiled program, resuming from `checkpoint_dir`.

    Args:
      phase: the phase's name, for the console.
      labels: one label per member (console, TensorBoard).
      seeds: one seed per member: its initialisation and data order.
      hparams: the stacked MemberHParams [E] of the members.
      checkpoint_dir: where each epoch's carry is saved and resumed from (None: not saved).
      tensorboard_dir: per-member training curves (None: none written).
      on_epoch: called after each epoch's checkpoint; a Ctrl-C (run_control) stops here.
      initial_states: stacked states to start from (`head_states`); None = initialised from
        the seeds with the config's optimizer.
      epochs: epochs of this phase; None = train.epochs.

    Returns:
      (states, carried hparams, history {field: [E, epochs]}). With a mesh of D devices the
      members are padded to a multiple of D for the whole phase (copies of the last member), so
      the states stay split evenly over the devices instead of coming back whole on each; the
      returned states keep the padding (`evaluate` drops it), hparams and history do not.
    """
    epochs, n = epochs or self.config.train.epochs, len(seeds)
    seeds = sharding.pad_to_mesh(list(seeds), self.mesh)
    ckpt = checkpoint_lib.PhaseCheckpointer(checkpoint_dir) if checkpoint_dir else None
    start, carry = self._restore(phase, ckpt,
                                 self._initial_carry(seeds, n, hparams, epochs, initial_states))
    writers = (TensorBoard(tensorboard_dir, labels)
               if tensorboard_dir and sharding.is_primary() else None)
    if start < epochs:
      self.log(f"[{phase}] training {n} member{'s' if n > 1 else ''} for {epochs - start} "
               f"epoch{'s' if epochs - start > 1 else ''} ({self.steps_per_epoch} steps each)")
    epoch = self._run_epochs(phase, labels, seeds, n, start, epochs, carry, ckpt, writers,
                             on_epoch)
    if start < epochs:
      self._log_members(labels, carry.history, epoch)
    if writers is not None:
      writers.close()
    if ckpt is not None:
      ckpt.close()
    return carry.states, jax.tree.map(lambda x: x[:n], carry.hparams), carry.history

  def _initial_carry(self, seeds: list[int], n: int, hparams: MemberHParams, epochs: int,
                     initial_states=None) -> _Carry:
    if initial_states is None:
      initial_states = programs.init_ensemble(self.model, self.tx, self.sample_inputs, seeds,
                                              mesh=self.mesh)
    return _Carry(
        states=initial_states,
        hparams=sharding.replicate(sharding.pad_to_mesh(hparams, self.mesh), self.mesh),
        history={k: np.full((n, epochs), np.nan, np.float32) for k in HISTORY_FIELDS})

  def _restore(self, phase: str, ckpt, carry: _Carry) -> tuple[int, _Carry]:
    """(first epoch to train, carry): from the newest readable checkpoint, or from scratch."""
    restored = ckpt.restore_latest(carry.as_tree(), self.log) if ckpt is not None else None
    if restored is None:
      return 0, carry
    start, tree = restored
    self.log(f"[{phase}] resumed from the checkpoint after epoch {start}")
    return start, _Carry(tree["states"], tree["hparams"],
                         {k: np.array(v) for k, v in tree["history"].items()})

  def _run_epochs(self, phase, labels, seeds, n, start, epochs, carry: _Carry, ckpt, writers,
                  on_epoch) -> int:
    """Epochs start..epochs-1 (updating `carry` in place); returns the last epoch run."""
    cfg = self.config.train
    dynamic = bool(np.any(np.asarray(carry.hparams.dynamic_tau) >= 0))
    # the validation split goes into the epoch program only when a member updates from it
    online = self.validation_set() if np.any(np.asarray(carry.hparams.online_eta) > 0) else ()
    eval_each_epoch = dynamic or cfg.eval_every_epoch
    tracked = self.mesh is None and self.progress != "off"
    bar = tracked and self.progress == "bar"
    epoch_fn = self.epoch_fn(console.on_train_step if tracked else None)
    bar_steps = self.steps_per_epoch * ensemble.member_passes(self.strategy, self.chunk, n)
    epoch_seconds = []
    epoch = start - 1
    for epoch in range(start, epochs):
      t0 = time.perf_counter()
      pace = self._pace_reporter(phase, n, epochs - epoch) if tracked and epoch == start else None
      with console.epoch_progress(f"[{phase}] epoch {epoch + 1}/{epochs}", bar_steps, bar, pace):
        carry.states, carry.hparams, m = epoch_fn(
            carry.states, carry.hparams, programs.ensemble_epoch_keys(seeds, epoch),
            jnp.int32(epoch), self.train_inputs, self.train_labels, *online)
        # waits for the epoch (the bar closes when it is done); padding members dropped
        m = jax.tree.map(lambda x: x[:n], jax.device_get(m))
      val_acc = np.full(n, np.nan, np.float32)
      if eval_each_epoch:
        val_acc, carry.hparams = self._validate(carry.states, carry.hparams, n, dynamic)
      finite = (np.asarray(m["finite"], bool)
                & np.isfinite(np.asarray(carry.hparams.class_weights)[:n]).all(1))
      seconds = time.perf_counter() - t0
      for k, v in (("loss", m["loss"]), ("accuracy", m["accuracy"]), ("val_accuracy", val_acc),
                   ("seconds", np.full(n, seconds)), ("finite", finite.astype(np.float32))):
        carry.history[k][:, epoch] = v
      if ckpt is not None:
        ckpt.save(epoch + 1, carry.as_tree())
      if on_epoch is not None:
        on_epoch()
      if writers is not None:
        writers.write(epoch + 1, {k: carry.history[k][:, epoch] for k in HISTORY_FIELDS})
      epoch_seconds.append(seconds)
      self._log_epoch(phase, labels, carry.history, epoch, epochs, seconds, epoch_seconds,
                      finite)
      if not finite.any():
        self.log(f"[{phase}] every member is non-finite after epoch {epoch + 1}: stopping this "
                 "phase (lower the learning rate or the rule's hyper-parameters)")
        break
      if run_control.stop_requested():
        raise run_control.Stopped(phase, epoch + 1, epochs)
    return epoch

  def _pace_reporter(self, phase: str, n: int, epochs_left: int):
    """The first epoch's pace line (console.epoch_progress): printed only when an epoch is long,
    so that a big model on a small machine says what it will cost before its first epoch ends.
    """
    def report(seconds_per_step: float, total_steps: int) -> None:
      epoch_seconds = seconds_per_step * total_steps
      if epoch_seconds < PACE_LINE_MIN_EPOCH_SECONDS:
        return
      self.log(f"[{phase}] pace of the first steps: {seconds_per_step:.2f} s a step here, so "
               f"~{console.format_seconds(epoch_seconds)} an epoch, "
               f"~{console.format_seconds(epoch_seconds * epochs_left)} for this phase "
               f"({n} member{'s' if n > 1 else ''}, {epochs_left} epoch"
               f"{'s' if epochs_left > 1 else ''}; "
               f"~{console.format_seconds(epoch_seconds / n)} a member-epoch)")
      hint = train_options.cpu_preset_hint(self.config, jax.default_backend())
      if hint:
        self.log(f"[{phase}] {hint}")
    return report

  def _validate(self, states, hparams, n: int, dynamic: bool):
    """(validation accuracy [n], hparams): dynamic-difficulty members get their new weights."""
    cms = self.confusions(states, "validation")
    val_acc = (np.trace(cms, axis1=1, axis2=2) / cms.sum((1, 2)))[:n]
    if dynamic:
      hparams = weighting.ensemble_dynamic_weights_update(hparams, cms)
    return val_acc, hparams

  def _log_epoch(self, phase, labels, history, epoch, epochs, seconds, epoch_seconds, finite
                 ) -> None:
    # The first epoch of a process includes compiling: later ones tell the pace better.
    eta = float(np.median(epoch_seconds[1:] or epoch_seconds)) * (epochs - epoch - 1)
    left = ("~" if len(epoch_seconds) > 1 else "at most ~") + console.format_seconds(eta)
    self.log(f"[{phase}] epoch {epoch + 1}/{epochs}  {seconds:.1f}s  loss "
             f"{console.spread(history['loss'][:, epoch])}  val acc "
             f"{console.spread(history['val_accuracy'][:, epoch])}  "
             f"({left} left in this phase)")
    new = ~finite & (phases.first_non_finite(history["finite"][:, :epoch]) == 0)
    for i in np.flatnonzero(new):
      self.log(f"[{phase}] {labels[i]} went non-finite (NaN/inf loss, parameters or weights) "
               f"in epoch {epoch + 1}: it is excluded from every comparison")

  def _log_members(self, labels, history, epoch: int) -> None:
    """Each member once, after its last epoch."""
    for i, label in enumerate(labels):
      self.log(f"    {label:<44s} loss {history['loss'][i, epoch]:.4f}  "
               f"train acc {history['accuracy'][i, epoch]:.4f}  "
               f"val acc {history['val_accuracy'][i, epoch]:.4f}"
               + ("" if history["finite"][i, epoch] else "  NON-FINITE"))
