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

from lwi_jax import optim
from lwi_jax.models import cnn_base
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
  for key in HEAD_FIELDS:  # only head phases read them: they pass them in their parts
    d.get("train", {}).pop(key, None)
  for (section, key), neutral in NEUTRAL_VALUES.items():
    if d.get(section, {}).get(key, neutral) == neutral:
      d.get(section, {}).pop(key, None)
  for section, switch, prefix in SWITCHED_FIELDS:
    fields = d.get(section, {})
    if not fields.get(switch):
      for key in [k for k in fields if k.startswith(prefix)]:
        fields.pop(key)
  blob = json.dumps([d, parts], sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Features a switch turns on, as (section, switch, field prefix): switched off (0 or absent),
# none of their fields changes training, so they are left out and a phase finished before the
# feature existed is still reused (the same as an absent field).
SWITCHED_FIELDS = (("optimizer", "lookahead_every", "lookahead_"),
                   ("model", "whiten_patch", "whiten_"))

# Fields whose value here changes nothing (the model as it was before they existed): left out
# at that value, for the same reason.
NEUTRAL_VALUES = {("model", "identity_init"): False, ("model", "bn_scale"): True,
                  ("model", "activation"): cnn_base.ImageCNN.activation,
                  ("optimizer", "norm_bias_lr_scale"): optim.NORM_BIAS_LR_SCALE_DEFAULT,
                  ("train", "eval_translate"): train_options.DEFAULTS["eval_translate"]}


# config.train fields that only the head-only retraining phases read (study/study.py passes
# them in those phases' parts), so changing them never retrains the baseline or a full round.
HEAD_FIELDS = ("head_epochs",)


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
          # logit-space rules: b in CE(logits + b); online_eg's final b = -log λ
          "initial_logit_offsets": np.asarray(hparams_start.logit_offsets),
          "final_logit_offsets": np.asarray(hparams_end.logit_offsets),
          "history": {k: np.asarray(v) for k, v in history.items()},
          "validation": val, "test": test}


def decode(phase: dict) -> dict:
  """Turns the numeric lists of a saved phase back into numpy arrays."""
  out = dict(phase)
  num = io_utils.decode_non_finite
  for key in ("validation", "test"):
    out[key] = [{k: np.asarray(num(v)) for k, v in s.items()} for s in phase[key]]
  out["history"] = {k: np.asarray(num(v), np.float64) for k, v in phase["history"].items()}
  for key in ("initial_class_weights", "final_class_weights", "sample_weights",
              "initial_logit_offsets", "final_logit_offsets"):
    if key in phase:  # offsets: absent from phases saved before logit-space rules
      out[key] = np.asarray(num(phase[key]), np.float64)
  return out


def merge_logits(parts: list[tuple[list[int], dict]]) -> dict:
  """The per-example logits of a round's phases ((member indices, {split: [E, N, C]})) as one
  {split: [E, N, C]} in round order, as `merge` orders the members."""
  order = np.argsort([i for idx, _ in parts for i in idx], kind="stable")
  splits = [k for k in parts[0][1] if all(k in logits for _, logits in parts)]
  return {k: np.concatenate([np.asarray(logits[k]) for _, logits in parts])[order]
          for k in splits}


def merge(parts: list[tuple[str, list[int], dict]], size: int) -> dict:
  """One round's result from the decoded phases that trained its members.

  Args:
    parts: (phase name, member indices in the round, decoded phase); a round's full
      retraining and its head-only retraining train disjoint members.
    size: members in the round.

  Returns:
    The phases' per-member fields (those every part has, one entry per member), in round
    order; `history` holds one array per member (a head phase runs train.head_epochs epochs,
    a full one train.epochs), and `phase` names the phase each member was trained in.
  """
  index = [i for _, idx, _ in parts for i in idx]
  if sorted(index) != list(range(size)):
    raise ValueError(f"merge: the phases' members {sorted(index)} are not the round's {size}")
  order = np.argsort(index, kind="stable")

  def per_member(get):
    rows = [row for _, idx, p in parts for row in get(p, len(idx))]
    return [rows[i] for i in order]

  def rows(p, n, key):
    v = p.get(key)
    ok = v is not None and not isinstance(v, (str, dict)) and np.ndim(v) >= 1 and len(v) == n
    return list(v) if ok else None

  out = {"phase": per_member(lambda p, n: [name for name, _, q in parts if q is p] * n)}
  for key in dict.fromkeys(k for _, _, p in parts for k in p if k != "history"):
    if all(rows(p, len(idx), key) is not None for _, idx, p in parts):
      merged = per_member(lambda p, n: rows(p, n, key))
      same = all(isinstance(p[key], np.ndarray) for _, _, p in parts)
      out[key] = np.asarray(merged) if same and len({np.shape(x) for x in merged}) == 1 \
          else merged
  fields = [k for k in parts[0][2]["history"] if all(k in p["history"] for _, _, p in parts)]
  out["history"] = {k: per_member(lambda p, n, k=k: list(p["history"][k])) for k in fields}
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
