"""`python launch.py --config=configs/tabular.py` end to end on the bundled satimage (tiny)."""

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_launch_tabular_writes_the_study_outputs(tmp_path):
  workdir = tmp_path / "run"
  # One rule x 2 seeds: the round has the baseline's ensemble size, so its programs are reused
  # (compilation is most of this test's time). Oversampling: the rule with its own data order.
  args = ["--config=configs/tabular.py", "--config.model.hidden_sizes=(8,)",
          "--config.train.epochs=1", "--config.rules=('oversample:gamma=1',)",
          "--config.seeds=(0,1)", f"--config.workdir={workdir}"]
  proc = subprocess.run([sys.executable, "launch.py", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  for name in ("results.json", "summary.csv", "report.md"):
    assert (workdir / name).stat().st_size > 0, name
  with open(workdir / "results.json") as f:
    results = json.load(f)
  ds = results["dataset"]
  assert ds["name"] == "satimage" and len(ds["class_names"]) == 6
  assert ds["sizes"] == {"train": 2706, "validation": 300, "test": 750}
  assert ds["info"]["source"] == "bundled:satimage" and ds["info"]["num_features"] == 36
  members = results["members"] if "members" in results else results["rounds"][-1]
  assert sorted((m["rule"], m["seed"]) for m in members) == [
      ("oversample:gamma=1", 0), ("oversample:gamma=1", 1)]
  for m in members:
    tpr = np.asarray(m["test"]["tpr"])
    assert tpr.shape == (6,) and 0 <= tpr.min() <= tpr.max() <= 1
  assert "damp grey soil" in (workdir / "report.md").read_text()
