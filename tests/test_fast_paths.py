"""The fast CPU paths compute exactly what the plain versions compute.

conv3x3_cpu (custom_vjp: three canonical convolutions; custom vmap: one ungrouped convolution
per member), the fused max-pool gradient, the chunked ensemble strategy, and a whole training
step of the CNN built on them, against lax.conv + autodiff, the plain reshape+max pool, plain
vmap and one member at a time. Eager, jitted, and jitted with the CPU compiler options the
studies use. Tiny shapes.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import jit_init
from lwi_jax import losses
from lwi_jax import member
from lwi_jax import models as models_lib
from lwi_jax import train
from lwi_jax.models import activations, bn_act_cpu, resnet_cnn
from lwi_jax.models.resnet_cnn import ResidualCNN
from lwi_jax.parallel import ensemble
from lwi_jax.parallel import programs

TOL = dict(rtol=2e-5, atol=2e-5)


def _rand(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _conv_vjp(conv, x, k, dy):
  y, pull = jax.vjp(conv, x, k)
  return (y,) + pull(dy)


def _variants(fn):
  """fn, jit(fn) and fn compiled with the CPU compiler options (what the studies run):
  every fast path is checked traced eagerly and compiled both ways."""
  return [fn, jax.jit(fn), jax.jit(fn, compiler_options=resnet_cnn.CPU_COMPILER_OPTIONS)]


# ------------------------------------------------------------------------------- convolution


@pytest.mark.parametrize("shape", [(2, 7, 5, 3, 4), (1, 4, 4, 16, 8), (3, 1, 6, 20, 5)])
def test_cpu_conv_value_and_gradients_equal_lax_conv(shape):
  n, h, w, c, o = shape
  x, k, dy = _rand(0, n, h, w, c), _rand(1, 3, 3, c, o), _rand(2, n, h, w, o)
  ref = _conv_vjp(resnet_cnn.conv3x3_xla, x, k, dy)
  for fn in _variants(functools.partial(_conv_vjp, resnet_cnn.conv3x3_cpu)):
    chex.assert_trees_all_close(fn(x, k, dy), ref, **TOL)


def test_weight_grad_conv_equals_autodiff_and_loops():
  x, dy = _rand(3, 2, 5, 6, 3), _rand(4, 2, 5, 6, 4)
  k0 = jnp.zeros((3, 3, 3, 4))
  auto = jax.vjp(lambda k: resnet_cnn.conv3x3_xla(x, k), k0)[1](dy)[0]
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  loops = np.zeros((3, 3, 3, 4))
  for a in range(3):
    for b in range(3):
      loops[a, b] = np.einsum("nhwc,nhwo->co", xp[:, a:a + 5, b:b + 6], np.asarray(dy, np.float64))
  for fn in _variants(resnet_cnn.conv3x3_weight_grad):
    np.testing.assert_allclose(fn(x, dy), auto, **TOL)
    np.testing.assert_allclose(fn(x, dy), loops, **TOL)


@pytest.mark.parametrize("in_axes", [(0, 0), (None, 0), (0, None)])
def test_cpu_conv_under_vmap_equals_per_member(in_axes):
  """The member axis: both batched, shared input (eval data), shared kernel."""
  e = 3
  xs, ks, dys = _rand(5, e, 2, 5, 4, 16), _rand(6, e, 3, 3, 16, 4), _rand(7, e, 2, 5, 4, 4)
  x = xs if in_axes[0] == 0 else xs[0]
  k = ks if in_axes[1] == 0 else ks[0]
  pick = lambda a, ax, i: a[i] if ax == 0 else a  # noqa: E731

  def batched(x, k, dys):
    f = lambda x, k, dy: _conv_vjp(resnet_cnn.conv3x3_cpu, x, k, dy)  # noqa: E731
    return jax.vmap(f, in_axes=in_axes + (0,))(x, k, dys)

  per_member = [_conv_vjp(resnet_cnn.conv3x3_xla, pick(x, in_axes[0], i), pick(k, in_axes[1], i),
                          dys[i]) for i in range(e)]
  ref = jax.tree.map(lambda *a: jnp.stack(a), *per_member)
  for fn in _variants(batched):
    chex.assert_trees_all_close(fn(x, k, dys), ref, **TOL)


def test_cpu_conv_vmap_keeps_convolutions_ungrouped():
  xs, ks = _rand(8, 4, 2, 5, 5, 3), _rand(9, 4, 3, 3, 3, 4)
  grad = jax.grad(lambda x, k: jnp.sum(jax.vmap(resnet_cnn.conv3x3_cpu)(x, k) ** 2), (0, 1))
  hlo = jax.jit(grad).lower(xs, ks).as_text()
  assert "feature_group_count = 4" not in hlo and "batch_group_count = 4" not in hlo
  plain = jax.jit(jax.grad(lambda x, k: jnp.sum(jax.vmap(resnet_cnn.conv3x3_xla)(x, k) ** 2),
                           (0, 1))).lower(xs, ks).as_text()
  assert "feature_group_count = 4" in plain or "batch_group_count = 4" in plain  # what we avoid


def test_nested_vmap_and_second_order_shapes():
  x, k = _rand(10, 2, 3, 2, 4, 4, 3), _rand(11, 2, 3, 3, 3, 3, 4)
  nested = jax.vmap(jax.vmap(resnet_cnn.conv3x3_cpu))(x, k)
  ref = jax.vmap(jax.vmap(resnet_cnn.conv3x3_xla))(x, k)
  np.testing.assert_allclose(nested, ref, **TOL)


# ----------------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (2, 4, 4, 3)])
def test_fused_pool_equals_autodiff_including_ties(shape):
  rng = np.random.default_rng(12)
  x = jnp.asarray(rng.integers(0, 3, shape).astype(np.float32))  # many tied maxima
  g = _rand(13, shape[0], shape[1] // 2, shape[2] // 2, shape[3])
  plain = jax.vjp(lambda x: resnet_cnn.max_pool_2x2(x, "matmul"), x)
  ref = (plain[0], plain[1](g)[0])
  xla = jax.vjp(lambda x: resnet_cnn.max_pool_2x2(x, "xla"), x)
  np.testing.assert_allclose(xla[0], ref[0])
  for fn in _variants(lambda x, g: (lambda p: (p[0], p[1](g)[0]))(
      jax.vjp(lambda x: resnet_cnn.max_pool_2x2(x, "cpu"), x))):
    chex.assert_trees_all_close(fn(x, g), ref, rtol=0, atol=0)


# ------------------------------------------------------------------- fused BatchNorm + ReLU


def _plain_bn_act(z, scale, beta, eps, activation):
  axes = tuple(range(z.ndim - 1))
  mean = jnp.mean(z, axes)
  var = jnp.maximum(0.0, jnp.mean(z * z, axes) - mean * mean)
  act = activations.get(activation)
  return act((z - mean) * (jax.lax.rsqrt(var + eps) * scale) + beta), mean, var


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu"])
def test_fused_bn_act_equals_plain_with_every_cotangent(activation):
  z, scale, beta = _rand(16, 4, 3, 5, 6) + 0.5, _rand(17, 6), _rand(18, 6)
  eps = jnp.float32(1e-5)
  cts = (_rand(19, 4, 3, 5, 6), _rand(20, 6), _rand(21, 6))  # dy, d mean, d var

  def vjp(f):
    return lambda z, s, b: (lambda out, pull: (out, pull(cts)))(*jax.vjp(
        lambda z, s, b: f(z, s, b, eps, activation), z, scale, beta))

  ref = vjp(_plain_bn_act)(z, scale, beta)
  for fn in _variants(vjp(bn_act_cpu.bn_act_train)):
    chex.assert_trees_all_close(fn(z, scale, beta), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_batchnorm_act_module_matches_flax_batchnorm(activation):
  import flax.linen as nn  # noqa: PLC0415
  z, bias = _rand(22, 4, 3, 3, 5), _rand(23, 5)

  class Plain(nn.Module):
    @nn.compact
    def __call__(self, z, bias, train):
      return activations.get(activation)(nn.BatchNorm(use_running_average=not train,
                                                      momentum=0.9, name="bn")(z + bias))

  class Fused(nn.Module):
    @nn.compact
    def __call__(self, z, bias, train):
      return bn_act_cpu.BatchNormAct(use_running_average=not train, activation=activation,
                                     name="bn")(z, bias)

  v_plain = Plain().init(jax.random.key(0), z, bias, False)
  v_fused = Fused().init(jax.random.key(0), z, bias, False)
  chex.assert_trees_all_equal_structs(v_plain, v_fused)
  v = jax.tree.map(lambda a: a + 0.3 * _rand(24, *a.shape), v_plain)  # non-trivial stats
  for train_mode in (True, False):
    ref = Plain().apply(v, z, bias, train_mode, mutable=["batch_stats"])
    got = Fused().apply(v, z, bias, train_mode, mutable=["batch_stats"])
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- whole training step

NUM_CLASSES = 5


@functools.lru_cache(maxsize=None)
def _setup():
  # 16x16 images and 16 channels. Not 10x10 or 12x12: there XLA:CPU's fusion emitters miscompile the residual block's
  # gradient (bench/xla_cpu_fusion_repro.py; plain im2col + reshape-max, float64 too).
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, NUM_CLASSES, 8).astype(np.int32))
  model = ResidualCNN(NUM_CLASSES, widths=(16, 16, 16), dense_width=8, conv_impl="xla")
  state = programs.init_member(model, optax.sgd(0.1), inputs[:1], jax.random.key(0))
  weights = jnp.asarray([3.0, 0.5, 1.0, 0.25, 1.25])
  return inputs, labels, state, weights


def _grads_and_step(conv_impl, state, inputs, labels, weights, rng):
  model = ResidualCNN(NUM_CLASSES, widths=(16, 16, 16), dense_width=8, conv_impl=conv_impl)
  state = state.replace(apply_fn=model.apply)

  def loss_fn(params):
    logits, upd = model.apply({"params": params, "batch_stats": state.batch_stats}, inputs,
                              train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    return losses.weighted_cross_entropy(logits, labels, weights), (logits, upd)

  (loss, (logits, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  eval_logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, inputs,
                            train=False)
  return loss, logits, upd, grads, eval_logits


@pytest.mark.parametrize("conv_impl", ["cpu", "matmul"])
def test_train_step_gradients_equal_plain_xla(conv_impl):
  inputs, labels, state, weights = _setup()
  rng = jax.random.key(1)
  # On a GPU, float32 convolutions and matmuls default to TF32 (a 10-bit mantissa), and two
  # correct implementations then differ by ~1e-2 (seen on an H200: 0.11 relative). What is
  # compared here is the function each computes, so both run at full float32 precision.
  with jax.default_matmul_precision("highest"):
    ref = jax.jit(functools.partial(_grads_and_step, "xla"))(state, inputs, labels, weights, rng)
    assert float(jnp.max(jnp.abs(jax.flatten_util.ravel_pytree(ref[3])[0]))) > 1e-4
    fast = functools.partial(_grads_and_step, conv_impl)
    # Compiled both ways only: every fast path this model runs is also checked eagerly, op by
    # op, in the tests above; eagerly the whole model is ~200 one-operation compiles per impl.
    for fn in _variants(fast)[1:]:
      chex.assert_trees_all_close(fn(state, inputs, labels, weights, rng), ref, rtol=1e-4,
                                  atol=1e-5)


def test_vmapped_cpu_train_step_equals_member_by_member():
  inputs, labels, state, _ = _setup()
  model = ResidualCNN(NUM_CLASSES, widths=(16, 16, 16), dense_width=8, conv_impl="cpu")
  state = state.replace(apply_fn=model.apply)
  e = 2
  states = ensemble.stack([state.replace(params=jax.tree.map(lambda p, i=i: p * (1 + 0.1 * i),
                                                             state.params)) for i in range(e)])
  weights = jnp.stack([jnp.ones(NUM_CLASSES), jnp.arange(1.0, 6.0)])
  rngs = jax.random.split(jax.random.key(2), e)
  batch = {"inputs": inputs, "labels": labels}
  step = lambda s, w, r: train.train_step(s, batch, w, r)  # noqa: E731
  opts = resnet_cnn.CPU_COMPILER_OPTIONS
  together = jax.jit(jax.vmap(step), compiler_options=opts)(states, weights, rngs)
  alone = ensemble.stack([jax.jit(step, compiler_options=opts)(
      ensemble.unstack(states, i), weights[i], rngs[i]) for i in range(e)])
  chex.assert_trees_all_close(together, alone, rtol=1e-4, atol=1e-5)


def _compiled_convolutions(conv_impl: str, members: int) -> list[str]:
  """The convolutions of a compiled 2-step training epoch (a lax.scan, like the studies run)."""
  inputs, labels, state, _ = _setup()
  model = ResidualCNN(NUM_CLASSES, widths=(16, 16, 16), dense_width=8, conv_impl=conv_impl)
  states = ensemble.stack([state.replace(apply_fn=model.apply)] * members)
  hparams = ensemble.stack([member.MemberHParams.create(jnp.ones(NUM_CLASSES))] * members)
  keys = programs.ensemble_epoch_keys(list(range(members)), 0)
  fn = programs.ensemble_train_epoch_fn.__wrapped__(4, "none", "vmap", 0, None,
                                                 tuple(resnet_cnn.CPU_COMPILER_OPTIONS.items()))
  hlo = fn.lower(states, hparams, keys, jnp.int32(0), inputs, labels).compile().as_text()
  return [line for line in hlo.splitlines() if " convolution(" in line]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's convolution forms")
def test_cpu_path_convolutions_are_canonical_inside_the_epoch_loop():
  """XLA:CPU sends only NHWC x HWIO -> NHWC convolutions (dim_labels b01f_01io->b01f) to its
  multi-threaded kernels and, inside a while loop, does not rewrite autodiff's transposed
  gradient convolutions into that form (they run as naive loops, ~100x slower). The CPU path
  writes all three convolutions canonically, per member, ungrouped."""
  for members in (1, 2):
    convs = _compiled_convolutions("cpu", members)
    assert len(convs) == 5 * 3 * members - members  # fwd, dx, dk per layer; no dx for images
    assert all("dim_labels=b01f_01io->b01f" in c for c in convs), convs
    assert not any("feature_group_count" in c or "batch_group_count" in c for c in convs)
  plain = _compiled_convolutions("xla", 1)  # what the CPU path avoids
  assert any("dim_labels=b01f_01io->b01f" not in c for c in plain)


def test_compiler_options_follow_the_conv_impl():
  import ml_collections  # noqa: PLC0415
  cfg = ml_collections.ConfigDict({"name": "resnet_cnn", "conv_impl": "auto"})
  on_cpu = jax.default_backend() == "cpu"
  assert models_lib.resolve_conv_impl("auto") == ("cpu" if on_cpu else "xla")
  expected = tuple(sorted(resnet_cnn.CPU_COMPILER_OPTIONS.items())) if on_cpu else ()
  assert programs.compiler_options(cfg) == expected
  cfg.conv_impl = "xla"
  assert programs.compiler_options(cfg) == ()
  assert programs.compiler_options(ml_collections.ConfigDict({"name": "conv_lstm"})) == ()


# ------------------------------------------------------------------------- ensemble strategies


@pytest.mark.parametrize("chunk", [2, 5])
def test_chunked_vmap_equals_vmap_and_sequential(chunk):
  e = 5
  w = _rand(14, e, 3, 4)
  keys = jax.random.split(jax.random.key(3), e)
  data = _rand(15, 6, 3)

  def member(w, key, data):
    noise = jax.random.normal(key, (4,))
    return {"out": jnp.tanh(data @ w) + noise, "sum": jnp.sum(w)}

  ref = ensemble.map_members(member, "vmap", 2)(w, keys, data)
  for strategy, c in (("vmap", chunk), ("sequential", 0), ("unrolled", chunk), ("unrolled", 0)):
    for fn in _variants(ensemble.map_members(member, strategy, 2, chunk=c)):
      chex.assert_trees_all_close(fn(w, keys, data), ref, **TOL)


def test_pad_members_and_errors():
  tree = {"a": jnp.arange(3.0), "k": jax.random.split(jax.random.key(0), 3)}
  padded = ensemble.pad_members(tree, 4)
  np.testing.assert_array_equal(padded["a"], [0.0, 1.0, 2.0, 2.0])
  assert ensemble.num_members(padded) == 4
  assert ensemble.pad_members(tree, 3) is tree
  with pytest.raises(ValueError, match="ensemble size"):
    ensemble.num_members({"a": jnp.zeros(2), "b": jnp.zeros(3)})
  with pytest.raises(ValueError, match="ensemble_chunk"):
    ensemble.map_members(lambda x: x, "vmap", 1, chunk=-1)


@pytest.mark.parametrize("members", [1, 2])
def test_fast_paths_equal_plain_in_float64(members):
  """In float64 round-off cannot hide a wrong fast path (float32 branch flips at ReLU / max-pool
  ties can move a real-size gradient by %, bench/check_gradients_f64.py): equal to ~1e-12,
  alone and as a vmapped ensemble, on every CNN conv implementation."""
  inputs, labels, _, _ = _setup()
  with jax.enable_x64(True):
    def grads(impl):
      model = ResidualCNN(NUM_CLASSES, widths=(16, 16, 16), dense_width=8, conv_impl=impl,
                          dropout_rate=0.0, dtype=jnp.float64)
      init = jit_init(model.clone(dtype=jnp.float32), jax.random.key(0), inputs[:1],
                      train=False)
      v = jax.tree.map(lambda a: a.astype(jnp.float64), init)

      def loss(p):
        logits, _ = model.apply({"params": p, "batch_stats": v["batch_stats"]}, inputs,
                                train=True, mutable=["batch_stats"])
        return losses.weighted_cross_entropy(logits, labels, jnp.arange(1.0, 6.0))

      stacked = jax.tree.map(lambda p: jnp.stack([p * (1 + 0.1 * i) for i in range(members)]),
                             v["params"])
      opts = resnet_cnn.CPU_COMPILER_OPTIONS if impl == "cpu" else None
      return jax.jit(jax.vmap(jax.grad(loss)), compiler_options=opts)(stacked)

    ref = grads("xla")
    chex.assert_type(jax.tree.leaves(ref), jnp.float64)
    for impl in ("cpu", "matmul"):
      chex.assert_trees_all_close(grads(impl), ref, rtol=1e-10, atol=1e-12)
