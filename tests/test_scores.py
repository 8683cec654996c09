"""Cross-fitted scores: folds, the per-member example subset, predictions, intervals, shrinkage."""

import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from lwi_jax import data as data_lib
from lwi_jax import member
from lwi_jax import metrics
from lwi_jax import optim
from lwi_jax import train
from lwi_jax.parallel import ensemble
from lwi_jax.parallel import programs
from lwi_jax.rules import members
from lwi_jax.rules import scores
from lwi_jax.study import study as study_lib
from lwi_jax.study import trainer as trainer_lib

from tests.test_study import load_config


def test_stratified_folds_spread_every_class_evenly_and_depend_on_the_seed():
  labels = np.repeat(np.arange(3), [50, 31, 7]).astype(np.int32)
  folds = scores.stratified_folds(labels, 5, seed=0)
  assert folds.shape == labels.shape and set(np.unique(folds)) == set(range(5))
  for c in range(3):
    per_fold = np.bincount(folds[labels == c], minlength=5)
    assert per_fold.max() - per_fold.min() <= 1, per_fold
  np.testing.assert_array_equal(folds, scores.stratified_folds(labels, 5, seed=0))
  assert not np.array_equal(folds, scores.stratified_folds(labels, 5, seed=1))
  with pytest.raises(ValueError, match="only 7 training examples"):
    scores.stratified_folds(labels, 8, seed=0)


def test_out_of_fold_confusion_uses_each_example_once_by_its_held_out_member():
  labels = np.array([0, 0, 1, 1, 2, 2], np.int32)
  folds = np.array([0, 1, 0, 1, 0, 1])
  preds = np.array([[0, 9, 1, 9, 0, 9],    # member 0: right on 0 and 2, wrong on 4
                    [9, 1, 9, 1, 9, 2]])   # member 1: wrong on 1, right on 3 and 5
  cm = scores.out_of_fold_confusion(preds, labels, folds, 3)
  np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])


@pytest.mark.parametrize("k,n", [(0, 10), (7, 20), (20, 20), (450, 500)])
def test_wilson_interval_matches_scipy(k, n):
  low, high = scores.wilson_interval(k, n, 0.95)
  ref = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
  np.testing.assert_allclose([low, high], [ref.low, ref.high], atol=1e-12)


def test_shrinkage_toward_the_mean():
  k, n = np.array([90, 50, 70]), np.array([100, 100, 100])
  np.testing.assert_allclose(scores.shrink(k, n, "none"), k / n)
  s_bar = np.mean(k / n)
  np.testing.assert_allclose(scores.shrink(k, n, "add_kappa", 10.0), (k + 10 * s_bar) / (n + 10))
  # empirical Bayes: a spread far beyond the binomial noise barely moves, a spread within the
  # noise collapses to the mean, and the mean itself is kept
  big = scores.shrink(np.array([9000, 5000, 7000]), np.array([10000] * 3), "empirical_bayes")
  np.testing.assert_allclose(big, [0.9, 0.5, 0.7], atol=2e-3)
  noise = scores.shrink(np.array([10, 11, 9]), np.array([20] * 3), "empirical_bayes")
  np.testing.assert_allclose(noise, [0.5] * 3, atol=1e-9)
  # the class scored on fewer examples is pulled further (relative to its distance)
  k2, n2 = np.array([270, 6, 210]), np.array([300, 12, 300])  # s = 0.9, 0.5, 0.7
  s2 = k2 / n2
  moved = 1 - (scores.shrink(k2, n2, "empirical_bayes") - s2.mean()) / (s2 - s2.mean())
  assert moved[1] > 5 * moved[0] > 0
  with pytest.raises(ValueError, match="scores.shrinkage"):
    scores.shrink(k, n, "magic")


def test_weight_intervals_contain_the_weights_and_narrow_with_more_examples():
  cfg = load_config("names").scores  # the configs' scores defaults (configs/common.py)
  rule = members.parse_rule("inverse_tpr:gamma=1")
  counts = np.array([100, 100, 100])

  def interval(n):
    rec = scores.score_record(np.diag(np.array([0.9, 0.5, 0.7]) * n) + np.array(
        [[0, 0.1, 0], [0.25, 0, 0.25], [0, 0.3, 0]]) * n, cfg, "validation")
    w = np.asarray(rule.member_hparams(rec["tpr"], counts, 1).class_weights)
    iv = scores.weight_intervals(rule, rec, counts, 1, cfg, seed=0)["class_weights"]
    assert np.all(iv["low"] <= w + 1e-6) and np.all(w <= iv["high"] + 1e-6)
    return iv["high"] - iv["low"]

  assert np.all(interval(4000) < interval(40) / 5)
  focal = scores.weight_intervals(members.parse_rule("focal"), scores.score_record(
      np.eye(3, dtype=int) * 10 + 1, cfg, "validation"), counts, 1, cfg, seed=0)
  np.testing.assert_allclose(focal["class_weights"]["high"] - focal["class_weights"]["low"], 0)


def test_example_mask_restricts_an_epoch_to_the_members_subset():
  labels = jnp.asarray(np.repeat(np.arange(4), 25).astype(np.int32))
  mask = np.arange(100) % 5 != 2  # 80 examples; a fold member's view of the pool
  order = jax.jit(train.epoch_order, static_argnums=(3, 4))
  key = train.epoch_key(0, 3)
  hp = member.MemberHParams.create(np.ones(4), example_mask=mask)
  idx = np.asarray(order(hp, key, labels, 6, 16)).ravel()  # 96 slots: the same steps as all
  assert mask[idx].all()
  np.testing.assert_array_equal(np.unique(idx), np.flatnonzero(mask))  # every one at least once
  over = hp.replace(oversample=jnp.asarray(True), sample_weights=jnp.asarray([1., 1., 1., 9.]))
  assert mask[np.asarray(order(over, key, labels, 6, 16))].all()
  full = np.asarray(order(member.MemberHParams.create(np.ones(4)), key, labels, 6, 16)).ravel()
  assert len(np.unique(full)) == 96  # the unmasked member: a plain permutation


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(3)(x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0)


@pytest.fixture(scope="module")
def linear_ensemble():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 20).astype(np.int32)
  x = rng.integers(0, 256, (60, 2, 2, 1), dtype=np.uint8)
  x[:, 0, 0, 0] = labels * 120
  tx = optim.make_optimizer(load_config("names").optimizer, 4, 2)
  states = programs.init_ensemble(_Linear(), tx, jnp.asarray(x[:1]), [0, 1, 2])
  return states, x, labels


def test_predictions_agree_with_the_confusion_matrices(linear_ensemble):
  """The one evaluation program's logits -> predictions -> confusion, as the study reads them."""
  states, x, labels = linear_ensemble
  inputs, _, mask = train.batch_for_eval(x, labels, 16)  # 64 slots, 4 of them padding
  logits = programs.ensemble_logits_fn("vmap")(states, inputs, mask)
  chex.assert_shape(logits, (3, 64, 3))
  assert logits.dtype == jnp.float32 and np.all(np.asarray(logits)[:, 60:] == 0)
  preds = metrics.predicted_classes(np.asarray(logits)[:, :60], 3)
  assert preds.dtype == np.int8
  for p in preds:
    ref = np.zeros((3, 3), int)
    np.add.at(ref, (labels, p), 1)
    np.testing.assert_array_equal(ref, metrics.confusion_counts(p, labels, 3))
  seq = programs.ensemble_logits_fn("sequential")(states, inputs, mask)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(seq))


def test_fold_members_never_learn_from_their_held_out_examples(linear_ensemble):
  """One vmapped ensemble: a member's update equals the update on its subset alone."""
  states, x, labels = linear_ensemble
  mask = np.arange(60) % 3 != 0
  epoch = programs.ensemble_train_epoch_fn(10, "none", "vmap")
  hp = ensemble.stack([member.MemberHParams.create(np.ones(3), example_mask=mask)] * 3)
  poisoned = np.where(mask, labels, (labels + 1) % 3).astype(np.int32)  # held-out labels wrong
  keys = programs.ensemble_epoch_keys([0, 1, 2], 0)
  copy = lambda t: jax.tree.map(jnp.array, t)
  a, _, _ = epoch(copy(states), copy(hp), keys, jnp.int32(0), jnp.asarray(x), jnp.asarray(labels))
  b, _, _ = epoch(copy(states), copy(hp), keys, jnp.int32(0), jnp.asarray(x),
                  jnp.asarray(poisoned))
  chex.assert_trees_all_close(a.params, b.params)  # held-out labels change nothing


class _FakeTrainer:
  """Records the fit calls of a Study; predicts the label for even examples, 0 for odd."""

  def __init__(self, data, diverged=()):
    self.data, self.fits, self.diverged = data, [], set(diverged)

  def fit(self, name, labels, seeds, hparams, checkpoint_dir=None, tensorboard_dir=None,
          on_epoch=None):
    self.fits.append((name, list(labels), list(seeds), hparams))
    e = len(seeds)
    history = {k: np.zeros((e, 1)) for k in trainer_lib.HISTORY_FIELDS}
    history["finite"] = np.array([[label not in self.diverged] for label in labels], float)
    return jnp.zeros(e), hparams, history

  def confusions_of(self, predictions, split):
    return np.stack([metrics.confusion_counts(p, getattr(self.data, split).labels, 3)
                     for p in predictions])

  def predictions(self, states, split, num_members=None):
    y = getattr(self.data, split).labels
    return np.stack([np.where(np.arange(y.size) % 2 == 0, y, 0)] * len(states))

  def logits(self, states, split, num_members=None):  # config.posthoc saves them: one-hot
    return np.eye(3, dtype=np.float32)[self.predictions(states, split, num_members)]


def test_crossfit_trains_seeds_times_folds_as_one_ensemble(tmp_path):
  config = load_config("names")
  config.seeds, config.rules = (0, 1), ("inverse_tpr:gamma=1",)
  config.scores.method, config.scores.folds = "crossfit", 3
  config.workdir = str(tmp_path)
  labels = np.repeat(np.arange(3), 12).astype(np.int32)
  split = data_lib.Split(np.zeros((36, 4), np.int32), labels)
  study = study_lib.Study(config, log=lambda _: None)
  study._data = data_lib.ClassificationData(split, split, split, ("a", "b", "c"))
  study._trainer = _FakeTrainer(study._data)
  records = study._score_records(config.scores, [0, 1], None, "base")
  (name, names, seeds, hp), = study._trainer.fits
  assert name == "crossfit" and seeds == [0, 0, 0, 1, 1, 1] and names[4] == "fold1@seed1"
  masks = np.asarray(hp.example_mask)
  chex.assert_shape(masks, (6, 36))
  for i, seed in enumerate([0, 1]):
    folds = scores.stratified_folds(labels, 3, seed)
    for j in range(3):
      np.testing.assert_array_equal(masks[3 * i + j], folds != j)
    # every training example scored exactly once, by the member that did not train on it
    cm = records[i]["confusion"]
    assert cm.sum() == 36
    np.testing.assert_array_equal(cm.sum(1), [12, 12, 12])
  np.testing.assert_allclose(records[0]["raw"], [1.0, 0.5, 0.5])  # odd examples predicted 0
  assert os.path.exists(tmp_path / "phases")  # the phase (with its oof counts) was saved
  again = study_lib.Study(config, log=lambda _: None)
  again._data, again._trainer = study._data, _FakeTrainer(study._data)
  reused = again._score_records(config.scores, [0, 1], None, "base")
  assert again._trainer.fits == []  # reused from the saved phase
  np.testing.assert_array_equal(reused[1]["confusion"], records[1]["confusion"])


def test_a_diverged_fold_member_marks_its_seeds_scores_non_finite(tmp_path):
  """Out-of-fold scores of a NaN fold member are argmaxes of NaN logits: its seed's weights
  must not be derived from them (the study then trains that seed's members as excluded)."""
  config = load_config("names")
  config.seeds, config.rules = (0, 1), ("inverse_tpr:gamma=1",)
  config.scores.method, config.scores.folds = "crossfit", 3
  config.workdir = str(tmp_path)
  split = data_lib.Split(np.zeros((36, 4), np.int32), np.repeat(np.arange(3), 12).astype(np.int32))
  study = study_lib.Study(config, log=lambda _: None)
  study._data = data_lib.ClassificationData(split, split, split, ("a", "b", "c"))
  study._trainer = _FakeTrainer(study._data, diverged={"fold2@seed1"})
  records = study._score_records(config.scores, [0, 1], None, "base")
  assert [r["finite"] for r in records] == [True, False]
  assert records[1]["scored_by"] == "the 3 fold members of seed 1"


@pytest.mark.parametrize("field,value,message", [
    ("scores.method", "kfold", "scores.method"), ("scores.folds", 1, "scores.folds"),
    ("scores.shrinkage", "lots", "scores.shrinkage"),
    ("scores.confidence", 1.5, "scores.confidence"),
    ("compare.bootstrap_samples", 10, "compare.bootstrap_samples")])
def test_bad_scores_config_fails_before_any_work(field, value, message):
  config = load_config("names")
  config.scores.method = "crossfit"
  section, name = field.split(".")
  config[section][name] = value
  config.workdir = "/nonexistent/never/written"
  with pytest.raises(ValueError, match=message):
    study_lib.Study(config)
