"""model.name='conv_groups' (airbench's shape), model.identity_init, model.bn_scale."""

import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import cifar
from conftest import jit_init
from lwi_jax import models
from lwi_jax.models import conv_groups
from lwi_jax.models import resnet_cnn
from lwi_jax.models import whitening
from lwi_jax.study import phases
from lwi_jax.study import study as study_lib


def _cfg(name="conv_groups", **kw):
  return ml_collections.ConfigDict({**dict(name=name, widths=(4, 8, 8), dense_width=16,
                                           dropout_rate=0.0, conv_impl="xla"), **kw})


def _images(n=3, size=16, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _perturbed(variables, dtype, seed=1):
  """Non-trivial parameters (non-zero biases, scales != 1), so paths that fold or drop them
  would show it; every leaf in `dtype`. Noise from numpy: drawn with jax.random, each leaf's
  draw is a program to compile (seconds in all, for nothing the test checks)."""
  rng = np.random.default_rng(seed)
  cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
  params = jax.tree.map(lambda a: cast(np.asarray(a, np.float64)
                                       + 0.3 * rng.standard_normal(a.shape)),
                        variables["params"])
  return {**jax.tree.map(cast, variables), "params": params}


@pytest.mark.parametrize("use_jit", [False, True])
def test_conv_groups_shapes_dtypes_and_head(use_jit):
  model = models.create_model(_cfg(), 5, {}, None)
  x = jnp.asarray(_images())
  variables = jit_init(model, jax.random.key(0), x, train=False)
  fn = lambda v, xs: model.apply(v, xs, train=False)  # noqa: E731
  logits = (jax.jit(fn) if use_jit else fn)(variables, x)
  chex.assert_shape(logits, (3, 5))
  chex.assert_type(logits, jnp.float32)
  chex.assert_tree_all_finite(logits)
  params = variables["params"]
  assert set(params["head"]) == {"kernel"}  # bias-free, like airbench's
  chex.assert_shape(params["head"]["kernel"], (8, 5))  # global max pool: the last width
  chex.assert_shape(params["Conv3x3_2"]["kernel"], (3, 3, 4, 8))  # group 2's first conv
  assert models.head_name(_cfg()) == "head"  # head-only retraining has a head to retrain
  # the logits are the head's output scaled by LOGIT_SCALE (airbench's 1/9)
  _, inter = model.apply(variables, x, train=False, capture_intermediates=True,
                         mutable=["intermediates"])
  chex.assert_trees_all_close(logits, inter["intermediates"]["head"]["__call__"][0]
                              * conv_groups.LOGIT_SCALE, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["conv_groups", "resnet_cnn"])
@pytest.mark.parametrize("train", [False, True])
def test_cpu_and_matmul_paths_equal_xla_in_float64(name, train):
  """Pool before BatchNorm (conv_groups) must still fold the convolution's bias on the CPU path:
  logits, gradients and updated statistics equal the XLA path's, from perturbed parameters, in
  float64 (where round-off cannot hide a wrong path; test_fast_paths explains). With the
  presets' whitening layer, so in training the CPU path's first weight gradient reads the
  channels-first stem (cnn_base.ImageCNN.stem_channels_first). conv_groups with GELU (airbench's
  activation: the fused backward's forward-mode derivative), the residual CNN with ReLU."""
  x = jnp.asarray(_images(n=4))
  kernel, bias = whitening.fit(_images(n=8, seed=3), 2, whitening.EPS)
  white = dict(whiten_patch=2, whiten_kernel=kernel, whiten_bias=bias)
  kinds = {"conv_groups": lambda **kw: conv_groups.ConvGroupsCNN(5, widths=(4, 8, 8), **white,
                                                                 **kw),
           "resnet_cnn": lambda **kw: resnet_cnn.ResidualCNN(5, widths=(4, 8, 8), dense_width=6,
                                                             dropout_rate=0.0, **white, **kw)}
  out, variables = {}, None
  with jax.enable_x64(True):
    for impl in ("xla", "cpu", "matmul"):
      model = kinds[name](conv_impl=impl, dtype=jnp.float64, identity_init=True,
                          bn_scale=name == "resnet_cnn",
                          activation="gelu" if name == "conv_groups" else "relu")
      if variables is None:  # one parameter tree for the three paths
        init = jit_init(model.clone(dtype=jnp.float32), jax.random.key(0), x, train=False)
        variables = _perturbed(init, jnp.float64)

      def loss(params):
        logits, new = model.apply({**variables, "params": params}, x, train=train,
                                  mutable=["batch_stats"])
        return jnp.sum(jnp.sin(logits)), (logits, new)

      opts = resnet_cnn.CPU_COMPILER_OPTIONS if impl == "cpu" else None
      fn = jax.jit(jax.value_and_grad(loss, has_aux=True), compiler_options=opts)
      (_, (logits, new)), grads = fn(variables["params"])
      out[impl] = (logits, grads, new)
    chex.assert_type(jax.tree.leaves(out["xla"]), jnp.float64)
    chex.assert_trees_all_close(out["cpu"], out["xla"], rtol=1e-9, atol=1e-11)
    chex.assert_trees_all_close(out["matmul"], out["xla"], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("c_in,c_out", [(3, 8), (8, 4), (6, 6)])
def test_identity_init_passes_the_first_channels_through(c_in, c_out):
  init = resnet_cnn.identity_kernel_init()
  kernel = init(jax.random.key(0), (3, 3, c_in, c_out))
  n = min(c_in, c_out)
  eye = np.zeros((3, 3, c_in, n), np.float32)
  eye[1, 1] = np.eye(c_in, n)
  np.testing.assert_array_equal(kernel[..., :n], eye)  # centred, own channel only
  conv = resnet_cnn.Conv3x3(c_out, "xla", identity_init=True)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 5, c_in)), jnp.float32)
  variables = jit_init(conv, jax.random.key(0), x)
  kernel = variables["params"]["kernel"]
  y = conv.apply(variables, x)
  chex.assert_trees_all_close(y[..., :n], x[..., :n], atol=1e-6)  # the identity, bias 0
  if c_out > n:  # the other filters keep the base initialisation
    assert float(jnp.std(kernel[..., n:])) > 0.05
  plain = jit_init(resnet_cnn.Conv3x3(c_out, "xla"), jax.random.key(0), x)["params"]["kernel"]
  chex.assert_trees_all_equal(kernel[..., n:], plain[..., n:])


@pytest.mark.parametrize("impl", ["xla", "cpu"])
def test_bn_scale_false_has_no_trained_scale_and_the_same_start(impl):
  x = jnp.asarray(_images())
  with_scale = models.create_model(_cfg("resnet_cnn", conv_impl=impl), 3, {}, None)
  without = models.create_model(_cfg("resnet_cnn", conv_impl=impl, bn_scale=False), 3, {}, None)
  v1 = jit_init(with_scale, jax.random.key(0), x, train=False)
  v2 = jit_init(without, jax.random.key(0), x, train=False)
  assert all("scale" in v1["params"][f"BatchNorm_{i}"] for i in range(5))
  assert not any("scale" in v2["params"][f"BatchNorm_{i}"] for i in range(5))
  # scales start at 1, so both models compute the same function at initialisation
  chex.assert_trees_all_close(with_scale.apply(v1, x, train=True, mutable=["batch_stats"]),
                              without.apply(v2, x, train=True, mutable=["batch_stats"]),
                              rtol=1e-5, atol=1e-6)


def test_field_errors_and_fingerprints():
  with pytest.raises(ValueError, match=r"model.identity_init='yes' must be True or False"):
    models.check_config(_cfg(identity_init="yes"))
  with pytest.raises(ValueError, match=r"model.bn_scale=0 must be True or False"):
    models.check_config(_cfg(bn_scale=0))
  # At their neutral values the fields leave a phase's fingerprint as without them (phases
  # finished before they existed are reused); anything else retrains.
  with pytest.raises(ValueError, match=r"model.activation='swish' is not one of \['elu', "):
    models.check_config(_cfg(activation="swish"))
  config = cifar.get_config("cpu")
  neutral = {("model", "identity_init"): False, ("model", "bn_scale"): True,
             ("model", "activation"): "relu", ("optimizer", "norm_bias_lr_scale"): 1.0}
  for (section, field), value in neutral.items():
    config[section][field] = value
  key = phases.fingerprint(config, "baseline")
  without = config.to_dict()
  for section, field in neutral:
    without[section].pop(field)
  assert phases.fingerprint(ml_collections.ConfigDict(without), "baseline") == key
  for (section, field), value in {**neutral, ("model", "identity_init"): True,
                                  ("model", "bn_scale"): False, ("model", "activation"): "gelu",
                                  ("optimizer", "norm_bias_lr_scale"): 64.0}.items():
    changed = ml_collections.ConfigDict(config.to_dict())
    changed[section][field] = value
    assert phases.fingerprint(changed, "baseline") != key, (section, field)


def test_conv_groups_study_end_to_end(tmp_path, tiny_cifar10_dir):
  """configs/cifar.py:smoke with the airbench shape and its two fields: a baseline and a
  head-only member train and report."""
  config = cifar.get_config("smoke")
  config.data.dir = tiny_cifar10_dir
  config.workdir = str(tmp_path / "run")
  config.model.name = "conv_groups"
  config.model.identity_init, config.model.bn_scale = True, False
  config.train.epochs, config.train.head_epochs = 1, 1
  config.rules = ("uniform:retrain=head",)
  config.posthoc = ()
  results = study_lib.run(config, log=lambda m: None)
  assert os.path.exists(os.path.join(config.workdir, "report.md"))
  assert results["dataset"]["sizes"]["test"] == 200
