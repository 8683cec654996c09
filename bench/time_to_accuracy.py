"""Time to accuracy on CIFAR-10: the JAX recipe vs the same network and recipe in PyTorch.

  python -m bench.time_to_accuracy                      # configs/cifar.py:cpu, both frameworks
  python -m bench.time_to_accuracy --frameworks jax     # one JAX member alone
  python -m bench.time_to_accuracy --epochs 4 --targets 0.7,0.8

One process, one data split (the preset's 45,000 / 5,000 / 10,000), epochs interleaved (JAX
epoch 1, PyTorch epoch 1, JAX epoch 2, ...) so that load from elsewhere hits both alike. After
every epoch each model is evaluated on the TEST split (with the preset's test-time mirror
images); training seconds exclude evaluation. Reports, per framework: test accuracy and seconds
per epoch, minutes of training to each target accuracy (first epoch at or above it; '-' if not
reached), seconds per optimizer step, and the JAX/PyTorch per-step ratio (median over epochs).

The PyTorch side (bench/torch_reference.py's mirror of model.name with the same whitening layer,
identity initialisation and BatchNorm scale; tests/test_torch_mirror.py checks it gives the JAX
model's logits from the same parameters) runs the same recipe: SGD with Nesterov
momentum and decoupled weight decay, the warm-up/linear-decay schedule per step, label
smoothing, alternating flips (the same per-example pattern) + reflect translation, BatchNorm
momentum/epsilon, test-time mirror images, the same thread count as XLA (every core). Its
initialisation is PyTorch's own (the JAX model's is lecun-normal), so accuracies can differ by
a run-to-run amount; the per-step ratio is the like-for-like number.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from bench.run import load_config  # noqa: E402
from lwi_jax import augment  # noqa: E402
from lwi_jax import data as data_lib  # noqa: E402
from lwi_jax import member  # noqa: E402
from lwi_jax import optim  # noqa: E402
from lwi_jax.models import cnn_base  # noqa: E402
from lwi_jax.models import whitening  # noqa: E402
from lwi_jax.parallel import programs  # noqa: E402
from lwi_jax.runtime import io_utils  # noqa: E402
from lwi_jax.study import train_options  # noqa: E402
from lwi_jax.study import trainer as trainer_lib  # noqa: E402


class JaxMember:
  """One baseline member through the production code (trainer_lib.Trainer's compiled epoch)."""

  name = "jax"

  def __init__(self, config, data, seed: int = 0):
    self.seed = seed
    self.trainer = trainer_lib.Trainer(config, data, log=lambda m: None)
    self.epoch_fn = self.trainer.epoch_fn()
    self.states = programs.init_ensemble(self.trainer.model, self.trainer.tx,
                                      self.trainer.sample_inputs, [seed])
    from lwi_jax.parallel import ensemble  # noqa: PLC0415
    self.hparams = ensemble.stack([member.MemberHParams.create(
        np.ones(data.num_classes, np.float32))])
    self.steps_per_epoch = len(data.train) // config.train.batch_size

  def train_epoch(self, epoch: int) -> None:
    keys = programs.ensemble_epoch_keys([self.seed], epoch)
    self.states, self.hparams, m = self.epoch_fn(
        self.states, self.hparams, keys, jnp.int32(epoch), self.trainer.train_inputs,
        self.trainer.train_labels)
    jax.block_until_ready(m)

  def split_tpr(self, split: str = "test") -> np.ndarray:
    return np.asarray(self.trainer.evaluate(self.states, split)[0]["tpr"])


def torch_network(tr, config, data):
  """bench/torch_reference.py's mirror of config.model, with the JAX side's whitening layer (the
  same whitening.fit on the same training images: a fixed function of the data, not a weight)."""
  m = config.model
  act = m.get("activation", cnn_base.ImageCNN.activation)
  whiten = None
  if m.get("whiten_patch", 0):
    kernel, bias = whitening.fit(data.train.inputs, int(m.whiten_patch),
                                 float(m.get("whiten_eps", whitening.EPS)))
    whiten = tr.PatchWhitening(int(m.whiten_patch), kernel, bias, data.train.inputs.shape[-1],
                               act)
  fields = dict(whitening=whiten, bn_scale=bool(m.get("bn_scale", True)),
                activation=act,
                identity_init=bool(m.get("identity_init", False)),
                channels=data.train.inputs.shape[-1])
  if m.name == "conv_groups":
    return tr.TorchConvGroupsCNN(data.num_classes, tuple(m.widths), **fields)
  return tr.TorchResidualCNN(data.num_classes, tuple(m.widths), m.dense_width, m.dropout_rate,
                             data.train.inputs.shape[1], **fields)


class TorchMember:
  """The same network and recipe in PyTorch (CPU), one optimizer step per batch."""

  name = "torch"

  def __init__(self, config, data, threads: int, seed: int = 0):
    import torch  # noqa: PLC0415
    from bench import torch_reference as tr  # noqa: PLC0415
    self.torch, self.F = torch, torch.nn.functional
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    self.threads = threads
    m, o, t = config.model, config.optimizer, config.train
    self.cfg = t
    self.spec = train_options.augment_spec(t, data)
    self.smoothing = train_options.label_smoothing(t)
    self.eval_flip = train_options.eval_flip(t, data)
    self.net = torch_network(tr, config, data)
    for mod in self.net.modules():
      if isinstance(mod, torch.nn.BatchNorm2d):
        mod.momentum, mod.eps = 1.0 - float(m.get("bn_momentum", 0.9)), float(
            m.get("bn_epsilon", 1e-5))
    self.net = self.net.to(memory_format=torch.channels_last)
    self.x = torch.from_numpy(np.ascontiguousarray(data.train.inputs))  # uint8 NHWC
    self.y = torch.from_numpy(data.train.labels.astype(np.int64))
    self.x_test = torch.from_numpy(np.ascontiguousarray(data.test.inputs))
    self.y_test = data.test.labels
    self.num_classes = data.num_classes
    self.batch = int(t.batch_size)
    self.steps_per_epoch = len(data.train) // self.batch
    if o.name not in ("sgdw", "sgd"):
      raise ValueError(f"the PyTorch side implements SGD / SGDW, not optimizer.name={o.name!r}")
    self.decoupled_wd = float(o.weight_decay) if o.name == "sgdw" else 0.0
    self.params = [p for p in self.net.parameters() if p.requires_grad]  # not a fixed BN scale
    self.opt = torch.optim.SGD(self.params, lr=float(o.learning_rate),
                               momentum=float(o.momentum), nesterov=True,
                               weight_decay=0.0 if o.name == "sgdw" else float(o.weight_decay))
    self.schedule = optim.learning_rate_schedule(o, self.steps_per_epoch * int(t.epochs))
    self.step = 0
    self.gen = torch.Generator().manual_seed(seed)

  def _images(self, x_uint8):
    """uint8 NHWC -> float NCHW (channels_last) in [-1, 1], as the JAX model scales them."""
    x = x_uint8.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x.contiguous(memory_format=self.torch.channels_last)

  def _augment(self, x, ids, flip_all):
    torch, F, spec = self.torch, self.F, self.spec
    if spec.name == "none":
      return x
    if spec.flip == "alternating":
      flip = flip_all[ids]
    else:
      flip = torch.rand(x.shape[0], generator=self.gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = spec.crop_pad
    if pad == 0:
      return x
    mode = "reflect" if spec.pad_mode == "reflect" else "constant"
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    h, w = x.shape[-2:]
    shifts = torch.randint(0, 2 * pad + 1, (x.shape[0], 2), generator=self.gen)
    out = torch.empty_like(x)
    for sy in range(2 * pad + 1):
      for sx in range(2 * pad + 1):
        sel = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
        if bool(sel.any()):
          out[sel] = padded[sel, :, sy:sy + h, sx:sx + w]
    return out

  def train_epoch(self, epoch: int) -> None:
    torch, F = self.torch, self.F
    torch.set_num_threads(self.threads)
    self.net.train()
    order = torch.randperm(self.x.shape[0], generator=self.gen)
    # the JAX side's per-example alternating-flip pattern, for the whole epoch at once
    flip_all = torch.from_numpy(np.array(augment.alternating_flip_mask(
        jnp.arange(self.x.shape[0]), epoch)))
    for i in range(self.steps_per_epoch):
      ids = order[i * self.batch:(i + 1) * self.batch]
      x = self._augment(self._images(self.x[ids]), ids, flip_all)
      lr = float(self.schedule(self.step)) if callable(self.schedule) else float(self.schedule)
      for g in self.opt.param_groups:
        g["lr"] = lr
      self.opt.zero_grad(set_to_none=True)
      loss = F.cross_entropy(self.net(x), self.y[ids], label_smoothing=self.smoothing)
      loss.backward()
      if self.decoupled_wd:  # p -= lr * wd * p beside the momentum step (optax order: same p)
        with torch.no_grad():
          for p in self.params:
            p.mul_(1.0 - lr * self.decoupled_wd)
      self.opt.step()
      self.step += 1

  def split_tpr(self) -> np.ndarray:
    torch = self.torch
    self.net.eval()
    preds = []
    with torch.no_grad():
      for i in range(0, self.x_test.shape[0], 500):
        x = self._images(self.x_test[i:i + 500])
        logits = self.net(x)
        if self.eval_flip:
          logits = logits + self.net(x.flip(-1))
        preds.append(logits.argmax(-1).numpy())
    pred = np.concatenate(preds)
    return np.array([np.mean(pred[self.y_test == c] == c) for c in range(self.num_classes)])


def minutes_to(targets, accuracies, seconds):
  """Cumulative training minutes at the first epoch whose accuracy reaches each target."""
  out = {}
  cum = np.cumsum(seconds)
  for t in targets:
    hit = [i for i, a in enumerate(accuracies) if a >= t]
    out[f"{t:g}"] = float(cum[hit[0]] / 60.0) if hit else None
  return out


def apply_override(config, item: str) -> None:
  """`--set a.b=value` on the loaded config; an unknown field is an error, not a new field."""
  field, sep, text = item.partition("=")
  if not sep:
    raise SystemExit(f"--set {item!r}: expected FIELD=VALUE")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  *parents, leaf = field.split(".")
  node = config
  for name in parents:
    node = node[name]
  if leaf not in node:
    raise SystemExit(f"--set {field}: no such config field")
  with node.unlocked():
    node[leaf] = value


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--preset", default="cpu", help="configs/cifar.py preset")
  p.add_argument("--frameworks", default="jax,torch")
  p.add_argument("--epochs", type=int, default=0, help="0 = the preset's")
  p.add_argument("--targets", default="0.8,0.85")
  p.add_argument("--data_dir", default="", help="default: the preset's data.dir (or "
                 "LWI_CIFAR10_DIR)")
  p.add_argument("--train_per_class", type=int, default=-1, help="-1 = the preset's")
  p.add_argument("--test_per_class", type=int, default=-1, help="-1 = the preset's")
  p.add_argument("--widths", default="", help="e.g. 16,32,64 (default: the preset's)")
  p.add_argument("--dense_width", type=int, default=0)
  p.add_argument("--batch", type=int, default=0, help="0 = the preset's")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="config override, repeatable, e.g. --set optimizer.lookahead_every=5 "
                 "(VALUE as a Python literal, else a string): an ablation through this tool")
  p.add_argument("--threads", type=int, default=os.cpu_count())
  p.add_argument("--seed", type=int, default=0, help="the member's seed (initialisation, data "
                 "order, augmentation); the split stays the preset's data.split_seed")
  p.add_argument("--out_dir", default=os.path.join(REPO, "bench", "results"))
  return p.parse_args(argv)


# What bench/torch_reference.py implements of each field it does not mirror in full: any other
# value would compare JAX's variant with a different PyTorch network under one name.
_TORCH_MIRRORS = {("model", "name"): ("resnet_cnn", "conv_groups"),
                  ("model", "activation"): ("relu", "gelu"),
                  ("optimizer", "lookahead_every"): (0,),
                  ("optimizer", "norm_bias_lr_scale"): (1.0,),
                  ("train", "eval_translate"): (0,)}


def check_torch_mirrors(config) -> None:
  for (section, key), allowed in _TORCH_MIRRORS.items():
    value = config[section].get(key, allowed[0])
    if value not in allowed:
      raise SystemExit(f"{section}.{key}={value!r}: the PyTorch side (bench/torch_reference.py) "
                       f"implements only {section}.{key} in {list(allowed)}; use --frameworks jax")


def main(argv=None) -> dict:
  args = parse_args(argv)
  config = load_config("cifar", args.preset)
  config.data.dir = args.data_dir or os.environ.get("LWI_CIFAR10_DIR", "") or os.path.join(
      REPO, config.data.dir)
  if args.epochs:
    config.train.epochs = args.epochs
  if args.train_per_class >= 0:
    config.data.train_per_class = args.train_per_class
  if args.test_per_class >= 0:
    config.data.test_per_class = args.test_per_class
  if args.widths:
    config.model.widths = tuple(int(w) for w in args.widths.split(","))
  if args.dense_width:
    config.model.dense_width = args.dense_width
  if args.batch:
    config.train.batch_size = args.batch
  for item in args.set:
    apply_override(config, item)
  if "torch" in args.frameworks.split(","):
    check_torch_mirrors(config)
  targets = [float(t) for t in args.targets.split(",") if t]
  log = lambda m: print(m, flush=True)  # noqa: E731
  when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} " \
            f"({jax.default_backend()})"
  data = data_lib.load_dataset(config.data)
  log(f"time to accuracy: {machine}; preset {args.preset}, train {len(data.train)}, test "
      f"{len(data.test)}, {config.train.epochs} epochs, batch {config.train.batch_size}, "
      f"widths {tuple(config.model.widths)}; load {os.getloadavg()[0]:.1f}")
  members = []
  for fw in [f for f in args.frameworks.split(",") if f]:
    t0 = time.perf_counter()
    member = (JaxMember(config, data, args.seed) if fw == "jax"
              else TorchMember(config, data, args.threads, args.seed))
    members.append((member, time.perf_counter() - t0))
  rows = {m.name: {"accuracy": [], "seconds": [], "setup_seconds": s, "tpr": None}
          for m, s in members}
  for epoch in range(int(config.train.epochs)):
    for member, _ in members:
      t0 = time.perf_counter()
      member.train_epoch(epoch)  # the first JAX epoch includes compilation (in its seconds)
      seconds = time.perf_counter() - t0
      tpr = member.split_tpr()
      r = rows[member.name]
      r["accuracy"].append(float(np.mean(tpr)))  # balanced test set: accuracy = mean TPR
      r["seconds"].append(seconds)
      r["tpr"] = tpr.tolist()
      val = ""
      if member.name == "jax":  # the split an ablation is chosen on (test only confirms)
        r.setdefault("val_accuracy", []).append(float(np.mean(member.split_tpr("validation"))))
        val = f"val acc {r['val_accuracy'][-1]:.4f}  "
      log(f"  {member.name:5s} epoch {epoch + 1}: {val}test acc {r['accuracy'][-1]:.4f}  "
          f"{seconds:.1f} s  (load {os.getloadavg()[0]:.1f})")
  for member, _ in members:
    r = rows[member.name]
    r["minutes_to"] = minutes_to(targets, r["accuracy"], r["seconds"])
    per_step = [s / member.steps_per_epoch for s in r["seconds"][1:] or r["seconds"]]
    r["seconds_per_step_median"] = statistics.median(per_step)
    r["seconds_per_step_min"] = min(per_step)
  ratio = ratio_min = None
  if "jax" in rows and "torch" in rows:
    ratio = rows["jax"]["seconds_per_step_median"] / rows["torch"]["seconds_per_step_median"]
    ratio_min = rows["jax"]["seconds_per_step_min"] / rows["torch"]["seconds_per_step_min"]
  lines = [f"# Time to accuracy, CIFAR-10 ({when})", "",
           f"{machine}; PyTorch threads {args.threads}; preset `{args.preset}`, "
           f"{len(data.train)} train / {len(data.test)} test, {config.train.epochs} epochs, "
           f"seed {args.seed}; "
           "training seconds exclude evaluation; the first JAX epoch includes compilation."
           + (f" Overrides: {', '.join(args.set)}." if args.set else ""), "",
           "| framework | " + " | ".join(f"min to {t:.0%}" for t in targets)
           + " | final val acc | final test acc | s/step (median) | s/step (min) | train s total |",
           "|---|" + "---:|" * (len(targets) + 5)]
  for name, r in rows.items():
    cells = [("-" if r["minutes_to"][f"{t:g}"] is None else f"{r['minutes_to'][f'{t:g}']:.1f}")
             for t in targets]
    val = f"{r['val_accuracy'][-1]:.4f}" if r.get("val_accuracy") else "-"
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {val} | {r['accuracy'][-1]:.4f} | "
                 f"{r['seconds_per_step_median']:.3f} | {r['seconds_per_step_min']:.3f} | "
                 f"{sum(r['seconds']):.0f} |")
  if ratio is not None:
    lines += ["", f"JAX / PyTorch seconds per step over epochs 2+: median {ratio:.2f}x, "
              f"minimum {ratio_min:.2f}x"]
  lines += ["", "| epoch | " + " | ".join(f"{n} acc | {n} s" for n in rows) + " |",
            "|---:|" + "---:|---:|" * len(rows)]
  for e in range(int(config.train.epochs)):
    lines.append(f"| {e + 1} | " + " | ".join(
        f"{r['accuracy'][e]:.4f} | {r['seconds'][e]:.1f}" for r in rows.values()) + " |")
  names = data.class_names
  lines += ["", "Final per-class test TPR:", "",
            "| framework | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
  for name, r in rows.items():
    lines.append(f"| {name} | " + " | ".join(f"{100 * x:.1f}" for x in r["tpr"]) + " |")
  text = "\n".join(lines)
  out = {"when": when, "machine": machine, "args": vars(args), "config": config.to_dict(),
         "rows": rows,
         "jax_over_torch_per_step": ratio, "jax_over_torch_per_step_min": ratio_min,
         "class_names": list(names)}
  os.makedirs(args.out_dir, exist_ok=True)
  stem = os.path.join(args.out_dir, "time_to_accuracy-" + when.replace(" ", "_").replace(":", ""))
  io_utils.atomic_write_text(stem + ".md", text + "\n")
  io_utils.atomic_write_text(stem + ".json", json.dumps(out, indent=1))
  print("\n" + text + f"\n\nwrote {stem}.md and {stem}.json")
  return out


if __name__ == "__main__":
  main()
