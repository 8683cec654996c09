"""Issue #25: a memory estimate before training, and a one-line refusal naming the field."""

import numpy as np
import pytest

from configs import names as names_config
from lwi_jax.data.types import ClassificationData, Split
from lwi_jax.study import memory
from lwi_jax.study.trainer import Trainer


def _setup(eval_batch_size, max_len=2000, rows=(40, 20, 20)):
  config = names_config.get_config()
  config.train.eval_batch_size = eval_batch_size
  config.train.batch_size = 8
  rng = np.random.default_rng(0)
  split = lambda n: Split(rng.integers(1, 30, (n, max_len)).astype(np.int32),
                          np.arange(n, dtype=np.int32) % 2)
  info = {"vocab_size": 32, "max_len": max_len}
  data = ClassificationData(*(split(n) for n in rows), class_names=("a", "b"), info=info)
  trainer = Trainer(config, data, log=lambda *a: None)
  return config, data, trainer


def test_estimate_follows_the_data_and_refuses_naming_the_field():
  config, data, trainer = _setup(eval_batch_size=1000)
  parts = memory.estimate(config, data, trainer.model, trainer.tx, num_members=6)
  # Eval batches are no larger than the split (20 rows), whatever eval_batch_size says.
  config20, _, _ = _setup(eval_batch_size=20)
  assert parts == memory.estimate(config20, data, trainer.model, trainer.tx, num_members=6)
  assert parts["largest_batch"] == "train.eval_batch_size"  # 20 rows, vs 8 (x2) for training
  assert set(parts) >= {"data", "states", "activations"} and min(
      parts[k] for k in ("data", "states", "activations")) > 0
  line = memory.check(parts, available=2**40, num_members=6)
  assert line.startswith("memory: about ") and "6 members' states" in line
  with pytest.raises(ValueError, match=r"this study needs about .* GiB .* but the cpu has "
                     r"0\.0 GiB: lower "):
    memory.check(parts, available=1000, num_members=6)
  with pytest.raises(ValueError, match=r"lower .*; on this host, try configs/x.py:cpu$"):
    memory.check(parts, available=1000, num_members=6, hint="on this host, try configs/x.py:cpu")
  more = memory.estimate(config, data, trainer.model, trainer.tx, num_members=12)
  assert more["states"] == 2 * parts["states"]
