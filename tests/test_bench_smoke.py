"""Every command bench/README.md documents runs, on tiny sizes, for every model.

Not benchmarks: the numbers are meaningless at these sizes. What is checked is that each
documented entry point still runs end to end and writes what it promises (the default
`python -m bench.run` once crashed at the ConvLSTM after a change to the CNN's compiler
options, and nothing noticed). Sizes are cut with the commands' own flags, so the code path is
the documented one.
"""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # bench/ and tests/ are imported as packages of the checkout
  sys.path.insert(0, REPO)

from bench import batched_matmul, conv_grad_layers, profile_step, progress_overhead  # noqa: E402
from bench import tabular_reference  # noqa: E402
from bench import tabular_speed  # noqa: E402
from bench import text_encodings, time_to_accuracy  # noqa: E402
from bench import run as bench_run  # noqa: E402

def _torch_available() -> bool:
  try:
    import torch  # noqa: F401,PLC0415
    return True
  except ImportError:
    return False


def _tiny_names_configs(monkeypatch, tmp_path):
  """bench.run.load_config, with the names config cut to 3 countries x 10 names of a small
  hand-written rank list (loading the names-dataset package costs ~15 s; test_names.py covers
  it) and a tiny ConvLSTM. Other configs are returned as they are."""
  from lwi_jax.data import names  # noqa: PLC0415
  from tests.test_names import fixture_ranks  # noqa: PLC0415
  monkeypatch.setattr(names, "rank_lists_from_package", fixture_ranks)
  real_load_config = bench_run.load_config

  def load_config(name, preset=None):
    config = real_load_config(name, preset)
    if name == "names":
      config.data.countries = ("GB", "US", "DE")
      config.data.top_k = 10
      config.data.per_class = 40
      config.data.cache_dir = str(tmp_path / "cache")
      config.model.lstm_hidden = 8
      config.model.conv_features = (8,)
      config.model.embed_dim = 8
      config.train.batch_size = 16
    return config

  return load_config


def test_bench_run_every_model_section_and_e2e(tmp_path, monkeypatch):
  """`python -m bench.run --e2e` on `--quick` sizes, in ONE call (compiles dominate the cost):
  both models, the CNN's reference impls, the numerics check, the FLOP/s peak and the names
  study end to end (ensemble vs member by member), on _tiny_names_configs. PyTorch rows run
  when the bench extra is installed (the command prints that they are skipped otherwise, as the
  real one does)."""
  monkeypatch.setattr(bench_run, "load_config", _tiny_names_configs(monkeypatch, tmp_path))
  # one e2e member (E = 1 in every phase and mode: one compiled program of each kind)
  args = ["--quick", "--ks", "1", "--strategies", "vmap", "--rounds", "1", "--ref_steps", "1",
          "--cnn_ref_impls", "xla",
          "--torch_extra_threads", "", "--e2e", "--e2e_rules", "uniform", "--e2e_seeds", "0",
          "--e2e_per_class", "40", "--out_dir", str(tmp_path)]
  if not _torch_available():
    args.append("--no_torch")
  data = bench_run.main(args)
  impls = {(r["model"], r["impl"]) for r in data["per_member_steps"]}
  assert impls == {("cnn", "cpu"), ("cnn", "xla"), ("conv_lstm", "-")}
  assert all(r["s_per_step_member_min"] > 0 for r in data["per_member_steps"])
  if _torch_available():
    assert {r["model"] for r in data["torch"]} == {"cnn", "conv_lstm"}
  assert data["numerics"]["cpu"] < 1e-4 and data["peak_gflops"] > 0
  assert data["e2e"]["members"] == 1 and data["e2e"]["ensemble_seconds"] > 0
  md = [f for f in os.listdir(tmp_path) if f.endswith(".md")]
  assert len(md) == 1 and "QUICK SMOKE RUN" in open(tmp_path / md[0]).read()
  with open(tmp_path / md[0].replace(".md", ".json")) as f:
    assert json.load(f)["goals"]


@pytest.mark.parametrize("model", ["cnn", "conv_lstm"])
def test_profile_step(model, capsys, tmp_path):
  profile_step.main(["--model", model, "--quick", "--batch", "8", "--steps", "1", "--top", "3",
                     "--trace_dir", str(tmp_path)])
  out = capsys.readouterr().out
  assert "| op kind | ms | share |" in out and str(tmp_path) in out


def test_profile_step_of_a_preset(capsys, tmp_path, tiny_cifar10_dir):
  """--preset: the configs/cifar.py network and recipe through the study's trainer."""
  profile_step.main(["--preset", "smoke", "--steps", "1", "--top", "3", "--data_dir",
                     tiny_cifar10_dir, "--trace_dir", str(tmp_path)])
  out = capsys.readouterr().out
  # at least --steps batches (the smoke split's validation minimum asks for more images)
  assert re.search(r"preset smoke \(conv_groups \(4, 8, 8\)\), batch 32: [1-9]\d* steps", out)
  assert "| op kind | ms | share |" in out and "fusion" in out


def _module(*args):
  """A float64 bench tool in its own process: importing it turns on jax_enable_x64, which must
  not leak into the other tests of this worker."""
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=300)


def test_check_gradients_f64_and_fusion_repro():
  proc = _module("bench.check_gradients_f64", "--batch", "2", "--image", "16", "--widths", "4,4,8",
                 "--impls", "cpu")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "cpu    float64, vmap K=2" in proc.stdout
  # Exit status 1 while the XLA:CPU miscompile it reproduces is present, 0 once fixed.
  proc = _module("bench.xla_cpu_fusion_repro", "--sizes", "16")
  assert proc.returncode in (0, 1) and "16x16 images" in proc.stdout, proc.stderr


def test_batched_matmul(capsys):
  batched_matmul.main(["--calls", "3", "--rounds", "1"])
  assert "GFLOP/s" in capsys.readouterr().out


def test_time_to_accuracy(tmp_path, tiny_cifar10_dir):
  """`python -m bench.time_to_accuracy` on conftest's miniature CIFAR-10, :smoke network:
  both frameworks side by side when PyTorch is installed (JAX alone otherwise)."""
  frameworks = "jax,torch" if _torch_available() else "jax"
  out = time_to_accuracy.main([
      "--preset", "smoke", "--frameworks", frameworks, "--epochs", "1", "--targets", "0.0,1.01",
      "--data_dir", tiny_cifar10_dir, "--out_dir", str(tmp_path),
      "--set", "model.bn_momentum=0.6", "--set", "train.flip=random"])
  for name in frameworks.split(","):
    r = out["rows"][name]
    assert len(r["accuracy"]) == 1 and len(r["tpr"]) == 10
    assert r["minutes_to"]["0"] is not None and r["minutes_to"]["1.01"] is None
  assert len(out["rows"]["jax"]["val_accuracy"]) == 1  # what an ablation is chosen on
  assert out["config"]["model"]["bn_momentum"] == 0.6
  assert out["config"]["train"]["flip"] == "random"
  # a JAX-only variant is never compared with PyTorch's plain network under one name
  with pytest.raises(SystemExit, match=r"optimizer.lookahead_every=1: the PyTorch side"):
    time_to_accuracy.main(["--preset", "smoke", "--frameworks", "jax,torch",
                           "--set", "optimizer.lookahead_every=1"])
  with pytest.raises(SystemExit, match="optimizer.lookahed_every: no such config field"):
    time_to_accuracy.main(["--preset", "smoke", "--set", "optimizer.lookahed_every=1"])
  if _torch_available():
    assert out["jax_over_torch_per_step"] > 0 and out["jax_over_torch_per_step_min"] > 0
  md = open(next(tmp_path.glob("time_to_accuracy-*.md"))).read()  # what BUILD_NOTES quotes
  assert "s/step (min)" in md
  assert json.load(open(next(tmp_path.glob("time_to_accuracy-*.json"))))["rows"] == \
      json.loads(json.dumps(out["rows"]))


def test_time_to_accuracy_seed_sets_the_member(tiny_cifar10_dir):
  """--seed changes the JAX member's initialisation (a second seed of an ablation is a different
  member) and is the seed its epoch keys are drawn from; the same seed gives the same member."""
  config = bench_run.load_config("cifar", "smoke")
  config.data.dir = tiny_cifar10_dir
  data = time_to_accuracy.data_lib.load_dataset(config.data)
  a, b, c = (time_to_accuracy.JaxMember(config, data, s) for s in (0, 0, 1))
  leaves = lambda m: jax.tree.leaves(m.states.params)  # noqa: E731
  assert all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b)))
  assert not all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(c)))
  assert c.seed == 1 and a.seed == 0


def test_gpu_check_script_parses():
  """bench/gpu_check.sh needs a GPU to run; here: it is valid bash and names its parts."""
  path = os.path.join(REPO, "bench", "gpu_check.sh")
  assert subprocess.run(["bash", "-n", path], capture_output=True).returncode == 0
  text = open(path).read()
  for needed in ("tests/test_fast_paths.py", "bench.run", "launch.py --config=configs/cifar.py",
                 "compute_dtype=bfloat16", "timings.txt"):
    assert needed in text


def test_text_encodings(monkeypatch, tmp_path):
  """`python -m bench.text_encodings` with two encodings, one seed, one epoch, tiny names."""
  monkeypatch.setattr(text_encodings, "load_config", _tiny_names_configs(monkeypatch, tmp_path))
  out = tmp_path / "encodings.json"
  rows = text_encodings.main(["--encodings", "nfkc/learned,nfkc/bytes", "--seeds", "0",
                              "--epochs", "1", "--out", str(out)])
  assert set(rows) == {"nfkc/learned", "nfkc/bytes"}
  assert all(len(r["tpr"]) == 1 and len(r["tpr"][0]) == 3 for r in rows.values())
  assert rows["nfkc/bytes"]["vocab_size"] != rows["nfkc/learned"]["vocab_size"]
  assert set(json.loads(out.read_text())["rows"]) == set(rows)


def test_progress_overhead(monkeypatch, tmp_path):
  """`python -m bench.progress_overhead` with one member and one round, tiny names."""
  monkeypatch.setattr(progress_overhead, "load_config",
                      _tiny_names_configs(monkeypatch, tmp_path))
  result = progress_overhead.main(["--rounds", "1", "--members", "1"])
  assert set(result["times"]) == {"bar", "no bar"}
  assert all(len(t) == 1 and t[0] > 0 for t in result["times"].values())
  assert result["bit_identical"] is True  # the bar must not change what is trained


def test_tabular_speed():
  """`python -m bench.tabular_speed`, its short form, one member, one round."""
  text = tabular_speed.main(["--ks", "1", "--rounds", "1", "--chunks", "", "--no_extras"])
  assert "Matmul peak" in text and "| production | vmap | 1 |" in text


def test_csv_load():
  """`python -m bench.csv_load` on a 3,000-row table, one round."""
  from bench import csv_load
  text = csv_load.main(["--rows", "3000", "--rounds", "1"])
  assert "| read | auto |" in text and "| load | auto |" in text and "| read | strict |" in text


def test_tabular_reference():
  """`python -m bench.tabular_reference` with 2 seeds and every method capped at 2 iterations."""
  pytest.importorskip("sklearn", reason="scikit-learn is in the `bench` extra, not `test`")
  text = tabular_reference.main(["--seeds", "0,1", "--epochs", "2"])
  assert "project MLP" in text and "HistGradientBoostingClassifier" in text
  assert text.count("\n| ") >= 5  # header + 4 methods


def test_digits_folder(tmp_path):
  """`python -m bench.digits_folder`: the folder loads through configs/images.py:folder."""
  pytest.importorskip("sklearn", reason="scikit-learn is in the `bench` extra, not `test`")
  from bench import digits_folder
  from configs import images
  from lwi_jax import data as data_lib
  assert digits_folder.main(["--out", str(tmp_path / "digits")]) == 1797
  cfg = images.get_config("folder").data
  cfg.update(dict(root=str(tmp_path / "digits"), cache_dir=str(tmp_path / "cache")))
  data = data_lib.load_dataset(cfg)
  assert data.class_names == tuple(str(d) for d in range(10))
  assert data.train.inputs.shape[1:] == (8, 8, 1)
  assert len(data.train) + len(data.validation) + len(data.test) == 1797


def test_image_folder_speed(tiny_cifar10_dir, tmp_path):
  """`python -m bench.image_folder_speed` on the miniature CIFAR-10, without the study part."""
  from bench import image_folder_speed
  result = image_folder_speed.main(["--out", str(tmp_path), "--skip-study",
                                    "--cifar-dir", tiny_cifar10_dir])
  assert result["images"] == 700 and result["cache_reused"] == [False, True]
  assert result["same_split"] and result["same_class"]


def test_conv_grad_layers(capsys):
  """bench.conv_grad_layers on tiny batches: one row per convolution of the preset's network,
  JAX's and (with the bench extra) PyTorch's gradient timings side by side."""
  rows = conv_grad_layers.main(["--batch", "2", "--rounds", "1",
                                *([] if _torch_available() else ["--no_torch"])])
  assert [(r["size"], r["c_in"], r["c_out"]) for r in rows] == [
      (32, 24, 32), (16, 32, 32), (16, 32, 128), (8, 128, 128), (8, 128, 128), (4, 128, 128)]
  assert all(v > 0 for r in rows for v in r["ms"].values())
  assert ("torch weight grad" in rows[0]["ms"]) == _torch_available()
  out = capsys.readouterr().out
  assert "| 16x16, 32 -> 128 |" in out and "widths (32, 128, 128)" in out
  # --widths: another network's layers, as bench.time_to_accuracy's --widths trains it
  rows = conv_grad_layers.main(["--widths", "2", "--batch", "1", "--rounds", "1", "--no_torch"])
  assert [(r["size"], r["c_in"], r["c_out"]) for r in rows] == [(32, 24, 2), (16, 2, 2)]
  assert "widths (2,)" in capsys.readouterr().out
