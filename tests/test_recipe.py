"""The fast CIFAR recipe, piece by piece, and wired end to end through the :smoke preset.

Label smoothing, decoupled weight decay, the warm-up/linear-decay schedule, alternating flips +
reflect translation, test-time mirror images, BatchNorm settings, mixed precision. Tiny shapes;
the one end-to-end test trains the :smoke preset on conftest's miniature CIFAR-10.
"""

import importlib.util
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lwi_jax import augment
from lwi_jax import losses
from lwi_jax import models
from lwi_jax import optim
from lwi_jax import train
from lwi_jax.models.conv_groups import ConvGroupsCNN
from lwi_jax.models.resnet_cnn import ResidualCNN
from lwi_jax.parallel import programs
from lwi_jax.study import checks
from lwi_jax.study import study as study_lib
from lwi_jax.study import train_options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_cifar_config(preset=None):
  spec = importlib.util.spec_from_file_location("cifar_cfg",
                                                os.path.join(REPO, "configs", "cifar.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*([preset] if preset else []))


# ------------------------------------------------------------------------------------- loss


def test_label_smoothing_is_optax_smoothed_cross_entropy_and_zero_is_exact():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(6, 5)) * 3, jnp.float32)
  labels = jnp.asarray([0, 1, 2, 3, 4, 0])
  plain = losses.per_example_focal(logits, labels, 0.0)
  chex.assert_trees_all_equal(losses.per_example_focal(logits, labels, 0.0, 0.0), plain)
  smoothed = losses.per_example_focal(logits, labels, 0.0, 0.2)
  want = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 5), 0.2))
  np.testing.assert_allclose(smoothed, want, rtol=1e-5)
  # focal: the smoothed cross-entropy scaled by the true class's (1 - p_y)^gamma
  p_y = jax.nn.softmax(logits)[jnp.arange(6), labels]
  np.testing.assert_allclose(losses.per_example_focal(logits, labels, 2.0, 0.2),
                             (1 - p_y) ** 2 * want, rtol=1e-4)


# -------------------------------------------------------------------------------- optimizer


def _opt_cfg(**kw):
  base = dict(name="sgdw", learning_rate=0.5, schedule="constant", weight_decay=0.1,
              momentum=0.9, warmup_fraction=0.25, initial_lr_fraction=0.1,
              final_lr_fraction=0.0)
  return ml_collections.ConfigDict({**base, **kw})


def test_sgdw_decay_is_decoupled_from_momentum():
  """p' = p - lr (g + m * buf) [Nesterov] - lr * wd * p: the decay never enters the buffer."""
  tx = optim.make_optimizer(_opt_cfg(), 1, 10)
  p = {"w": jnp.asarray([1.0, -2.0])}
  g = {"w": jnp.asarray([0.5, 0.25])}
  state = tx.init(p)
  lr, wd, m = 0.5, 0.1, 0.9
  buf = np.zeros(2)
  want = np.asarray(p["w"])
  for _ in range(3):
    upd, state = tx.update(g, state, p)
    p = optax.apply_updates(p, upd)
    buf = m * buf + np.asarray(g["w"])  # momentum of the gradients only
    want = want - lr * (np.asarray(g["w"]) + m * buf) - lr * wd * want
    np.testing.assert_allclose(p["w"], want, rtol=1e-6)


def test_norm_bias_lr_scale_steps_only_batchnorm_biases_faster():
  """sgdw with scale k: a BatchNorm bias moves by lr (k (g + m buf)) + lr wd p, the decay
  unscaled; every other leaf (a conv bias, a kernel) moves exactly as at k = 1."""
  p = {"BatchNorm_0": {"bias": jnp.asarray([1.0, -2.0])},
       "Conv3x3_0": {"bias": jnp.asarray([0.5, 0.5]), "kernel": jnp.asarray([3.0, 1.0])}}
  g = jax.tree.map(lambda x: 0.25 * x + 0.5, p)
  lr, wd, m, k = 0.5, 0.1, 0.9, 4.0

  def run(scale):
    tx = optim.make_optimizer(_opt_cfg(norm_bias_lr_scale=scale), 1, 10)
    params, state = p, tx.init(p)
    for _ in range(3):
      upd, state = tx.update(g, state, params)
      params = optax.apply_updates(params, upd)
    return params

  plain, scaled = run(1.0), run(k)
  chex.assert_trees_all_equal(plain["Conv3x3_0"], scaled["Conv3x3_0"])
  want, buf = np.asarray(p["BatchNorm_0"]["bias"]), np.zeros(2)
  gb = np.asarray(g["BatchNorm_0"]["bias"])
  for _ in range(3):
    buf = m * buf + gb
    want = want - lr * k * (gb + m * buf) - lr * wd * want
  np.testing.assert_allclose(scaled["BatchNorm_0"]["bias"], want, rtol=1e-6)
  assert not np.allclose(plain["BatchNorm_0"]["bias"], want)


def test_norm_bias_lr_scale_reaches_the_image_models_batchnorm_biases():
  """The real networks' parameter trees: exactly their BatchNorm biases are selected (not a
  BatchNorm scale, a convolution's bias or the head's)."""
  for model in (ResidualCNN(num_classes=3, widths=(2, 4, 4), dense_width=4, bn_scale=True),
                ConvGroupsCNN(num_classes=3, widths=(2, 4, 4), bn_scale=False)):
    # the tree's paths are what is asked: traced, not compiled
    image = jnp.zeros((1, 8, 8, 3), jnp.uint8)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), image, train=False))
    picked = [jax.tree_util.keystr(path) for path, _ in
              jax.tree_util.tree_leaves_with_path(params["params"]) if optim.is_norm_bias(path)]
    bn = sorted(k for k in params["params"] if k.startswith("BatchNorm"))
    assert picked == [f"['{k}']['bias']" for k in bn] and len(bn) >= 5, picked


def test_norm_bias_lr_scale_errors():
  with pytest.raises(ValueError, match="optimizer.norm_bias_lr_scale=0.0 must be > 0"):
    optim.make_optimizer(_opt_cfg(norm_bias_lr_scale=0.0), 1, 1)
  with pytest.raises(ValueError, match=r"norm_bias_lr_scale=64.0 applies to .*\['sgd', 'sgdw'\]"):
    optim.make_optimizer(_opt_cfg(name="adam", norm_bias_lr_scale=64.0), 1, 1)


def test_warmup_linear_schedule():
  sched = optim.learning_rate_schedule(_opt_cfg(schedule="warmup_linear"), 100)
  np.testing.assert_allclose([sched(0), sched(25), sched(100)], [0.05, 0.5, 0.0], atol=1e-7)
  np.testing.assert_allclose(sched(12.5), (0.05 + 0.5) / 2, rtol=1e-5)  # linear warm-up
  np.testing.assert_allclose(sched(62.5), 0.25, rtol=1e-5)  # linear decay
  with pytest.raises(ValueError, match="optimizer.warmup_fraction=1.5"):
    optim.learning_rate_schedule(_opt_cfg(schedule="warmup_linear", warmup_fraction=1.5), 10)
  with pytest.raises(ValueError, match="optimizer.name='lamb'.*sgdw"):
    optim.make_optimizer(_opt_cfg(name="lamb"), 1, 1)


# ---------------------------------------------------------------------------- augmentation


def test_alternating_flip_mask():
  ids = jnp.arange(1000)
  even, odd = augment.alternating_flip_mask(ids, 4), augment.alternating_flip_mask(ids, 7)
  np.testing.assert_array_equal(even, ~odd)  # every image shows both sides in two epochs
  np.testing.assert_array_equal(even, augment.alternating_flip_mask(ids, 0))
  assert 400 < int(even.sum()) < 600  # about half flipped, not a block of indices
  assert 0 < int(even[:20].sum()) < 20


def test_apply_alternating_flip_and_reflect_translation():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8))
  ids = jnp.arange(64) * 3
  spec = augment.AugmentSpec("flip_crop", crop_pad=2, pad_mode="reflect", flip="alternating")
  out = augment.apply(spec, x, jax.random.key(0), ids, 3)
  flip = np.asarray(augment.alternating_flip_mask(ids, 3))
  src = np.where(flip[:, None, None, None], np.asarray(x)[:, :, ::-1], np.asarray(x))
  padded = np.pad(src, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
  for i in range(64):  # every view is a 8x8 window of its reflect-padded (flipped) image
    assert any(np.array_equal(out[i], padded[i, a:a + 8, b:b + 8])
               for a in range(5) for b in range(5)), i
  assert not np.any(np.asarray(out) == 0) or np.any(src == 0)  # no zero border
  # pad 0 + alternating: exactly the flipped images
  exact = augment.apply(augment.AugmentSpec("flip_crop", 0, "zeros", "alternating"), x,
                        jax.random.key(0), ids, 3)
  np.testing.assert_array_equal(exact, src)
  # the classic spec is the old flip_crop (same key use: existing runs reproduce)
  np.testing.assert_array_equal(augment.augment("flip_crop", x, jax.random.key(2)),
                                augment.flip_crop(x, jax.random.key(2), 4))


def test_recipe_field_errors():
  cfg = load_cifar_config("smoke")
  for field, value, match in (("flip", "sometimes", "train.flip='sometimes'"),
                              ("pad_mode", "wrap", "train.pad_mode='wrap'"),
                              ("crop_pad", -1, "train.crop_pad=-1"),
                              ("label_smoothing", 1.0, "train.label_smoothing=1.0")):
    bad = cfg.copy_and_resolve_references()
    bad.train[field] = value
    with pytest.raises(ValueError, match=match):
      checks.validate_config(bad)
  for field, value, match in (("compute_dtype", "float16", "model.compute_dtype='float16'"),
                              ("bn_momentum", 1.0, "model.bn_momentum=1.0")):
    bad = cfg.copy_and_resolve_references()
    bad.model[field] = value
    with pytest.raises(ValueError, match=match):
      checks.validate_config(bad)

  class Text:  # image-only options on token ids fail loudly instead of doing nothing
    train = type("S", (), {"inputs": np.zeros((4, 20), np.int32)})()

  with pytest.raises(ValueError, match="train.eval_flip=True works on images"):
    train_options.eval_flip(cfg.train, Text())
  with pytest.raises(ValueError, match="train.augment='flip_crop' works on images"):
    train_options.augment_spec(cfg.train, Text())


# ------------------------------------------------------------------- model: TTA, BN, dtypes


def _cnn(**kw):
  return ResidualCNN(num_classes=5, widths=(4, 8, 8), dense_width=16, dropout_rate=0.0, **kw)


@pytest.fixture(scope="module")
def tiny_state():
  x = jnp.asarray(np.random.default_rng(2).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
  tx = optax.sgd(0.1)
  state = programs.init_member(_cnn(conv_impl="xla"), tx, x[:1], jax.random.key(0))
  return state, x


def test_eval_flip_sums_the_mirror_images_logits(tiny_state):
  state, x = tiny_state
  both = jax.jit(lambda s, x: train.predict_logits(s, x, True))(state, x)
  one = jax.jit(lambda s, x: train.predict_logits(s, x, False))
  np.testing.assert_allclose(both, one(state, x) + one(state, x[:, :, ::-1]), rtol=1e-5,
                             atol=1e-5)
  # the study's evaluation program (confusions, predictions, post-hoc arms) sums them too
  stacked = jax.tree.map(lambda a: a[None], state)
  member = programs.ensemble_logits_fn("vmap", eval_flip=True)(stacked, x[None],
                                                               jnp.ones((1, 8), bool))
  np.testing.assert_allclose(member[0], both, rtol=1e-5, atol=1e-5)


def test_bn_settings_reach_the_model(tiny_state):
  """model.bn_momentum / bn_epsilon from the config reach every BatchNorm: with momentum 0.5
  the running mean moves 5x as far from 0 in one step as with the default 0.9; a larger
  epsilon changes the normalised activations."""
  state, x = tiny_state

  def model(momentum, eps):
    return models.create_model(ml_collections.ConfigDict(dict(
        name="resnet_cnn", widths=(4, 8, 8), dense_width=16, dropout_rate=0.0, conv_impl="xla",
        bn_momentum=momentum, bn_epsilon=eps, compute_dtype="float32")), 5)

  assert (model(0.5, 1e-3).bn_momentum, model(0.5, 1e-3).bn_epsilon) == (0.5, 1e-3)
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  @jax.jit
  def run(variables):
    return [m.apply(variables, x, train=True, mutable=["batch_stats"])
            for m in (model(0.5, 1e-5), _cnn(conv_impl="xla"), model(0.9, 1e-1))]

  (logits, fast), (logits_default, default), (logits_eps, _) = run(variables)
  for name in fast["batch_stats"]:
    np.testing.assert_allclose(fast["batch_stats"][name]["mean"],
                               5 * default["batch_stats"][name]["mean"], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(logits, logits_default, rtol=1e-6)
  assert float(jnp.max(jnp.abs(logits_eps - logits_default))) > 1e-3


@pytest.mark.parametrize("impl", ["xla", "cpu"])
def test_bfloat16_mixed_precision_numerics(tiny_state, impl):
  """Same float32 parameters: bfloat16 compute gives logits within bfloat16 round-off of the
  float32 model, float32 logits/loss, float32 finite gradients close to the float32 ones."""
  state, x = tiny_state
  labels = jnp.arange(8) % 5
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  def loss_and_grad(model):
    def loss(p):
      logits, _ = model.apply({**variables, "params": p}, x, train=True, mutable=["batch_stats"])
      return losses.weighted_cross_entropy(logits, labels, jnp.ones(5)), logits
    opts = dict(programs.compiler_options(ml_collections.ConfigDict(
        dict(name="resnet_cnn", conv_impl=impl)))) or None
    return jax.jit(jax.value_and_grad(loss, has_aux=True), compiler_options=opts)(
        variables["params"])

  (l32, logits32), g32 = loss_and_grad(_cnn(conv_impl=impl))
  (l16, logits16), g16 = loss_and_grad(_cnn(conv_impl=impl, compute_dtype=jnp.bfloat16))
  assert logits16.dtype == jnp.float32 and l16.dtype == jnp.float32
  scale = float(jnp.max(jnp.abs(logits32)))
  assert float(jnp.max(jnp.abs(logits16 - logits32))) < 0.05 * scale
  assert abs(float(l16) - float(l32)) < 0.02 * float(l32)
  for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
    assert a.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(a)))
  flat16, flat32 = (jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(g)])
                    for g in (g16, g32))
  cos = jnp.dot(flat16, flat32) / (jnp.linalg.norm(flat16) * jnp.linalg.norm(flat32))
  assert float(cos) > 0.98, float(cos)


# ------------------------------------------------------------------- :smoke, end to end


def test_smoke_preset_trains_with_the_whole_recipe(tmp_path, monkeypatch, tiny_cifar10_dir):
  """configs/cifar.py:smoke through study_lib.run on the miniature CIFAR-10 (conftest):
  every recipe field reaches the compiled functions (recorded at the boundary), and the study
  writes its results."""
  config = load_cifar_config("smoke")
  config.data.dir = tiny_cifar10_dir
  config.workdir = str(tmp_path / "run")
  config.rules = ("uniform",)  # one member per phase: both phases share compiled programs
  config.train.eval_translate = 1
  seen = {}
  real_epoch, real_logits = programs.ensemble_train_epoch_fn, programs.ensemble_logits_fn

  def spy_epoch(*args, **kwargs):
    seen["epoch"] = args, kwargs
    return real_epoch(*args, **kwargs)

  def spy_logits(*args):
    seen["logits"] = args
    return real_logits(*args)

  monkeypatch.setattr(programs, "ensemble_train_epoch_fn", spy_epoch)
  monkeypatch.setattr(programs, "ensemble_logits_fn", spy_logits)
  results = study_lib.run(config, log=lambda m: None)
  spec, smoothing = seen["epoch"][0][1], seen["epoch"][1]["label_smoothing"]
  assert spec == augment.AugmentSpec("flip_crop", 2, "reflect", "alternating")
  assert smoothing == pytest.approx(0.2) and seen["logits"][4] is True
  assert seen["logits"][5] == 1  # train.eval_translate
  assert results["dataset"]["sizes"] == {"train": 180, "validation": 20, "test": 200}
  assert os.path.exists(os.path.join(config.workdir, "report.md"))
