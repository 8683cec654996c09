"""The study's building blocks: pairing, dynamic weights, oversampling, config validation."""

import importlib.util
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lwi_jax import data as data_lib
from lwi_jax import member
from lwi_jax import optim
from lwi_jax import train
from lwi_jax.models.resnet_cnn import ResidualCNN
from lwi_jax.parallel import ensemble
from lwi_jax.parallel import programs
from lwi_jax.rules import members
from lwi_jax.rules import weighting
from lwi_jax.study import study as study_lib
from lwi_jax.study import trainer as trainer_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name, preset=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*([preset] if preset else []))


@pytest.fixture(scope="module")
def tiny():
  model = ResidualCNN(num_classes=3, widths=(4, 4, 8), dense_width=8, conv_impl="matmul")
  tx = optim.make_optimizer(load_config("cifar").optimizer, 4, 2)
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 16).astype(np.int32)
  images = rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
  images[:, 0, 0, :] = labels[:, None] * 100  # learnable signal
  return model, tx, jnp.asarray(images), jnp.asarray(labels)


def test_same_seed_same_init_and_data_order(tiny):
  model, tx, images, labels = tiny
  states = programs.init_ensemble(model, tx, images[:1], [3, 3, 4])
  p = states.params
  chex.assert_trees_all_equal(ensemble.unstack(p, 0), ensemble.unstack(p, 1))
  with pytest.raises(AssertionError):
    chex.assert_trees_all_close(ensemble.unstack(p, 0), ensemble.unstack(p, 2))
  hp = member.MemberHParams.create(np.ones(3))
  order = lambda seed, epoch: train.epoch_order(hp, train.epoch_key(seed, epoch), labels, 3, 16)
  np.testing.assert_array_equal(order(3, 0), order(3, 0))
  assert not np.array_equal(order(3, 0), order(4, 0))
  assert not np.array_equal(order(3, 0), order(3, 1))
  # a permutation: every example exactly once per epoch
  np.testing.assert_array_equal(np.sort(np.asarray(order(3, 0)).ravel()), np.arange(48))


def test_oversampling_draws_classes_in_requested_proportions():
  labels = jnp.asarray(np.repeat(np.arange(4), [100, 100, 100, 300]).astype(np.int32))
  w = np.array([1.0, 2.0, 4.0, 1.0])
  hp = member.MemberHParams.create(np.ones(4), oversample=True, sample_weights=w)
  draw = jax.jit(lambda k: train.epoch_order(hp, k, labels, 9, 64))
  idx = np.concatenate([np.asarray(draw(k)).ravel()
                        for k in jax.random.split(jax.random.key(0), 50)])
  freq = np.bincount(np.asarray(labels)[idx], minlength=4) / idx.size
  expected = w * np.array([100, 100, 100, 300])
  expected /= expected.sum()
  np.testing.assert_allclose(freq, expected, atol=0.01)  # 28,800 draws: sd < 0.003


def test_dynamic_weights_change_between_epochs_and_stay_pure():
  hp = ensemble.stack([member.MemberHParams.create(np.ones(3), dynamic_tau=1.0),
                       member.MemberHParams.create(np.ones(3))])
  cm = jnp.asarray([[[9, 1, 0], [5, 5, 0], [0, 2, 8]]] * 2, jnp.int32)
  before = jax.tree.map(np.array, hp)
  new = weighting.ensemble_dynamic_weights_update(hp, cm)
  again = weighting.ensemble_dynamic_weights_update(hp, cm)
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, hp), before)  # inputs untouched
  chex.assert_trees_all_equal(new, again)  # same inputs, same outputs
  tpr = np.array([0.9, 0.5, 0.8])
  w = (1 - tpr) / np.mean(1 - tpr)
  np.testing.assert_allclose(new.class_weights[0], w, rtol=1e-5)
  np.testing.assert_array_equal(new.class_weights[1], np.ones(3))  # non-dynamic member kept

  # Inside a real fit, the dynamic member's carried weights move every epoch. The update is
  # the epoch loop's, not the model's: an MLP on float rows compiles in a fraction of a CNN's.
  config = load_config("tabular")
  config.model.hidden_sizes, config.train.epochs, config.train.batch_size = (8,), 2, 16
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 16).astype(np.int32)
  rows = rng.normal(size=(48, 4)).astype(np.float32) + labels[:, None]  # learnable signal
  data = data_lib.ClassificationData(*(data_lib.Split(rows, labels),) * 3,
                                     class_names=("a", "b", "c"))
  trainer = trainer_lib.Trainer(config, data, log=lambda _: None)
  hp0 = ensemble.stack([member.MemberHParams.create(np.ones(3), dynamic_tau=1.0)])
  seen = []
  trainer.log = lambda msg: seen.append(msg)
  _, hp_end, history = trainer.fit("t", ["dyn@seed0"], [0], hp0)
  assert not np.allclose(np.asarray(hp_end.class_weights[0]), 1.0)
  assert np.isfinite(history["val_accuracy"]).all()


@pytest.mark.parametrize("field,value,message", [
    ("rules", ("nonsense",), "valid rules"),
    ("rules", ("inverse_tpr:gamma=-1",), "gamma >= 0"),
    ("rules", ("focal:gamma=-0.5",), "gamma >= 0"),
    ("rules", (), "config.rules is empty"),
    ("seeds", (0,), "needs at least 2 seeds"),
    ("rounds", 0, "rounds=0"),
])
def test_bad_config_fails_before_any_work(field, value, message):
  config = load_config("cifar", "cpu")
  config.compare.test = "paired_t"
  config.seeds = (0, 1)
  config.data.dir = "/nonexistent/never/read"  # proves the data was not touched
  config.workdir = "/nonexistent/never/written"
  config[field] = value
  with pytest.raises(ValueError, match=message):
    study_lib.Study(config)
  assert not os.path.exists("/nonexistent")


def test_rule_specs_build_the_intended_member_hparams():
  s = np.array([0.9, 0.5, 0.8])
  n = np.array([10, 10, 10])
  drw = members.parse_rule("drw:gamma=1,start=0.5").member_hparams(s, n, epochs=10)
  assert int(drw.weights_from_epoch) == 5
  np.testing.assert_allclose(drw.class_weights, (s.mean() / s) / np.mean(s.mean() / s), rtol=1e-5)
  over = members.parse_rule("oversample:gamma=2").member_hparams(s, n, epochs=10)
  assert bool(over.oversample)
  np.testing.assert_array_equal(over.class_weights, np.ones(3))
  assert float(members.parse_rule("group_dro:eta=0.1").member_hparams(s, n, 1).dro_eta) == \
      pytest.approx(0.1)
  focal = members.parse_rule("focal").member_hparams(s, n, 1)
  assert float(focal.focal_gamma) == 2.0


def test_group_dro_upweights_the_class_with_higher_loss():
  w = jnp.ones(3)
  new = train.group_dro_update(w, jnp.array([0.1, 2.0, 0.5]), jnp.array([5.0, 5.0, 5.0]), 0.5)
  assert new[1] > new[2] > new[0]
  np.testing.assert_allclose(np.mean(new), 1.0, rtol=1e-6)
  chex.assert_trees_all_equal(train.group_dro_update(w, jnp.array([1., 2., 3.]),
                                                     jnp.ones(3), 0.0), w)
  # a class absent from the batch keeps its relative weight
  absent = train.group_dro_update(w, jnp.array([0.0, 2.0, 0.5]), jnp.array([0.0, 5.0, 5.0]), 0.5)
  assert absent[0] < absent[2] < absent[1]
