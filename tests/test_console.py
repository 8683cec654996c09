"""The console: library logs hidden by default, the in-epoch progress bar changes no result."""

import io
import logging as py_logging

import chex
import jax
import numpy as np
import pytest
from absl import flags, logging

from lwi_jax import member
from lwi_jax import train
from lwi_jax.data import types
from lwi_jax.parallel import ensemble
from lwi_jax.runtime import console
from lwi_jax.study import trainer as trainer_lib
from tests.test_study import load_config


def _names_config():
  c = load_config("names")
  c.model.embed_dim, c.model.conv_features, c.model.lstm_hidden = 4, (8,), 8
  c.train.epochs, c.train.batch_size, c.train.eval_batch_size = 2, 8, 16
  return c


def _data():
  rng = np.random.default_rng(0)

  def split(n):
    labels = rng.integers(0, 3, n).astype(np.int32)
    tokens = rng.integers(2, 12, (n, 6)).astype(np.int32)
    tokens[:, 0] = labels + 2  # learnable signal
    return types.Split(tokens, labels)

  return types.ClassificationData(split(44), split(12), split(12), ("a", "b", "c"),
                                  info={"vocab_size": 12})


def _mlp_config():
  """An MLP on float rows for the tests whose subject is the epoch loop, not the model: the bar
  and the pace line are the model's business as little as each other's, and an MLP's epoch
  program compiles in a fraction of the ConvLSTM's time (BUILD_NOTES, twelfth session)."""
  c = load_config("tabular")
  c.model.hidden_sizes, c.train.epochs, c.train.batch_size = (4,), 2, 8
  c.train.eval_every_epoch = False  # no eval programs to compile: the epoch is the subject
  return c


def _rows_data():
  """44 training rows / batch 8 = 5 steps: progress points every step (progress_every(5) == 1)."""
  rng = np.random.default_rng(0)
  rows = types.Split(rng.normal(size=(44, 3)).astype(np.float32),
                     rng.integers(0, 3, 44).astype(np.int32))
  return types.ClassificationData(rows, rows, rows, ("a", "b", "c"))


def _fit(trainer, strategy):
  trainer.config.train.ensemble_strategy = strategy
  hp = ensemble.stack([member.MemberHParams.create(np.ones(3)),
                       member.MemberHParams.create(np.array([2.0, 0.5, 0.5]), dro_eta=0.1)])
  states, hp, history = trainer.fit("t", ["a", "b"], [0, 1], hp)
  del history["seconds"]  # wall time: the one thing allowed to differ
  return jax.device_get((states.params, states.batch_stats, states.opt_state, hp.class_weights,
                         history))


def test_progress_bar_changes_no_result_and_counts_every_step(monkeypatch):
  calls = []
  real = console.on_train_step
  monkeypatch.setattr(console, "_Bar", _RecordingBar)
  # The callback compiled into the epoch is console.on_train_step; record what it receives.
  monkeypatch.setattr(console, "on_train_step", lambda d, e: (calls.append(int(d)), real(d, e)))
  config = _mlp_config()
  with_bar = trainer_lib.Trainer(config, _rows_data(), log=lambda m: None, progress="bar")
  without = trainer_lib.Trainer(config, _rows_data(), log=lambda m: None, progress="off")
  without.tx = with_bar.tx  # the same optimizer object: one compiled init for both

  chex.assert_trees_all_equal(_fit(with_bar, "vmap"), _fit(without, "vmap"))  # bit-identical
  # 2 epochs x 5 steps; a vmapped ensemble runs the member program once for both members.
  assert sorted(calls) == sorted(list(range(1, 6)) * 2)
  assert _RecordingBar.totals == [5, 5] and _RecordingBar.counts == [5, 5]

  # lax.map over the members ("sequential") runs it once per member: the bar's total follows.
  calls.clear()
  _RecordingBar.totals, _RecordingBar.counts = [], []
  _fit(with_bar, "sequential")
  assert ensemble.member_passes("sequential", 0, 2) == 2
  assert sorted(calls) == sorted(list(range(1, 6)) * 2 * 2)
  assert _RecordingBar.totals == [10, 10] and _RecordingBar.counts == [10, 10]


class _RecordingBar:
  """Stands in for the tqdm bar: records each epoch's total and the steps it was advanced."""
  totals, counts = [], []

  def __init__(self, desc, total_steps, stream):
    del desc, stream
    type(self).totals.append(total_steps)
    type(self).counts.append(0)

  def advance(self, done, every):
    type(self).counts[-1] += done - every * ((done - 1) // every)

  def close(self):
    pass


@pytest.fixture(autouse=True)
def _reset_recording_bar():
  _RecordingBar.totals, _RecordingBar.counts = [], []


def test_member_passes_per_strategy():
  assert ensemble.member_passes("auto", 0, 5) == 1
  assert ensemble.member_passes("vmap", 2, 5) == 3  # groups of 2, last one padded
  assert ensemble.member_passes("vmap", 8, 5) == 1
  assert ensemble.member_passes("sequential", 0, 5) == 5
  assert ensemble.member_passes("unrolled", 0, 5) == 5
  assert ensemble.member_passes("unrolled", 2, 5) == 6  # padded copies run too


def test_progress_points_cover_the_epoch():
  for steps in (1, 5, 19, 20, 21, 157, 1000):
    every = train.progress_every(steps)
    points = [d for d in range(1, steps + 1) if d % every == 0 or d == steps]
    assert len(points) <= train.PROGRESS_POINTS
    assert sum(d - every * ((d - 1) // every) for d in points) == steps  # what the bar adds up


def test_epoch_progress_bar_draws_to_its_stream_and_detaches():
  stream = io.StringIO()
  with console.epoch_progress("[t] epoch 1/2", 10, True, stream=stream):
    for done in (4, 8, 10):
      console.on_train_step(done, 4)
    assert console._active._tqdm.n == 10
  assert "[t] epoch 1/2" in stream.getvalue()
  assert console._active is None
  console.on_train_step(4, 4)  # after the epoch: ignored, no error
  with console.epoch_progress("off", 10, False, stream=stream):
    assert console._active is None


def test_library_info_logs_hidden_unless_verbosity_given(monkeypatch):
  flag = flags.FLAGS["verbosity"]
  before = logging.get_verbosity()
  try:
    monkeypatch.setattr(flag, "present", 0)
    logging.set_verbosity(logging.INFO)
    console.configure_logging()
    assert logging.get_verbosity() == logging.WARNING
    assert not py_logging.getLogger("jax._src.xla_bridge").isEnabledFor(py_logging.INFO)
    assert py_logging.getLogger("orbax").isEnabledFor(py_logging.WARNING)  # warnings stay
    monkeypatch.setattr(flag, "present", 1)  # --verbosity=0 given: absl's INFO level stays
    logging.set_verbosity(logging.INFO)
    console.configure_logging()
    assert logging.get_verbosity() == logging.INFO
  finally:
    logging.set_verbosity(before)


def test_short_formats():
  assert console.format_seconds(42.4) == "42s"
  assert console.format_seconds(185) == "3m05s"
  assert console.format_seconds(3720) == "1h02m"
  assert console.spread([0.5]) == "0.500"
  assert console.spread([0.7, np.nan, 0.5]) == "0.500–0.700"
  assert console.spread([np.nan]) == "–"


def test_pace_reports_the_steps_after_the_first_point_once(monkeypatch):
  clock = iter([100.0, 103.0, 104.5, 106.0])  # the first point comes after the compilation
  monkeypatch.setattr(console.time, "perf_counter", lambda: next(clock))
  reports = []
  with console.epoch_progress("e", 12, False, on_pace=lambda s, t: reports.append((s, t))):
    for done in (4, 8, 12):
      console.on_train_step(done, 4)
  assert reports == [(3.0 / 4, 12)]  # 4 steps between the first two points took 3 s
  assert console._active is None


def test_a_long_epoch_off_a_terminal_prints_its_pace_and_the_cpu_preset(monkeypatch):
  """The design card's full CIFAR-10 command on a CPU says what it costs before its first epoch
  ends, and names the :cpu preset; a short epoch (the threshold) prints nothing more."""
  config = _mlp_config()
  config.train.cpu_preset = "configs/cifar.py:cpu"
  data = _rows_data()

  def hp():  # a fresh stack per fit: the epoch donates its arguments
    return ensemble.stack([member.MemberHParams.create(np.ones(3))] * 2)
  lines = []
  trainer = trainer_lib.Trainer(config, data, log=lines.append, progress="pace")
  trainer.fit("t", ["a", "b"], [0, 1], hp())
  assert not any("pace" in line for line in lines)  # epochs of milliseconds: no pace line

  monkeypatch.setattr(trainer_lib, "PACE_LINE_MIN_EPOCH_SECONDS", 0.0)
  lines.clear()
  trainer.fit("t", ["a", "b"], [0, 1], hp())  # the same compiled programs
  pace = [line for line in lines if "pace of the first steps" in line]
  assert len(pace) == 1 and "2 members, 2 epochs" in pace[0]
  # It comes before the first epoch's line, i.e. during that epoch.
  assert lines.index(pace[0]) < next(i for i, l in enumerate(lines) if "epoch 1/2" in l)
  hint = [line for line in lines if "configs/cifar.py:cpu" in line]
  assert len(hint) == (1 if jax.default_backend() == "cpu" else 0)


def test_cpu_preset_names_a_console_hint_only(monkeypatch):
  from lwi_jax.study import phases, train_options
  config = _names_config()
  before = phases.fingerprint(config, "baseline")
  config.train.cpu_preset = "configs/cifar.py:cpu"
  assert phases.fingerprint(config, "baseline") == before  # what runs is unchanged
  assert "configs/cifar.py:cpu" in train_options.cpu_preset_hint(config, "cpu")
  assert train_options.cpu_preset_hint(config, "gpu") == ""
  wrong = _names_config()
  wrong.train.cpu_preset = 3
  with pytest.raises(ValueError, match="train.cpu_preset"):
    train_options.check(wrong)
  # Off a terminal only such a preset on a CPU compiles the callback: a program with a host
  # callback never enters JAX's persistent compilation cache, so every other run keeps "off".
  monkeypatch.setattr(console, "interactive", lambda *_: False)
  assert trainer_lib.Trainer(_names_config(), _data()).progress == "off"
  assert trainer_lib.Trainer(config, _data()).progress == (
      "pace" if jax.default_backend() == "cpu" else "off")
  with pytest.raises(ValueError, match="progress='fast'"):
    trainer_lib.Trainer(_names_config(), _data(), progress="fast")
