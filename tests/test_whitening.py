"""model.whiten_patch: the fixed patch-whitening first layer (lwi_jax/models/whitening.py)."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import jit_init
from lwi_jax import models
from lwi_jax.models import image_input
from lwi_jax.models import whitening
from lwi_jax.parallel import programs


def _correlated_images(n=40, size=12, seed=0):
  """uint8 images whose neighbouring pixels and channels are correlated (like photographs)."""
  rng = np.random.default_rng(seed)
  base = rng.normal(size=(n, size + 1, size + 1, 1))
  smooth = base[:, :-1, :-1] + base[:, 1:, :-1] + base[:, :-1, 1:] + base[:, 1:, 1:]
  colour = smooth * np.asarray([1.0, 0.8, 0.6]) + 0.3 * rng.normal(size=(n, size, size, 3))
  return np.clip(128 + 30 * colour, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [1, 2])
def test_whitened_fitting_patches_have_identity_covariance(size):
  images = _correlated_images()
  kernel, bias = whitening.fit(images, size, eps=1e-6)
  dim = size * size * 3
  x = image_input.scaled_pixels(jnp.asarray(images), jnp.float32, None, None)
  p = np.asarray(whitening.patches(x, size, pad=False), np.float64).reshape(-1, dim)
  y = p @ np.asarray(kernel, np.float64).reshape(dim, 2 * dim) + np.asarray(bias, np.float64)
  np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.cov(y[:, :dim].T, bias=True), np.eye(dim), atol=2e-3)
  np.testing.assert_allclose(y[:, dim:], -y[:, :dim], atol=1e-6)  # both signs for the ReLU
  raw_cov = np.cov(p.T, bias=True)
  assert abs(raw_cov[0, 1]) > 0.5 * raw_cov[0, 0]  # the inputs were far from white


@pytest.mark.parametrize("use_jit", [False, True])
def test_apply_keeps_the_image_size(use_jit):
  images = _correlated_images(n=4, size=9)
  kernel, bias = whitening.fit(images, 2, eps=whitening.EPS)
  fn = lambda x: whitening.apply(x, 2, kernel, bias)  # noqa: E731
  x = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
  out = (jax.jit(fn) if use_jit else fn)(x)
  chex.assert_shape(out, (4, 9, 9, 24))
  chex.assert_type(out, jnp.float32)
  chex.assert_trees_all_close(out, fn(x), atol=1e-5)


@pytest.mark.parametrize("use_jit", [False, True])
def test_channels_first_is_the_transposed_layer(use_jit):
  """whitening.apply_channels_first (the CPU path's weight-gradient input) = apply, transposed
  to [C, H, W, N]."""
  images = _correlated_images(n=5, size=9)
  kernel, bias = whitening.fit(images, 2, eps=whitening.EPS)
  x = jnp.asarray(images, jnp.float32) / 127.5 - 1.0
  fn = lambda x: whitening.apply_channels_first(x, 2, kernel, bias)  # noqa: E731
  out = (jax.jit(fn) if use_jit else fn)(x)
  chex.assert_shape(out, (24, 9, 9, 5))
  chex.assert_trees_all_close(out, jnp.transpose(whitening.apply(x, 2, kernel, bias),
                                                 (3, 1, 2, 0)), rtol=1e-5, atol=1e-5)


def test_members_train_through_the_channels_first_stem():
  """Under vmap over members (the ensemble), the CPU path's gradients with the channels-first
  stem equal the XLA path's, member by member."""
  from lwi_jax.models import resnet_cnn  # noqa: PLC0415
  images = jnp.asarray(_correlated_images(n=8, size=12).reshape(2, 4, 12, 12, 3))
  grads, params = {}, None
  for impl in ("cpu", "xla"):
    model = models.create_model(_cfg(name="conv_groups", whiten_patch=2, conv_impl=impl), 3, {},
                                np.asarray(images[0]))
    if params is None:  # one set of members for both paths, initialised as one program
      params = programs.jit_init(jax.vmap(lambda k: model.init(k, images[0], train=False)))(
          jax.random.split(jax.random.key(0), 2))

    def loss(v, x):
      logits, _ = model.apply(v, x, train=True, mutable=["batch_stats"])
      return jnp.sum(jnp.sin(logits))

    opts = resnet_cnn.CPU_COMPILER_OPTIONS if impl == "cpu" else None
    grads[impl] = jax.jit(jax.vmap(jax.grad(loss)), compiler_options=opts)(params, images)
  chex.assert_trees_all_close(grads["cpu"], grads["xla"], rtol=2e-4, atol=2e-5)


def _cfg(**kw):
  return ml_collections.ConfigDict({**dict(name="resnet_cnn", widths=(4, 8, 8), dense_width=16,
                                           dropout_rate=0.0, conv_impl="xla"), **kw})


def test_the_layer_is_a_constant_of_the_model_not_a_parameter():
  images = _correlated_images(n=6, size=16)
  plain = models.create_model(_cfg(), 3, {}, images)
  white = models.create_model(_cfg(whiten_patch=2), 3, {}, images)
  x = jnp.asarray(images[:2])
  p_plain = jax.eval_shape(lambda: plain.init(jax.random.key(0), x, train=False))["params"]
  variables = jit_init(white, jax.random.key(0), x, train=False)
  p_white = variables["params"]
  assert jax.tree.structure(p_plain) == jax.tree.structure(p_white)  # nothing new to train
  chex.assert_shape(p_white["Conv3x3_0"]["kernel"], (3, 3, 24, 4))  # 2*2*3 patches, both signs
  chex.assert_shape(white.apply(variables, x, train=False), (2, 3))
  grads = jax.jit(jax.grad(lambda p: white.apply({**variables, "params": p}, x,
                                                 train=False).sum()))(variables["params"])
  assert float(jnp.abs(grads["Conv3x3_0"]["kernel"]).sum()) > 0


def test_whitening_field_errors():
  with pytest.raises(ValueError, match="model.whiten_patch=2 is fitted to the training images"):
    models.create_model(_cfg(whiten_patch=2), 3, {})
  with pytest.raises(ValueError, match="model.whiten_patch=-1 must be >= 0"):
    models.check_config(_cfg(whiten_patch=-1))
  with pytest.raises(ValueError, match="model.whiten_eps=0.0 must be > 0"):
    models.check_config(_cfg(whiten_patch=2, whiten_eps=0.0))
