"""Every check of a study config that can fail without data (`validate_config`, run before
anything is loaded or compiled), and the checks that need the loaded data (`check_data`).

Why a table of numeric fields: every numeric field a run reads gets the same treatment (finite,
in range, an integer where a count is meant) and the same message shape, naming the field, the
value and the allowed values. A value the method cannot use would otherwise run to completion
and look like a result: `validation_fraction=0` makes every weight uniform and every D "+0.00";
a negative learning rate or NaN trains and writes results; a negative `test_per_class` drops
rows (Python slicing); an empty workdir writes into the current directory. Fields a config does
not have (a CIFAR config has no `max_len`) are skipped.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Callable

import ml_collections
import numpy as np

from lwi_jax import models, optim
from lwi_jax.data import image_convert
from lwi_jax.parallel import ensemble
from lwi_jax.report import front
from lwi_jax.report import results as results_lib
from lwi_jax.rules import members as members_lib
from lwi_jax.rules import posthoc as posthoc_lib
from lwi_jax.rules import scores as scores_lib
from lwi_jax.study import train_options


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _ints(low: int) -> tuple[Callable, str]:
  return (lambda v: _is_int(v) and v >= low), f"an integer >= {low}"


def _int_range(low: int, high: int, why: str) -> tuple[Callable, str]:
  return (lambda v: _is_int(v) and low <= v <= high), f"an integer in [{low}, {high}] ({why})"


def _int_tuple(low: int, high: int | None = None) -> tuple[Callable, str]:
  return ((lambda v: isinstance(v, (tuple, list)) and len(v) > 0
           and all(_is_int(x) and x >= low and (high is None or x <= high) for x in v)),
          f"a non-empty tuple of integers >= {low}"
          + (f" and <= {high} (the PRNG's seed range)" if high is not None else ""))


# One-hot width per categorical column: beyond this a column is an identifier, not a category,
# and its one-hot block (rows x categories floats) would take the memory of the whole study.
MAX_CATEGORIES = 1000
SEED_MAX = 2**32 - 1  # jax.random.PRNGKey takes a uint32 seed


def _real(pred: Callable[[float], bool], text: str) -> tuple[Callable, str]:
  return (lambda v: _is_real(v) and pred(v)), f"a finite number with {text}"


# field path -> (predicate, allowed values in words)
FIELDS: dict[str, tuple[Callable, str]] = {
    "data.validation_fraction": _real(lambda f: 0 < f < 1, "0 < validation_fraction < 1"),
    "data.test_fraction": _real(lambda f: 0 < f < 1, "0 < test_fraction < 1"),
    "data.train_per_class": _ints(0),
    "data.test_per_class": _ints(0),
    "data.max_len": _ints(0),  # 0 = chosen from data.max_len_percentile of the lengths
    "data.max_len_percentile": _real(lambda q: 0 < q <= 100, "0 < max_len_percentile <= 100"),
    "data.per_class": _ints(1),
    "data.top_k": _ints(1),
    "data.zipf_exponent": _real(lambda z: z >= 0, "zipf_exponent >= 0"),
    "data.split_seed": _ints(0),
    "data.build_seed": _ints(0),
    "data.min_validation_per_class": _ints(1),
    "data.max_categories": _int_range(1, MAX_CATEGORIES, "most frequent categories one-hot"),
    "seeds": _int_tuple(0, SEED_MAX),
    "data.image_size": _ints(0),
    "optimizer.learning_rate": _real(lambda x: x > 0, "learning_rate > 0"),
    "optimizer.weight_decay": _real(lambda x: x >= 0, "weight_decay >= 0"),
    "optimizer.momentum": _real(lambda x: 0 <= x < 1, "0 <= momentum < 1"),
    "train.epochs": _ints(1),
    "train.batch_size": _ints(1),
    "train.eval_batch_size": _ints(1),
    "train.ensemble_chunk": _ints(0),
    "train.head_epochs": _ints(1),
    "train.num_devices": _ints(0),
    "rounds": _ints(1),
    "model.dropout_rate": _real(lambda x: 0 <= x < 1, "0 <= dropout_rate < 1"),
    "model.dense_width": _ints(1),
    "model.embed_dim": _ints(1),
    "model.kernel_size": _ints(1),
    "model.lstm_hidden": _ints(1),
    "model.widths": _int_tuple(1),
    "model.conv_features": _int_tuple(1),
}


def _lookup(config, path: str):
  node = config
  for key in path.split("."):
    if key not in node:
      return None, False
    node = node[key]
  return node, True


def _check_workdir(workdir: str) -> None:
  """A workdir that is a file, or lies under one, cannot hold the outputs: one line, early."""
  path = os.path.abspath(os.path.expanduser(workdir))
  while True:
    if os.path.exists(path) and not os.path.isdir(path):
      where = "is" if path == os.path.abspath(os.path.expanduser(workdir)) else "lies under"
      raise ValueError(f"workdir={workdir!r} {where} the file {path}, not a directory: set "
                       "--config.workdir to a directory (it is created if missing)")
    parent = os.path.dirname(path)
    if parent == path:
      return
    path = parent


def check_config(config) -> None:
  """Raises ValueError naming the first field whose value the method cannot use."""
  workdir = config.get("workdir")
  if not isinstance(workdir, str) or not workdir.strip():
    raise ValueError(f"workdir={workdir!r} is empty: set --config.workdir to the directory the "
                     "results, checkpoints and report should go to")
  _check_workdir(workdir)
  for path, (ok, text) in FIELDS.items():
    value, present = _lookup(config, path)
    if present and not ok(value):
      raise ValueError(f"{path}={value!r} is invalid: it must be {text}")
  data = config.get("data", {})
  if data.get("name") == "image_folder":
    image_convert.check_options(data.channels, data.image_size)
  if "test_fraction" in data:
    total = data.validation_fraction + data.test_fraction
    if total >= 1:
      raise ValueError(f"data.validation_fraction + data.test_fraction = {total:g} leaves "
                       "nothing to train on: their sum must be < 1")


def check_data(config, data) -> None:
  """Checks that need the loaded data: enough validation examples of every class for a score
  (data.min_validation_per_class: with n examples a TPR moves in steps of 1/n, with 1 it is 0
  or 1)."""
  need = int(config.data.min_validation_per_class)
  counts = np.bincount(data.validation.labels, minlength=data.num_classes)
  short = [(data.class_names[c], int(counts[c])) for c in np.flatnonzero(counts < need)]
  if short:
    listed = ", ".join(f"{name!r} has {n}" for name, n in short[:10])
    more = f" (and {len(short) - 10} more)" if len(short) > 10 else ""
    raise ValueError(
        f"too few validation examples for per-class scores: {listed}{more}; need at least "
        f"{need} per class (data.min_validation_per_class). Raise data.validation_fraction "
        f"(now {config.data.validation_fraction:g}), use more data per class, or lower "
        "data.min_validation_per_class")


def validate_config(config: ml_collections.ConfigDict) -> list[members_lib.MemberSpec]:
  """Every check that can fail without data, run before anything is loaded or compiled.

  Returns:
    The members (rule x seed) the config asks for.
  """
  check_config(config)
  specs = members_lib.parse_members(config.rules, config.seeds)
  posthoc_lib.parse(config.get("posthoc", ()))
  head = [m.rule.label for m in specs if m.rule.head_only]
  if head:
    models.head_name(config.model, f"config.rules {head[0]!r}")
    if "head_epochs" not in config.train:
      raise ValueError(f"config.rules {head[0]!r}: retrain=head needs train.head_epochs (an "
                       "integer >= 1: epochs of head-only retraining)")
  optim.make_optimizer(config.optimizer, 1, 1)
  models.check_config(config.model)
  ensemble.resolve_strategy(config.train.ensemble_strategy)
  train_options.check(config)
  scores_lib.validate(config.scores)
  test = config.compare.test
  if test not in results_lib.TESTS:
    raise ValueError(f"compare.test={test!r} is not one of {list(results_lib.TESTS)}")
  front.validate(config.compare)
  if ((test == "bootstrap" or config.compare.selection != "none")
      and int(config.compare.bootstrap_samples) < 100):
    raise ValueError(f"compare.bootstrap_samples={config.compare.bootstrap_samples} must be "
                     ">= 100 for a 95% percentile interval (the test, or the "
                     "compare.selection front)")
  if test == "paired_t" and len(config.seeds) < 2:
    raise ValueError(f"compare.test={test!r} needs at least 2 seeds (config.seeds="
                     f"{tuple(config.seeds)}); add seeds or set --config.compare.test=none")
  results_lib.max_accuracy_drop(config)
  return specs
