"""Test-time views (config.train.eval_translate): the shifted images' logits, against numpy.

airbench's "mirror + translate": half of the logits from the image (and its mirror), half from
the image shifted one pixel up-left and one down-right, reflect-padded. The reference shifts
the images with numpy and calls the model once per view, so a wrong slice, padding mode or
weight fails here. Tiny shapes.
"""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lwi_jax import train
from lwi_jax.models.conv_groups import ConvGroupsCNN
from lwi_jax.parallel import programs
from lwi_jax.study import phases
from lwi_jax.study import train_options


@pytest.fixture(scope="module")
def member():
  x = np.random.default_rng(3).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
  model = ConvGroupsCNN(num_classes=4, widths=(4, 8, 8), conv_impl="xla")
  state = programs.init_member(model, optax.sgd(0.1), jnp.asarray(x[:1]), jax.random.key(0))
  one_view = jax.jit(lambda s, images: train.predict_logits(s, images))
  return state, x, lambda images: np.asarray(one_view(state, jnp.asarray(images)))


def _shifted(x, p):
  padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
  h, w = x.shape[1:3]
  return padded[:, :h, :w], padded[:, 2 * p:, 2 * p:]


@pytest.mark.parametrize("flip,p", [(False, 1), (True, 2)])
def test_translate_averages_the_shifted_views(member, flip, p):
  state, x, one_view = member

  def views(images):  # the image, plus its mirror with eval_flip
    return one_view(images) + (one_view(images[:, :, ::-1]) if flip else 0.0)

  up_left, down_right = _shifted(x, p)
  assert up_left.shape == x.shape and not np.array_equal(up_left, x)
  expected = 0.5 * views(x) + 0.25 * (views(up_left) + views(down_right))
  got = jax.jit(lambda s, images: train.predict_logits(s, images, flip, p))(state, x)
  chex.assert_shape(got, (6, 4))
  chex.assert_type(got, jnp.float32)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert not np.allclose(got, views(x), atol=1e-4)  # the shifted views changed the logits
  # the study's one evaluation program (confusions, predictions, post-hoc arms) gives the same
  stacked = jax.tree.map(lambda a: a[None], state)
  ensemble = programs.ensemble_logits_fn("vmap", eval_flip=flip, eval_translate=p)
  np.testing.assert_allclose(ensemble(stacked, jnp.asarray(x)[None], jnp.ones((1, 6), bool))[0],
                             expected, rtol=1e-5, atol=1e-5)


def test_field_errors_and_fingerprint():
  images = type("D", (), {"train": type("S", (), {"inputs": np.zeros((2, 8, 8, 3))})()})()
  text = type("D", (), {"train": type("S", (), {"inputs": np.zeros((2, 20), np.int32)})()})()
  cfg = ml_collections.ConfigDict({"eval_translate": 0})
  assert train_options.eval_translate(cfg, images) == 0
  assert train_options.eval_translate(ml_collections.ConfigDict(), images) == 0  # the default
  for bad in (-1, 1.5, True, "1"):
    with pytest.raises(ValueError, match=r"train.eval_translate=.* must be an integer"):
      train_options.eval_translate(ml_collections.ConfigDict({"eval_translate": bad}))
  cfg.eval_translate = 1
  assert train_options.eval_translate(cfg, images) == 1
  with pytest.raises(ValueError, match=r"train.eval_translate=1 works on images"):
    train_options.eval_translate(cfg, text)
  cfg.eval_translate = 4
  with pytest.raises(ValueError, match=r"less than half the images' height and width"):
    train_options.eval_translate(cfg, images)
  # 0 leaves a phase's fingerprint as without the field (phases finished before it existed are
  # reused); shifted views change the phase's evaluated TPRs, so 1 is another phase
  config = ml_collections.ConfigDict({"train": {"epochs": 1}, "model": {}, "optimizer": {}})
  key = phases.fingerprint(config, "baseline")
  config.train.eval_translate = 0
  assert phases.fingerprint(config, "baseline") == key
  config.train.eval_translate = 1
  assert phases.fingerprint(config, "baseline") != key
