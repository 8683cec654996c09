"""Finished phases on disk: their identity (fingerprint), their saved form, reading them back.

A phase (baseline, crossfit, round r) is identified by a fingerprint of the config fields it
depends on and of the content of the loaded data, so an edited CSV never reuses a phase. Its
result is written atomically to `phases/<phase>-<fingerprint>.json`, and every later step reads
the saved form (`decode`), never the in-memory one: a resumed or reused phase is exactly a
fresh one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import ml_collections
import numpy as np

from lwi_jax.parallel import sharding
from lwi_jax.report.results import NON_FINITE, OK
from lwi_jax.runtime import io_utils
from lwi_jax.study import train_options


def fingerprint(config: ml_collections.ConfigDict, *parts) -> str:
  """Hash of what a phase's result depends on (not the workdir, not the report options).

  Args:
    config: the study's config.
    *parts: name the phase and carry the data's content hash, so the same config on edited
      data is a different phase.

  Returns:
    12 hex digits.
  """
  d = config.to_dict()
  for key in ("workdir", "rules", "rounds", "compare", "scores"):  # scores: in the round parts
    d.pop(key, None)
  # Which post-hoc arms run does not change training; whether the phase saves its logits does.
  # Off (the default), the fingerprint is what it was before post-hoc arms existed.
  if d.pop("posthoc", None):
    d["saves_logits"] = True
  for key in sharding.LAUNCH_FIELDS:  # differ between the processes of one distributed run
    d.get("train", {}).pop(key, None)
  for key in train_options.CONSOLE_ONLY_FIELDS:
    d.get("train", {}).pop(key, None)
  # Where a reused split was read from: the split itself is in the data's content hash (a part),
  # so pinning the split a run carved reuses that run's finished phases.
  d.get("data", {}).pop("split_manifest", None)
  blob = json.dumps([d, parts], sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


def path(workdir: str, name: str, key: str) -> str:
  return os.path.join(workdir, "phases", f"{name}-{key}.json")


def logits_path(phase_path: str) -> str:
  """The per-example logits saved beside a phase's JSON (same name and fingerprint)."""
  return phase_path[:-len(".json")] + ".logits.npz"


def write_logits(phase_path: str, arrays: dict) -> None:
  """Saves float32 logits {name: [members, N, C]} atomically (process 0 only)."""
  if not sharding.is_primary():
    return
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
  io_utils.atomic_write_bytes(logits_path(phase_path), buf.getvalue())


def read_logits(phase_path: str) -> dict[str, np.ndarray] | None:
  """The phase's saved logits, or None when it has none (saved with config.posthoc=())."""
  path = logits_path(phase_path)
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as z:
    return {k: np.asarray(z[k]) for k in z.files}


def first_non_finite(finite_history: np.ndarray) -> np.ndarray:
  """Per member, the first (1-based) epoch whose `finite` flag is 0; 0 if none."""
  bad = np.asarray(finite_history) == 0
  return np.where(bad.any(1), bad.argmax(1) + 1, 0) if bad.size else np.zeros(len(bad), int)


def result(labels, seeds, rules, hparams_start, hparams_end, history, val, test) -> dict:
  """A trained phase's result: who its members are, their status, weights, curves, scores."""
  epochs = first_non_finite(history["finite"])
  return {"labels": labels, "seeds": seeds, "rules": rules,
          "status": [NON_FINITE if e else OK for e in epochs],
          "non_finite_epoch": [int(e) or None for e in epochs],
          "initial_class_weights": np.asarray(hparams_start.class_weights),
          "sample_weights": np.asarray(hparams_start.sample_weights),
          "final_class_weights": np.asarray(hparams_end.class_weights),
          "history": {k: np.asarray(v) for k, v in history.items()},
          "validation": val, "test": test}


def decode(phase: dict) -> dict:
  """Turns the numeric lists of a saved phase back into numpy arrays."""
  out = dict(phase)
  num = io_utils.decode_non_finite
  for key in ("validation", "test"):
    out[key] = [{k: np.asarray(num(v)) for k, v in s.items()} for s in phase[key]]
  out["history"] = {k: np.asarray(num(v), np.float64) for k, v in phase["history"].items()}
  for key in ("initial_class_weights", "final_class_weights", "sample_weights"):
    out[key] = np.asarray(num(phase[key]), np.float64)
  return out


def read(phase_path: str) -> dict:
  """A finished phase's result; a damaged file is named with its fix (results are written
  atomically, so damage came from outside: a disk error or an edit)."""
  try:
    with open(phase_path) as f:
      decoded = decode(json.load(f))
    missing = {"labels", "history", "validation", "test"} - set(decoded)
    if missing:
      raise KeyError(f"missing {sorted(missing)}")
    return decoded
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(f"phase file {phase_path} is corrupt ({type(e).__name__}: {str(e)[:120]}); "
                     "delete it and rerun the same command: the phase is then rebuilt from its "
                     "last checkpoint (or retrained)") from e


def write(phase_path: str, phase: dict) -> dict:
  """Saves `phase` (process 0 only) and returns its saved form, decoded, in every process."""
  text = io_utils.json_text(phase)
  if sharding.is_primary():
    io_utils.atomic_write_text(phase_path, text)
  return decode(json.loads(text))
