"""A memory estimate before training, and a one-line refusal when it cannot fit.

What a study holds at its peak (per process; a sharded run splits the states over devices but
this estimate does not count on it): the data (host copy plus the device copy, padded eval
batches included), the ensemble's train states (parameters, optimizer slots and one gradient
per member) and the activations of the largest batch: a training batch (kept for the backward
pass, so counted twice) or an evaluation batch, for every member in flight at once
(train.ensemble_chunk, 0 = all). Activations are the outputs of every module of the model
(flax's capture_intermediates on abstract shapes: nothing is computed). It is an estimate, not a
bound: XLA may fuse some activations away or keep temporaries of its own; the refusal fires only
when the estimate alone exceeds what the backend has, which no run could survive.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from lwi_jax import train

GIB = 2.0**30


def _bytes(tree) -> int:
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                 for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "shape")))


def estimate(config, data, model, tx, num_members: int) -> dict:
  """Bytes by part: {'data', 'states', 'activations'} and which batch is the largest."""
  cfg = config.train
  sample = np.asarray(data.train.inputs[:1])
  state = jax.eval_shape(lambda k: train.create_train_state(model, tx, sample, k),
                         jax.random.PRNGKey(0))
  per_member = _bytes(state.params) * 2 + _bytes(state.opt_state) + _bytes(state.batch_stats)
  row = sample.nbytes
  eval_shapes = [train.eval_batches(len(s), cfg.eval_batch_size)
                 for s in (data.validation, data.test)]
  rows = len(data.train) + sum(steps * batch for steps, batch in eval_shapes)
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  def activations(batch: int) -> int:
    x = jax.ShapeDtypeStruct((batch,) + sample.shape[1:], sample.dtype)
    _, inter = jax.eval_shape(lambda v, xs: model.apply(
        v, xs, train=False, capture_intermediates=True, mutable=["intermediates"]), variables, x)
    return _bytes(inter) + batch * row

  in_flight = min(num_members, cfg.ensemble_chunk or num_members)
  eval_batch = max(batch for _, batch in eval_shapes)
  by_batch = {"train.batch_size": 2 * activations(cfg.batch_size),
              "train.eval_batch_size": activations(eval_batch)}
  largest = max(by_batch, key=by_batch.get)
  return {"data": 2 * rows * row, "states": per_member * num_members,
          "activations": by_batch[largest] * in_flight, "largest_batch": largest,
          "in_flight": in_flight}


def available_bytes() -> int:
  """Memory of the first device: its allocator's limit (GPU/TPU), else the host's RAM."""
  stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check(parts: dict, available: int, num_members: int, hint: str = "") -> str:
  """The console line of the estimate; ValueError naming the field to change when it cannot fit
  (and `hint`, e.g. train_options.cpu_preset_hint: a preset sized for this host).
  """
  total = parts["data"] + parts["states"] + parts["activations"]
  line = (f"memory: about {total / GIB:.2f} GiB estimated (data {parts['data'] / GIB:.2f}, "
          f"{num_members} members' states {parts['states'] / GIB:.2f}, activations "
          f"{parts['activations'] / GIB:.2f} of the largest batch, {parts['largest_batch']}) of "
          f"{available / GIB:.1f} GiB")
  if total <= available:
    return line
  biggest = max(("data", "states", "activations"), key=parts.get)
  field = {"data": "the data (fewer rows, a smaller data.max_len or data.max_categories)",
           "states": "config.seeds / config.rules (fewer members) or a smaller model",
           "activations": f"{parts['largest_batch']} (or train.ensemble_chunk: members in "
                          f"flight, now {parts['in_flight']})"}[biggest]
  raise ValueError(f"this study needs about {total / GIB:.1f} GiB ({biggest} "
                   f"{parts[biggest] / GIB:.1f} GiB) but the {jax.default_backend()} has "
                   f"{available / GIB:.1f} GiB: lower {field}" + (f"; {hint}" if hint else ""))
