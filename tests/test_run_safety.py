"""Operational safety: workdir lock, Ctrl-C, checkpoint fallback, corrupt phase files, umask,
cumulative wall time, plot labels, and errors printed as one line + hint."""

import errno
import glob
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lwi_jax.data.errors import DataError
from lwi_jax.parallel import programs
from lwi_jax.report import plots
from lwi_jax.runtime import checkpoint
from lwi_jax.runtime import errors
from lwi_jax.runtime import io_utils
from lwi_jax.runtime import run_control
from lwi_jax.study import checks
from lwi_jax.study import study as study_lib
from test_study import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What orbax raised (inside a ValueError) when the disk filled during a checkpoint save.
ORBAX_ENOSPC = ('RESOURCE_EXHAUSTED: Error writing "states.opt_state.0.nu.Conv3x3_4.kernel/'
                '0.0.0.0.0" in OCDBT database at local file "/w/checkpoints/round1-0343e52bc8f7/'
                '1.orbax-checkpoint-tmp/default.orbax-checkpoint-tmp/ocdbt.process_0/": Failed '
                'writing: "/w/checkpoints/round1/d/d85c": Failed to write 83663 bytes to file '
                "20: No space left on device [os_error_code='28']")


def tiny_csv_config(tmp_path):
  """A whole study in a few seconds: 3 classes x 24 texts through the CSV source, tiny LSTM."""
  rows = [f"{w}{i},{c}" for c, w in (("x", "ab"), ("y", "ba"), ("z", "cc")) for i in range(24)]
  path = tmp_path / "t.csv"
  path.write_text("text,label\n" + "\n".join(rows) + "\n")
  c = load_config("names", "csv")
  c.data.path, c.data.max_len = str(path), 8
  c.data.validation_fraction = 0.3  # >= 5 validation texts per class (config_checks)
  c.model.embed_dim, c.model.conv_features, c.model.lstm_hidden = 4, (8,), 8
  c.train.epochs, c.train.batch_size, c.train.eval_batch_size = 2, 16, 64
  c.rules, c.seeds = ("inverse_tpr:gamma=1",), (0,)
  c.workdir = str(tmp_path / "w")
  return c


def stub_compiled_programs(target=None):
  """Replaces the compiled epoch and evaluation by trivial programs (no model compile: the run
  takes a second). These tests are about what happens around them: checkpoints, the stop,
  the resume and the files; the real programs are exercised by test_launch / test_resume.
  `target`: a pytest monkeypatch, or None to patch for good (a child process)."""

  def epoch_fn(*args, **kwargs):
    def run(states, hp, keys, epoch, inputs, labels):
      n = keys.shape[0]
      return (states.replace(step=states.step + 1), hp,
              {"loss": jnp.full(n, 1.0) / (epoch + 1), "accuracy": jnp.full(n, 0.5),
               "finite": jnp.ones(n, bool)})
    return run

  def logits_fn(*args, **kwargs):
    def run(states, inputs, mask):  # example i "predicted" as class i % 3 (the CSV's 3 classes)
      logits = jax.nn.one_hot(jnp.arange(mask.size) % 3, 3)
      return jnp.broadcast_to(logits, (states.step.shape[0],) + logits.shape)
    return run

  for name, fn in (("ensemble_train_epoch_fn", epoch_fn), ("ensemble_logits_fn", logits_fn)):
    if target is None:
      setattr(programs, name, fn)
    else:
      target.setattr(programs, name, fn)


# ------------------------------------------------------------------------------ workdir lock


def test_second_process_on_a_workdir_is_refused_with_the_holders_pid(tmp_path):
  with run_control.workdir_lock(str(tmp_path)):
    assert (tmp_path / "LOCK").read_text().startswith(f"pid {os.getpid()} on ")
    with pytest.raises(run_control.WorkdirLocked, match=f"in use by pid {os.getpid()} on "):
      with run_control.workdir_lock(str(tmp_path)):
        pass
    # A whole study on the busy workdir stops before touching data or phases.
    config = tiny_csv_config(tmp_path)
    config.workdir = str(tmp_path)
    with pytest.raises(run_control.WorkdirLocked):
      study_lib.run(config, log=lambda _: None)
    assert not (tmp_path / "phases").exists()
  assert not (tmp_path / "LOCK").exists()  # released and removed
  with run_control.workdir_lock(str(tmp_path)):
    pass


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
  code = ("import sys, time; from lwi_jax.runtime import run_control\n"
          "with run_control.workdir_lock(sys.argv[1]):\n"
          "  print('held', flush=True); time.sleep(60)")
  holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline() == "held\n"
  with pytest.raises(run_control.WorkdirLocked, match=f"pid {holder.pid} "):
    with run_control.workdir_lock(str(tmp_path)):
      pass
  holder.send_signal(signal.SIGKILL)  # dies holding it: LOCK stays behind with its pid
  holder.wait()
  assert (tmp_path / "LOCK").read_text().startswith(f"pid {holder.pid} ")
  seen = []
  with run_control.workdir_lock(str(tmp_path), log=seen.append):
    assert (tmp_path / "LOCK").read_text().startswith(f"pid {os.getpid()} ")
  assert seen and f"pid {holder.pid}" in seen[0] and "no longer running" in seen[0]


def test_only_the_primary_process_takes_the_lock(tmp_path):
  with run_control.workdir_lock(str(tmp_path), primary=False):
    assert not (tmp_path / "LOCK").exists()
    with run_control.workdir_lock(str(tmp_path), primary=True):
      pass


# ----------------------------------------------------------------------------------- Ctrl-C


def test_first_ctrl_c_requests_a_stop_second_interrupts():
  assert threading.current_thread() is threading.main_thread()
  before = signal.getsignal(signal.SIGINT)  # pytest-xdist workers ignore SIGINT
  with run_control.stop_after_epoch(log=lambda _: None):
    os.kill(os.getpid(), signal.SIGINT)
    assert run_control.stop_requested()
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert not run_control.stop_requested()
  assert signal.getsignal(signal.SIGINT) is before


def test_study_stops_after_a_checkpoint_resumes_and_counts_wall_time(tmp_path, monkeypatch):
  """Ctrl-C during epoch 1 of the baseline stops after its checkpoint; the rerun resumes at
  epoch 1, and report.md's wall time includes the interrupted invocation's phase time. A
  damaged phase file is then named with its fix, and deleting it rebuilds the phase from its
  checkpoint without training."""
  stub_compiled_programs(monkeypatch)
  config = tiny_csv_config(tmp_path)
  workdir = tmp_path / "w"
  logs = []

  def ctrl_c_in_epoch_1(msg):
    logs.append(msg)
    if msg.startswith("[baseline] epoch 1/2"):
      os.kill(os.getpid(), signal.SIGINT)  # arrives while the epoch's lines are printed

  with pytest.raises(run_control.Stopped, match="after epoch 1/2 of phase baseline") as e:
    study_lib.run(config, log=ctrl_c_in_epoch_1)
  assert (e.value.phase, e.value.epoch) == ("baseline", 1)
  assert [os.path.basename(p) for p in glob.glob(str(workdir / "checkpoints" / "*" / "*"))] \
      == ["1"]
  assert not (workdir / "phases").exists() and not (workdir / "LOCK").exists()
  first = json.loads((workdir / "run_state.json").read_text())["phase_seconds"]
  assert list(first) == [os.path.basename(glob.glob(str(workdir / "checkpoints" / "*"))[0])]

  logs.clear()
  results = study_lib.run(config, log=logs.append)
  assert "[baseline] resumed from the checkpoint after epoch 1" in logs
  assert not any(m.startswith("[baseline] epoch 1/") for m in logs)
  phases = json.loads((workdir / "run_state.json").read_text())["phase_seconds"]
  baseline_key = list(first)[0]
  assert phases[baseline_key] > first[baseline_key]  # both invocations' time
  assert results["wall_seconds"] >= sum(phases.values())
  assert f"- Wall time: {results['wall_seconds']:.0f} s." in (workdir / "report.md").read_text()

  phase_file = glob.glob(str(workdir / "phases" / "baseline-*.json"))[0]
  with open(phase_file, "r+") as f:
    f.truncate(100)
  with pytest.raises(ValueError, match="delete it and rerun") as e:
    study_lib.run(config, log=lambda _: None)
  assert f"phase file {phase_file} is corrupt" in str(e.value)
  os.remove(phase_file)
  logs.clear()
  again = study_lib.run(config, log=logs.append)
  assert "[baseline] resumed from the checkpoint after epoch 2" in logs
  assert not any(" epoch 1/" in m or " epoch 2/" in m for m in logs)
  for key in ("tpr", "confusion", "accuracy"):
    np.testing.assert_array_equal(again["baseline"][0]["test"][key],
                                  results["baseline"][0]["test"][key])


# ------------------------------------------------------------------------------ checkpoints


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path):
  like = {"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 2), np.int32)}
  ckpt = checkpoint.PhaseCheckpointer(str(tmp_path))
  for epoch in (1, 2):
    ckpt.save(epoch, jax.tree.map(lambda x: x * epoch, like))
  ckpt.close()
  for path in glob.glob(str(tmp_path / "2" / "**" / "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "wb") as f:
        f.write(b"garbage")
  warnings = []
  ckpt = checkpoint.PhaseCheckpointer(str(tmp_path))
  epoch, carry = ckpt.restore_latest(like, warnings.append)
  assert epoch == 1
  np.testing.assert_array_equal(carry["a"], like["a"])
  assert len(warnings) == 1 and f"{tmp_path / '2'} is unreadable" in warnings[0]
  assert "falling back to the one before" in warnings[0]
  ckpt.save(2, jax.tree.map(lambda x: x * 2, like))  # the epoch is redone and saved again
  assert ckpt.restore_latest(like, warnings.append)[0] == 2 and len(warnings) == 1
  ckpt.close()


# -------------------------------------------------------------------------- files and plots


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
  old = os.umask(umask)
  try:
    io_utils.atomic_write_text(str(tmp_path / "r.json"), "{}")
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == mode


def test_labels_with_mathtext_characters_are_drawn_literally(tmp_path):
  names = ["a$b^$", "c_$x$", "plain"]
  hist = {"loss": [1.0, 0.5], "accuracy": [0.3, 0.6], "val_accuracy": [0.3, 0.5]}
  member = lambda rnd, rule: {"round": rnd, "label": f"{rule}@seed0", "rule": rule,
                              "history": hist, "test": {"tpr": [0.5, 0.6, 0.7],
                                                        "confusion": np.eye(3, dtype=int) * 5}}
  results = {"dataset": {"class_names": names},
             "baseline": [member(0, "baseline")], "rounds": [[member(1, "$w$")]],
             "comparisons": [[{"rule": "$w$", "tpr_mean": [0.5, 0.6, 0.7],
                               "tpr_sd": [0, 0, 0], "D": {"mean": 0.1}, "accuracy_mean": 0.6}]],
             "best_rule": {"rule": "$w$", "max_accuracy_drop": 1.0}}
  plots.write_all(str(tmp_path), results)
  assert {p.name for p in tmp_path.iterdir()} == {"tpr_bars.png", "confusion_baseline.png",
                                                 "confusion_best.png", "training_curves.png",
                                                 "who_paid.png"}
  fig = plots.confusion(np.eye(3), names, "t")
  fig.canvas.draw()
  shown = [t.get_text() for t in fig.axes[0].get_xticklabels()]
  assert shown == [r"a\$b^\$", r"c_\$x\$", "plain"]  # rendered as the literal characters
  plt.close(fig)


# ----------------------------------------------------------------------- errors, one line


def _os_errors():
  return [
      (OSError(errno.ENOSPC, "No space left on device", "/w/results.json"),
       "no space left on device while writing /w/results.json"),
      (ValueError(ORBAX_ENOSPC), "no space left on device while writing /w/checkpoints/"),
      (OSError(errno.EROFS, "Read-only file system", "/w/LOCK"),
       "the workdir is on a read-only file system while writing /w/LOCK"),
  ]


@pytest.mark.parametrize("error, line", _os_errors())
def test_disk_errors_are_named(error, line):
  wrapped = RuntimeError("save failed")
  wrapped.__cause__ = error
  for e in (error, wrapped):
    what, hint = errors.describe(e)
    assert what.startswith(line)
    assert "workdir" in hint


def _bad_config():
  c = load_config("cifar", "cpu")
  c.rounds = 0
  return c


def test_project_errors_are_one_line_and_library_errors_keep_their_traceback():
  try:
    checks.validate_config(_bad_config())
  except ValueError as e:
    project = e
  assert errors.describe(project) == (str(project), "fix the field named above (--config.<field>="
                                                 "... or the config file)")
  try:
    np.zeros(2).reshape(3)  # a ValueError raised inside numpy: a bug, not a user error
  except ValueError as e:
    library = e
  assert errors.describe(library) is None
  assert errors.describe(DataError("x.csv:3: bad"))[0] == "x.csv:3: bad"
  assert errors.describe(run_control.WorkdirLocked("in use"))[1].startswith("wait for that run")


@pytest.fixture
def finish(monkeypatch):
  monkeypatch.setattr(errors, "_finish", lambda code: (_ for _ in ()).throw(SystemExit(code)))


@pytest.mark.parametrize("verbosity", [0, 1])
def test_cli_prints_one_line_and_a_hint(finish, capsys, verbosity):
  def fail():
    raise DataError("my.csv:1: column 3 repeats the header name 'country'\nof column 2")

  with pytest.raises(SystemExit) as e:
    errors.run(fail, verbosity)
  assert e.value.code == errors.EXIT_ERROR
  err = capsys.readouterr().err.splitlines()
  assert err[-2:] == ["error: my.csv:1: column 3 repeats the header name 'country' of column 2",
                      "hint: fix the data file or the data.* field named above (the traceback: "
                      "rerun with --verbosity=1)"]
  assert (len(err) == 2) == (verbosity == 0)
  if verbosity:
    assert err[0] == "Traceback (most recent call last):"


def test_cli_ctrl_c_prints_the_resume_command(finish, capsys, monkeypatch):
  monkeypatch.setattr(sys, "argv", ["launch.py", "--config=configs/names.py", "--config.x=a b"])

  def stopped():
    raise run_control.Stopped("round1", 3, 10)

  with pytest.raises(SystemExit) as e:
    errors.run(stopped)
  assert e.value.code == errors.EXIT_STOPPED
  out = capsys.readouterr().out
  assert "stopped after epoch 3/10 of phase round1 (checkpoint saved)" in out
  assert out.rstrip().endswith(f"{os.path.basename(sys.executable)} launch.py "
                               "--config=configs/names.py '--config.x=a b'")


def test_launch_full_disk_during_a_checkpoint_ends_with_one_line(tmp_path):
  # Before: 250-670 lines ending in "ImportError: sys.meta_path is None" (orbax threads alive
  # at interpreter shutdown), "No space left" buried inside. The real save runs (and starts
  # orbax's threads), then the disk is "full".
  config = tiny_csv_config(tmp_path)
  code = f"""
import errno, runpy, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
import test_run_safety
test_run_safety.stub_compiled_programs()
from lwi_jax.runtime import checkpoint
real_save = checkpoint.PhaseCheckpointer.save
def save(self, epoch, carry):
  real_save(self, epoch, carry)
  raise ValueError({ORBAX_ENOSPC!r})
checkpoint.PhaseCheckpointer.save = save
sys.argv = ["launch.py"] + sys.argv[1:]
runpy.run_path("launch.py", run_name="__main__")
"""
  args = ["--config=configs/names.py:csv", f"--config.data.path={config.data.path}",
          "--config.data.max_len=8", "--config.data.validation_fraction=0.3",
          "--config.model.embed_dim=4",
          "--config.model.conv_features=(8,)", "--config.model.lstm_hidden=8",
          "--config.train.epochs=1", "--config.train.batch_size=16",
          "--config.train.eval_batch_size=64", "--config.rules=('inverse_tpr:gamma=1',)",
          f"--config.workdir={config.workdir}"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300, env=env)
  # absl-formatted library log lines (I/W/E + date) are helper #10's console set-up's business.
  err = [line for line in proc.stderr.splitlines()
         if line.strip() and not re.match(r"[IWE]\d{4} ", line)]
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert err[-2].startswith("error: no space left on device while writing /w/checkpoints/")
  assert err[-1].startswith("hint: free some space")
  assert "Traceback" not in proc.stderr and "meta_path" not in proc.stderr
  assert len(err) <= 4, err  # the two lines, plus at most a library warning or two


def test_library_thread_tracebacks_are_counted_not_printed(capsys, monkeypatch):
  shown = []
  monkeypatch.setattr(threading, "excepthook", lambda args: shown.append(args.exc_type))

  def run_with_a_failing_thread():
    t = threading.Thread(target=lambda: 1 / 0)
    t.start()
    t.join()

  errors.run(run_with_a_failing_thread)
  assert shown == []
  assert capsys.readouterr().err == ("note: 1 traceback(s) of library threads were hidden; to "
                                     "see them, rerun with --verbosity=1\n")
  errors.run(run_with_a_failing_thread, verbosity=1)  # shown as usual
  assert shown == [ZeroDivisionError] and capsys.readouterr().err == ""
