"""Head-only retraining (issue #22): every model's named head, frozen features and BatchNorm
statistics, the refusals, and a tiny study with head-only, logit-space and online members."""

import json
import os

import chex
import jax
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax import metrics
from lwi_jax import models
from lwi_jax.parallel import ensemble, programs
from lwi_jax.rules import members
from lwi_jax.study import checks, phases
from lwi_jax.study import study as study_lib
from lwi_jax.study import trainer as trainer_lib
from tests.test_study import load_config
from tests.test_resume import strip_timing


def _split(kind, n, rng):
  y = np.repeat(np.arange(3), n).astype(np.int32)
  if kind == "mlp":
    x = rng.normal(size=(3 * n, 5)).astype(np.float32)
    x[:, 0] += y
  elif kind == "conv_lstm":
    x = rng.integers(1, 6, (3 * n, 6)).astype(np.int32)
    x[:, 0] = y + 1
  else:
    x = rng.integers(0, 256, (3 * n, 8, 8, 3)).astype(np.uint8)
    x[:, 0, 0, :] = y[:, None] * 100
  return data_lib.Split(x, y)


def _tiny(kind):
  """A config of the model kind at tiny sizes, and synthetic data for it."""
  if kind == "mlp":
    config = load_config("tabular")
    config.model.hidden_sizes, config.model.norm = (8,), "batch"
  elif kind == "conv_lstm":
    config = load_config("names")
    config.model.embed_dim, config.model.conv_features, config.model.lstm_hidden = 4, (4,), 4
  else:
    config = load_config("cifar", "smoke")
    config.model.widths, config.model.dense_width, config.model.conv_impl = (4, 4, 4), 8, "matmul"
  config.train.epochs, config.train.head_epochs, config.train.batch_size = 1, 1, 16
  config.train.eval_every_epoch = False
  config.train.augment = "none"
  rng = np.random.default_rng(0)
  info = {"vocab_size": 6} if kind == "conv_lstm" else {}
  data = data_lib.ClassificationData(_split(kind, 16, rng), _split(kind, 4, rng),
                                     _split(kind, 4, rng), ("a", "b", "c"), info)
  return config, data


@pytest.mark.parametrize("kind", ["mlp", "conv_lstm", "resnet_cnn"])
def test_head_members_change_nothing_outside_the_head(kind):
  config, data = _tiny(kind)
  trainer = trainer_lib.Trainer(config, data, log=lambda _: None, progress="off")
  head = models.HEADS[config.model.name]
  # the "trained baselines" of seeds 0 and 1 (any states will do: only the head may move)
  base = programs.init_ensemble(trainer.model, trainer.tx, trainer.sample_inputs, [0, 1])
  assert head in base.params
  spec = members.parse_rule("inverse_tpr:gamma=1,retrain=head")
  hps = [spec.member_hparams(np.array([0.9, 0.5, 0.7]), data.class_counts, 1)] * 3
  start = trainer.head_states(base, [0, 1], [1, 0, 1])
  states, _, history = trainer.fit("head1", ["a", "b", "c"], [1, 0, 1], ensemble.stack(hps),
                                   initial_states=start, epochs=1)
  assert np.isfinite(history["loss"]).all()
  for i, seed in enumerate([1, 0, 1]):
    before, after = ensemble.unstack(base, seed), ensemble.unstack(states, i)
    frozen = lambda p: {k: v for k, v in p.items() if k != head}  # noqa: E731
    chex.assert_trees_all_equal(frozen(after.params), frozen(before.params))
    chex.assert_trees_all_equal(after.batch_stats, before.batch_stats)
    with pytest.raises(AssertionError):  # the head did train
      chex.assert_trees_all_close(after.params[head], before.params[head])
  if kind != "conv_lstm":
    assert jax.tree.leaves(base.batch_stats)  # the check above covered BatchNorm statistics


def test_retrain_head_refusals_name_the_field(monkeypatch):
  config = load_config("tabular")
  config.rules = ("inverse_tpr:gamma=1,retrain=head",)
  monkeypatch.setattr(models, "HEADS", {"resnet_cnn": "head", "conv_lstm": "head"})
  with pytest.raises(ValueError, match="model.name='mlp' has no named classifier head") as e:
    checks.validate_config(config)
  assert "\n" not in str(e.value) and "retrain=head" in str(e.value)
  monkeypatch.undo()
  checks.validate_config(config)
  config.train.head_epochs = 0
  with pytest.raises(ValueError, match="train.head_epochs=0 is invalid"):
    checks.validate_config(config)


def test_tiny_study_with_head_only_logit_space_and_online_members(tmp_path, monkeypatch):
  from lwi_jax.report import plots
  monkeypatch.setattr(plots, "write_all", lambda *_: [])  # figures: not what is tested here
  config, data = _tiny("mlp")
  config.train.epochs, config.train.head_epochs, config.seeds = 2, 1, (0, 1)
  config.rules = ("logit_tpr:gamma=1", "inverse_tpr:gamma=1,retrain=head",
                  "online_eg:eta=0.5,every=2")
  config.compare.test, config.compare.selection = "none", "none"
  config.workdir = str(tmp_path)

  lines = []
  study = study_lib.Study(config, log=lines.append)
  study._data, study._data_hash = data, "tiny"
  results = study.run()
  members_ = results["rounds"][0]
  assert [m["label"] for m in members_] == [
      "logit_tpr:gamma=1,weight=0@seed0", "logit_tpr:gamma=1,weight=0@seed1",
      "inverse_tpr:gamma=1,retrain=head@seed0", "inverse_tpr:gamma=1,retrain=head@seed1",
      "online_eg:eta=0.5,every=2@seed0", "online_eg:eta=0.5,every=2@seed1"]
  assert [len(m["history"]["seconds"]) for m in members_] == [2, 2, 1, 1, 2, 2]
  trained = ["logit_tpr:gamma=1,weight=0", "inverse_tpr:gamma=1,retrain=head",
             "online_eg:eta=0.5,every=2"]
  assert [r["rule"] for r in results["comparisons"][0]] == trained + [
      f"{rule}+logit_offsets:gamma=1" for rule in ["baseline", *trained]]  # the preset's arm
  # post-hoc rows on a round merged from round1 and head1 take each member's own logits
  assert [m["posthoc"]["source"] for m in results["posthoc"][2:]] == [
      m["label"] for m in members_]
  from lwi_jax.rules import posthoc
  logits = {f.split("-")[0]: phases.read_logits(str(tmp_path / "phases" / f))
            for f in os.listdir(tmp_path / "phases") if f.endswith(".json")}
  source = {"round1": [0, 1, 4, 5], "head1": [2, 3]}
  for phase, idx in source.items():
    for j, i in enumerate(idx):
      row = results["posthoc"][2 + i]
      pred = posthoc.adjusted_predictions(logits[phase]["test"][j], row["posthoc"]["offsets"])
      np.testing.assert_array_equal(row["test"]["confusion"],
                                    metrics.confusion_counts(pred, data.test.labels, 3))
  assert any(line.startswith("[head1] training 2 members for 1 epoch") for line in lines)
  saved = {f.split("-")[0]: json.load(open(tmp_path / "phases" / f))
           for f in os.listdir(tmp_path / "phases") if f.endswith(".json")}
  assert set(saved) == {"baseline", "round1", "head1"}
  assert saved["head1"]["labels"] == [m["label"] for m in members_[2:4]]
  assert np.isfinite(saved["head1"]["history"]["seconds"]).all()  # its cost, like any phase
  online = np.asarray(saved["round1"]["final_logit_offsets"])[2:]
  assert np.abs(online).max() > 0  # λ moved from uniform
  np.testing.assert_allclose(online.mean(1), 0, atol=1e-6)  # mean log λ = 0

  # The same study again reuses every phase, the head phase too, and trains nothing.
  first = json.loads((tmp_path / "results.json").read_text())
  rerun_lines = []
  rerun = study_lib.Study(config, log=rerun_lines.append)
  rerun._data, rerun._data_hash = data, "tiny"
  rerun.run()
  for phase in ("baseline", "round1", "head1"):
    assert any(line.startswith(f"[{phase}] reusing finished phase") for line in rerun_lines)
  assert not any("members for" in line for line in rerun_lines), rerun_lines
  second = json.loads((tmp_path / "results.json").read_text())
  assert strip_timing(second) == strip_timing(first)

  logit = np.asarray(saved["round1"]["initial_logit_offsets"])[:2]
  np.testing.assert_array_equal(logit, np.asarray(saved["round1"]["final_logit_offsets"])[:2])
  # in a later process (a new head rule added), the baseline comes back from its last
  # checkpoint exactly as trained
  again = study_lib.Study(config, log=lambda _: None)
  again._data, again._data_hash = data, "tiny"
  restored, trained = again._baseline_states(study._baseline_key()), study._states["baseline"]
  chex.assert_trees_all_equal((restored.params, restored.batch_stats),
                              (trained.params, trained.batch_stats))
  key = phases.fingerprint(config, "baseline")
  config.train.head_epochs = 3  # a head-only field: no other phase's fingerprint moves
  assert phases.fingerprint(config, "baseline") == key
