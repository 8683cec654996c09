"""optimizer.lookahead_*: what the averaging computes, step by step, against a plain reference."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lwi_jax import optim


def _reference(p0, grads, lr, every, decay, start, power, total, steps_per_epoch):
  """The rule written out in numpy: SGD steps, averaging every `every`, jumps to the average."""
  p, slow, out = np.asarray(p0, np.float64), np.asarray(p0, np.float64), []
  for t, g in enumerate(grads, start=1):
    fast = p - lr * g
    frac = t / total
    rho = decay ** every * frac ** power if frac >= start else 0.0
    if t % every == 0:
      slow = slow + (1 - rho) * (fast - slow)
    jump = frac >= start and (t % every == 0 or t % steps_per_epoch == 0)
    p = slow.copy() if jump else fast
    out.append(p)
  return out


@pytest.mark.parametrize("use_jit", [False, True])
@pytest.mark.parametrize("every,start,steps_per_epoch", [(2, 0.0, 100), (3, 0.4, 4)])
def test_lookahead_matches_the_written_out_rule(use_jit, every, start, steps_per_epoch):
  total, lr, decay, power = 10, 0.1, 0.8, 1.5
  tx = optax.chain(optax.sgd(lr), optim.lookahead(every, decay, start, power, total,
                                                  steps_per_epoch))
  grads = np.random.default_rng(0).normal(size=(total, 3)).astype(np.float32)
  params = {"w": jnp.asarray([1.0, -0.5, 2.0])}
  state = tx.init(params)
  update = jax.jit(tx.update) if use_jit else tx.update
  want = _reference(params["w"], grads, lr, every, decay, start, power, total, steps_per_epoch)
  for t in range(total):
    upd, state = update({"w": jnp.asarray(grads[t])}, state, params)
    params = optax.apply_updates(params, upd)
    chex.assert_trees_all_close(params["w"], want[t].astype(np.float32), atol=1e-6)
    chex.assert_type(params["w"], jnp.float32)


def _cfg(**kw):
  base = dict(name="sgdw", learning_rate=0.5, schedule="constant", weight_decay=0.1, momentum=0.9)
  return ml_collections.ConfigDict({**base, **kw})


def test_lookahead_off_is_the_plain_optimizer_and_on_changes_the_path():
  p = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5)}
  g = {"w": jnp.asarray([0.5, 0.25]), "b": jnp.asarray(-1.0)}
  runs = {}
  for every in (0, 2):
    tx = optim.make_optimizer(_cfg(lookahead_every=every, lookahead_start=0.0), 1, 6)
    params, state = p, tx.init(p)
    for _ in range(6):
      upd, state = tx.update(g, state, params)
      params = optax.apply_updates(params, upd)
    runs[every] = params
  plain = optax.chain(optax.trace(decay=0.9, nesterov=True), optax.add_decayed_weights(0.1),
                      optax.scale_by_learning_rate(0.5))
  params, state = p, plain.init(p)
  for _ in range(6):
    upd, state = plain.update(g, state, params)
    params = optax.apply_updates(params, upd)
  chex.assert_trees_all_equal(runs[0], params)  # absent / 0: not in the chain at all
  assert not np.allclose(runs[2]["w"], params["w"])


@pytest.mark.parametrize("field,value", [("lookahead_every", -1), ("lookahead_decay", 1.5),
                                         ("lookahead_start", -0.1), ("lookahead_power", -2.0)])
def test_lookahead_field_errors_name_the_field(field, value):
  with pytest.raises(ValueError, match=f"optimizer.{field}={value}"):
    optim.make_optimizer(_cfg(**{field: value}), 1, 1)


@pytest.mark.parametrize("section,switch,other", [("optimizer", "lookahead_every", "lookahead_decay"),
                                                  ("model", "whiten_patch", "whiten_eps")])
def test_a_switched_off_feature_leaves_the_phase_fingerprint_as_without_it(section, switch, other):
  # Phases finished before the feature existed are reused while it is off; on, it retrains.
  from configs import cifar
  from lwi_jax.study import phases
  config = cifar.get_config("cpu")
  config[section][switch] = 0  # off (the preset may switch it on)
  with_fields = phases.fingerprint(config, "baseline")
  without = config.to_dict()
  for key in [k for k in without[section] if k.startswith(switch.split("_")[0] + "_")]:
    without[section].pop(key)
  assert phases.fingerprint(ml_collections.ConfigDict(without), "baseline") == with_fields
  config[section][other] = 0.5  # read only when switched on
  assert phases.fingerprint(config, "baseline") == with_fields
  config[section][switch] = 2
  assert phases.fingerprint(config, "baseline") != with_fields
