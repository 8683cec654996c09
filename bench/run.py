"""Speed benchmark: every number measured side by side in ONE process and reported as ratios.

  python -m bench.run                    # CNN + ConvLSTM, K = 1, 2, 4, 8, vmap + sequential,
                                         # PyTorch reference, matmul peak (~25-40 min, 2 cores)
  python -m bench.run --e2e              # + the names study end to end, ensemble vs member by
                                         #   member (adds about an hour on 2 cores)
  python -m bench.run --quick            # smoke run: tiny sizes, seconds per case, not a result

Cases are measured in interleaved rounds (every case once per round, `--rounds` rounds), so load
from other processes hits all cases alike; the table reports the best round (min) and the median.
Writes <out_dir>/bench-<time>.json and .md and prints the markdown. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from bench import flops as flops_lib  # noqa: E402
from lwi_jax import member  # noqa: E402
from lwi_jax import models as models_lib  # noqa: E402
from lwi_jax import optim  # noqa: E402
from lwi_jax.parallel import ensemble  # noqa: E402
from lwi_jax.parallel import programs  # noqa: E402

NUM_CLASSES_CNN = 10


def main_impls() -> tuple:
  """The CNN implementation a study uses on this backend ('auto': 'cpu' on CPU, 'xla' on
  GPU/TPU), measured at every K and strategy, and the ConvLSTM's '-'."""
  return (models_lib.resolve_conv_impl("auto"), "-")


def load_config(name: str, preset: str | None = None):
  path = os.path.join(REPO, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"bench_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*([preset] if preset else []))


# ------------------------------------------------------------------------------------ cases


@dataclasses.dataclass
class Case:
  """One measured thing: `run()` does `steps` optimizer steps of `members` members."""

  group: str  # "jax", "torch", "peak"
  model: str
  impl: str
  strategy: str
  members: int
  steps: int
  run: Callable[[], None]
  flops_per_call: float = 0.0
  compile_seconds: float = float("nan")
  wall: list = dataclasses.field(default_factory=list)
  cpu: list = dataclasses.field(default_factory=list)

  @property
  def key(self) -> str:
    return f"{self.group}/{self.model}/{self.impl}/{self.strategy}/K={self.members}"

  def per_member_step(self, stat=min) -> float:
    return stat(self.wall) / (self.steps * self.members)


def _block(tree):
  jax.block_until_ready(tree)


def _model_and_data(model_name: str, args, steps: int):
  """(model, inputs [S*B, ...], labels [S*B], num_classes, flops per step per member)."""
  rng = np.random.default_rng(0)
  n = steps * args.batch
  if model_name == "cnn":
    widths = tuple(args.cnn_widths)
    x = rng.integers(0, 256, (n, args.image, args.image, 3), dtype=np.uint8)
    y = rng.integers(0, NUM_CLASSES_CNN, n).astype(np.int32)
    flops = flops_lib.cnn_step_flops(args.batch, args.image, widths, args.cnn_dense,
                                     NUM_CLASSES_CNN)
    return None, x, y, NUM_CLASSES_CNN, flops, dict(widths=widths, dense=args.cnn_dense)
  if model_name == "conv_lstm":
    from lwi_jax.data import text_encoding  # noqa: PLC0415
    cfg = load_config("names")
    length = int(cfg.data.max_len) or 19  # 0 = from the data: 19 for the names (BUILD_NOTES)
    info = text_encoding.encoding_info(length)
    classes = len(cfg.data.countries)
    model = models_lib.create_model(cfg.model, classes, info)
    lengths = rng.integers(3, length + 1, n)
    ids = rng.integers(1, info["vocab_size"], (n, length)).astype(np.int32)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = 0
    y = rng.integers(0, classes, n).astype(np.int32)
    m = cfg.model
    flops = flops_lib.conv_lstm_step_flops(args.batch, length, info["vocab_size"], m.embed_dim,
                                           tuple(m.conv_features), m.kernel_size, m.lstm_hidden,
                                           classes)
    return model, ids, y, classes, flops, dict(cfg=m, info=info)
  raise ValueError(f"unknown bench model {model_name!r}")


def _cnn(args, impl: str):
  from lwi_jax.models.resnet_cnn import ResidualCNN  # noqa: PLC0415
  return ResidualCNN(NUM_CLASSES_CNN, widths=tuple(args.cnn_widths), dense_width=args.cnn_dense,
                     dropout_rate=0.5, conv_impl=impl)


def _compiler_options(model_name: str, impl: str) -> tuple:
  """What a study compiles the model with: programs.compiler_options of its model config (the
  CNN's CPU path gets its options on CPU; the CNN's reference implementations and the ConvLSTM,
  whose `impl` is '-', run as plain programs)."""
  if model_name != "cnn":
    return programs.compiler_options(load_config("names").model)
  return programs.compiler_options(
      ml_collections.ConfigDict({"name": "resnet_cnn", "conv_impl": impl}))


def jax_case(model_name: str, model, impl: str, strategy: str, k: int, x, y, classes, steps,
             flops, args) -> Case:
  """The production path: programs.ensemble_train_epoch_fn (a lax.scan over `steps` batches)."""
  tx = optim.make_optimizer(load_config("cifar").optimizer, steps, 1)
  states = programs.init_ensemble(model, tx, jnp.asarray(x[:1]), list(range(k)))
  rng = np.random.default_rng(k)
  hparams = ensemble.stack([member.MemberHParams.create(rng.uniform(0.5, 2.0, classes))
                            for _ in range(k)])
  keys = programs.ensemble_epoch_keys(list(range(k)), 0)
  xs, ys = jax.device_put(x), jax.device_put(y)
  name, _, chunk = strategy.partition(":")  # e.g. "unrolled:2" = 2 members in flight
  fn = programs.ensemble_train_epoch_fn(args.batch, "none", name, int(chunk or 0), None,
                                     _compiler_options(model_name, impl))
  t0 = time.perf_counter()
  compiled = fn.lower(states, hparams, keys, jnp.int32(0), xs, ys).compile()
  compile_s = time.perf_counter() - t0
  box = {"states": states, "hparams": hparams}

  def run():
    box["states"], box["hparams"], m = compiled(box["states"], box["hparams"], keys,
                                                jnp.int32(0), xs, ys)
    _block(m)

  run()  # first execution (allocations, thread pool warm-up) is not measured
  return Case("jax", model_name, impl, strategy, k, steps, run, flops * steps * k, compile_s)


def torch_case(model_name: str, x, y, classes, steps, flops, extra, args, threads: int) -> Case:
  from bench import torch_reference as tr  # noqa: PLC0415
  if model_name == "cnn":
    net = tr.TorchResidualCNN(classes, extra["widths"], extra["dense"], 0.5, args.image)
  else:
    m = extra["cfg"]
    net = tr.TorchConvLSTM(classes, extra["info"]["vocab_size"], m.embed_dim,
                           tuple(m.conv_features), m.kernel_size, m.lstm_hidden, m.dropout_rate)
  shape = (steps, args.batch) + x.shape[1:]
  trainer = tr.TorchTrainer(net, x.reshape(shape), y.reshape(steps, args.batch),
                            np.random.default_rng(1).uniform(0.5, 2.0, classes),
                            image=model_name == "cnn", threads=threads)
  trainer.run()
  import torch  # noqa: PLC0415
  return Case("torch", model_name, f"torch {torch.__version__}", f"{threads} threads", 1, steps,
              trainer.run, flops * steps)


def peak_cases(args) -> list[Case]:
  n = args.peak_size
  a = jnp.asarray(np.random.default_rng(2).normal(size=(n, n)), jnp.float32)
  dot = jax.jit(jnp.dot)
  t0 = time.perf_counter()
  compiled = dot.lower(a, a).compile()
  compile_s = time.perf_counter() - t0
  compiled(a, a).block_until_ready()
  cases = [Case("peak", f"jnp.dot f32 {n}^3", "xla", "-", 1, 1,
                lambda: compiled(a, a).block_until_ready(), 2.0 * n ** 3, compile_s)]
  if args.torch:
    import torch  # noqa: PLC0415
    ta = torch.from_numpy(np.asarray(a))
    cases.append(Case("peak", f"torch.mm f32 {n}^3", "torch", "-", 1, 1,
                      lambda: torch.mm(ta, ta), 2.0 * n ** 3))
  return cases


def numerics_check(args) -> dict:
  """The CPU path (with its compiler options) vs lax.conv + autodiff: one weighted-loss
  gradient of the benchmarked CNN."""
  from lwi_jax import losses  # noqa: PLC0415
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.integers(0, 256, (min(args.batch, 32), args.image, args.image, 3),
                               dtype=np.uint8))
  y = jnp.asarray(rng.integers(0, NUM_CLASSES_CNN, x.shape[0]).astype(np.int32))
  w = jnp.asarray(rng.uniform(0.5, 2.0, NUM_CLASSES_CNN), jnp.float32)
  base = _cnn(args, "xla")
  variables = programs.jit_init(base.init, static_argnames="train")(jax.random.key(0), x[:1],
                                                                      train=False)

  def grads(impl):
    model = _cnn(args, impl)

    def loss(p):
      logits, _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x,
                              train=True, rngs={"dropout": jax.random.key(1)},
                              mutable=["batch_stats"])
      return losses.weighted_cross_entropy(logits, y, w)

    opts = dict(_compiler_options("cnn", impl)) or None
    return jax.jit(jax.value_and_grad(loss), compiler_options=opts)(variables["params"])

  ref = grads("xla")
  scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(ref))
  out = {}
  for impl in ("cpu",):
    got = grads(impl)
    # relative to the largest gradient: the conv biases' gradients are exactly 0 in theory
    # (BatchNorm follows) and round-off (~1e-9) in lax.conv + autodiff
    out[impl] = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                    zip(jax.tree.leaves(got), jax.tree.leaves(ref))) / scale
  return out


def measure(cases: list[Case], rounds: int, log) -> None:
  for r in range(rounds):
    for c in cases:
      w0, c0 = time.perf_counter(), time.process_time()
      c.run()
      c.wall.append(time.perf_counter() - w0)
      c.cpu.append(time.process_time() - c0)
    log(f"  round {r + 1}/{rounds} done")


# ----------------------------------------------------------------------------- end to end


def e2e_names(args, log) -> dict:
  """The names study (baseline + rules x seeds) as ONE ensemble vs member by member.

  Both use study_lib.Study with the same data object and the same Trainer code; the only
  difference is Trainer.fit: one call with all E members, or E calls with one member each
  (one compiled program reused). Checkpoints and TensorBoard are off in both.
  """
  from lwi_jax import data as data_lib  # noqa: PLC0415
  from lwi_jax.study import study as study_lib  # noqa: PLC0415
  from lwi_jax.study import trainer as trainer_lib  # noqa: PLC0415

  config = load_config("names")
  if args.e2e_rules:
    config.rules = tuple(r.strip() for r in args.e2e_rules.split(";") if r.strip())
  if args.e2e_seeds:
    config.seeds = tuple(int(s) for s in args.e2e_seeds.split(","))
  if args.e2e_epochs:
    config.train.epochs = args.e2e_epochs
  if args.e2e_per_class:
    config.data.per_class = args.e2e_per_class
  if len(config.seeds) < 2 and "compare" in config:
    config.compare.test = "none"
  quiet = lambda msg: log("    | " + msg) if msg.startswith("[") else None  # noqa: E731
  # One-time imports / helpers both modes need, so neither pays them inside its timing.
  from lwi_jax.report import markdown, plots  # noqa: F401,PLC0415
  import matplotlib.pyplot  # noqa: F401,PLC0415

  class Ensemble(trainer_lib.Trainer):

    def fit(self, phase, labels, seeds, hparams, *unused, **unused_kw):
      return super().fit(phase, labels, seeds, hparams)

  class MemberByMember(trainer_lib.Trainer):

    def fit(self, phase, labels, seeds, hparams, *unused, **unused_kw):
      parts = [super(MemberByMember, self).fit(phase, labels[i:i + 1], seeds[i:i + 1],
                                               jax.tree.map(lambda a, i=i: a[i:i + 1], hparams))
               for i in range(len(seeds))]
      states = jax.tree.map(lambda *a: jnp.concatenate(a), *[p[0] for p in parts])
      hp = jax.tree.map(lambda *a: jnp.concatenate(a), *[p[1] for p in parts])
      history = {k: np.concatenate([np.asarray(p[2][k]) for p in parts]) for k in parts[0][2]}
      return states, hp, history

  t0 = time.perf_counter()
  data = data_lib.load_dataset(config.data)
  load_s = time.perf_counter() - t0
  n_members = len(config.rules) * len(config.seeds)
  log(f"  e2e: names data loaded in {load_s:.0f}s (train {len(data.train)}); "
      f"{len(config.seeds)} baseline + {n_members} members, {config.train.epochs} epochs")
  out = {"rules": list(config.rules), "seeds": list(config.seeds),
         "epochs": int(config.train.epochs), "train_examples": len(data.train),
         "members": n_members, "baseline_members": len(config.seeds)}
  results = {}
  for mode, cls in (("ensemble", Ensemble), ("member_by_member", MemberByMember)):
    cfg = config.copy_and_resolve_references()
    # The timed study writes checkpoints and outputs; only its returned numbers are kept.
    with tempfile.TemporaryDirectory(prefix=f"bench_e2e_{mode}_") as workdir:
      cfg.workdir = workdir
      study = study_lib.Study(cfg, quiet)
      study._data = data  # pylint: disable=protected-access
      study._trainer = cls(cfg, data, quiet)  # pylint: disable=protected-access
      log(f"  e2e: {mode} ...")
      t0 = time.perf_counter()
      results[mode] = study.run()
      out[f"{mode}_seconds"] = time.perf_counter() - t0
    log(f"  e2e: {mode} {out[f'{mode}_seconds']:.0f}s")
  out["speedup"] = out["member_by_member_seconds"] / out["ensemble_seconds"]
  try:  # same members, same numbers (up to float round-off)?
    def acc(r):
      members = list(r["baseline"]) + [m for rnd in r["rounds"] for m in rnd]
      return np.array([float(m["test"]["accuracy"]) for m in members])
    out["max_abs_test_accuracy_difference"] = float(np.max(np.abs(
        acc(results["ensemble"]) - acc(results["member_by_member"]))))
  except (KeyError, TypeError, ValueError):
    pass
  return out


# ----------------------------------------------------------------------------------- report


def _fmt(x, spec=".3f"):
  return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def report(cases: list[Case], extra: dict, args) -> tuple[str, dict]:
  jax_cases = [c for c in cases if c.group == "jax"]
  torch_cases = {(c.model, c.strategy): c for c in cases if c.group == "torch"}
  peak = {c.impl: c for c in cases if c.group == "peak"}
  peak_flops = max((c.flops_per_call / min(c.wall) for c in peak.values()), default=float("nan"))
  base = {(c.model, c.impl, c.strategy): c for c in jax_cases if c.members == min(args.ks)}
  lines = []
  add = lines.append
  add(f"# lwi-jax speed benchmark ({extra['when']})\n")
  add(f"{extra['machine']}; jax {jax.__version__} ({jax.default_backend()}), "
      f"{args.threads} threads for PyTorch; batch {args.batch}; {args.rounds} interleaved rounds "
      f"(min = best round, med = median); steps per measured call: CNN {args.cnn_steps} "
      f"(reference impls {min(args.ref_steps, args.cnn_steps)}), ConvLSTM {args.lstm_steps}." + (" **QUICK SMOKE RUN: sizes are not the real ones.**"
                                         if args.quick else "") + "\n")
  add("## 1. Seconds per training step per member\n")
  add("| model | conv impl | strategy | K | s/step/member (min) | med | vs K=1 (min) | vs K=1 "
      "(med) | compile s |")
  add("|---|---|---|---:|---:|---:|---:|---:|---:|")
  rows = []
  for c in jax_cases:
    b = base.get((c.model, c.impl, c.strategy))
    r_min = c.per_member_step() / b.per_member_step() if b else float("nan")
    r_med = (c.per_member_step(statistics.median) / b.per_member_step(statistics.median)
             if b else float("nan"))
    rows.append({"model": c.model, "impl": c.impl, "strategy": c.strategy, "K": c.members,
                 "s_per_step_member_min": c.per_member_step(),
                 "s_per_step_member_median": c.per_member_step(statistics.median),
                 "ratio_to_K1_min": r_min, "ratio_to_K1_median": r_med,
                 "compile_seconds": c.compile_seconds,
                 "cpu_seconds_per_step_member_min": min(c.cpu) / (c.steps * c.members),
                 "gflops_per_second": c.flops_per_call / min(c.wall) / 1e9})
    add(f"| {c.model} | {c.impl} | {c.strategy} | {c.members} | {_fmt(rows[-1]['s_per_step_member_min'], '.4f')} | "
        f"{_fmt(rows[-1]['s_per_step_member_median'], '.4f')} | {_fmt(r_min, '.2f')} | "
        f"{_fmt(r_med, '.2f')} | {_fmt(c.compile_seconds, '.1f')} |")
  add("")
  torch_rows = []
  if torch_cases:
    add("## 2. PyTorch reference (same network, batch, weighted loss, Adam, thread count)\n")
    add("| model | torch threads | torch s/step (min) | med | best JAX K=1 s/step (min) | "
        "JAX K=1 / torch | best JAX K=max s/step/member | JAX K=max / torch |")
    add("|---|---|---:|---:|---:|---:|---:|---:|")
    for (model, threads), tc in torch_cases.items():
      best = lambda k: min((c for c in jax_cases if c.model == model and c.members == k  # noqa
                            and c.impl in main_impls()), key=lambda c: c.per_member_step(),
                           default=None)
      j1, j8 = best(1), best(max(args.ks))
      t = tc.per_member_step()
      row = {"model": model, "torch_threads": threads, "torch_s_per_step_min": t,
             "torch_s_per_step_median": tc.per_member_step(statistics.median),
             "jax_k1_s_per_step": j1.per_member_step() if j1 else None,
             "jax_k1_over_torch": j1.per_member_step() / t if j1 else None,
             "jax_kmax_s_per_step_member": j8.per_member_step() if j8 else None,
             "jax_kmax_over_torch": j8.per_member_step() / t if j8 else None}
      torch_rows.append(row)
      add(f"| {model} | {threads} | {_fmt(t, '.4f')} | "
          f"{_fmt(row['torch_s_per_step_median'], '.4f')} | "
          f"{_fmt(row['jax_k1_s_per_step'], '.4f')} | {_fmt(row['jax_k1_over_torch'], '.2f')} | "
          f"{_fmt(row['jax_kmax_s_per_step_member'], '.4f')} | "
          f"{_fmt(row['jax_kmax_over_torch'], '.2f')} |")
    add("")
  add("## 3. End to end: names study, one ensemble vs member by member\n")
  e2e = extra.get("e2e")
  if e2e:
    add("| members (+ baseline) | epochs | ensemble s | member by member s | speedup | "
        "max abs test-acc diff |")
    add("|---:|---:|---:|---:|---:|---:|")
    add(f"| {e2e['members']} (+{e2e['baseline_members']}) | {e2e['epochs']} | "
        f"{e2e['ensemble_seconds']:.0f} | {e2e['member_by_member_seconds']:.0f} | "
        f"{e2e['speedup']:.2f}x | {_fmt(e2e.get('max_abs_test_accuracy_difference'), '.4f')} |")
  else:
    add("not run (pass --e2e).")
  add("")
  add("## 4. Achieved FLOP/s vs the machine's matmul peak (same run)\n")
  add("| what | GFLOP per call | GFLOP/s (best round) | fraction of peak |")
  add("|---|---:|---:|---:|")
  flop_rows = []
  best_per_k = {}
  for c in jax_cases:  # the fastest strategy for each (model, K)
    key = (c.model, c.members)
    if c.impl in main_impls() and (key not in best_per_k or c.per_member_step()
                                      < best_per_k[key].per_member_step()):
      best_per_k[key] = c
  for c in [*peak.values(), *torch_cases.values(), *best_per_k.values()]:
    gf = c.flops_per_call / min(c.wall)
    name = c.model if c.group == "peak" else f"{c.model} {c.impl} {c.strategy} K={c.members}"
    flop_rows.append({"what": name, "gflop_per_call": c.flops_per_call / 1e9,
                      "gflops_per_second": gf / 1e9, "fraction_of_peak": gf / peak_flops})
    add(f"| {name} | {c.flops_per_call / 1e9:.2f} | {gf / 1e9:.1f} | {gf / peak_flops:.2f} |")
  add("")
  if extra.get("numerics"):
    add("Numerics: max relative gradient difference of the benchmarked CNN vs lax.conv + "
        "autodiff: " + ", ".join(f"{k} {v:.1e}" for k, v in extra["numerics"].items()) + ".\n")
  # A member alone that already runs at a fraction f of the matmul peak cannot get cheaper than
  # f x its K=1 cost per member in ANY ensemble on this machine: the floor the goals meet.
  floor = {}
  for (model, k), c in best_per_k.items():
    if k == min(args.ks) and np.isfinite(peak_flops):
      floor[model] = c.flops_per_call / min(c.wall) / peak_flops
  add("## Goals\n")
  add("Floor: the lowest per-member ratio any ensemble could reach here = the K=1 step's "
      "fraction of the matmul peak (section 4); the end-to-end speedup is at most about "
      "1 / that fraction for the ConvLSTM.\n")
  add("| goal | measured | met | bound on this machine (floor of a ratio, ceiling of a speedup) |")
  add("|---|---|---|---|")
  goals = []

  def goal(text, value, ok, shown, bound=None):
    goals.append({"goal": text, "value": value, "met": ok, "floor": bound})
    add(f"| {text} | {shown} | {'yes' if ok else ('no' if ok is not None else '-')} | "
        f"{_fmt(bound, '.2f')} |")

  cnn_torch = [r for r in torch_rows if r["model"] == "cnn" and r["jax_k1_over_torch"]]
  if cnn_torch:  # against the fastest PyTorch configuration measured
    best = min(cnn_torch, key=lambda r: r["torch_s_per_step_min"])
    v = best["jax_k1_over_torch"]
    goal("JAX CNN 1 member no slower than PyTorch", v, v <= 1.0,
         f"{v:.2f}x torch ({best['torch_threads']})")
  kmax = max(args.ks)
  for model, limit in (("conv_lstm", 0.5), ("cnn", 1.0)):
    cands = [r for r in rows if r["model"] == model and r["K"] == kmax
             and r["impl"] in main_impls()]
    if cands:
      v = min(r["ratio_to_K1_min"] for r in cands)
      s = min(cands, key=lambda r: r["ratio_to_K1_min"])["strategy"]
      goal(f"{model}: per-member step at K={kmax} <= {limit}x K=1", v, v <= limit,
           f"{v:.2f}x ({s})", floor.get(model))
  if e2e:
    lstm = floor.get("conv_lstm")
    goal("names study >= 3x faster as one ensemble", e2e["speedup"], e2e["speedup"] >= 3.0,
         f"{e2e['speedup']:.2f}x", 1.0 / lstm if lstm else None)
  comp = [r["compile_seconds"] for r in rows if r["K"] == kmax]
  if comp:
    goal(f"compile time at K={kmax} < 30 s", max(comp), max(comp) < 30.0,
         f"max {max(comp):.1f} s")
  add("")
  data = {"when": extra["when"], "machine": extra["machine"], "args": vars(args),
          "jax_version": jax.__version__, "per_member_steps": rows, "torch": torch_rows,
          "flops": flop_rows, "peak_gflops": peak_flops / 1e9, "e2e": e2e,
          "numerics": extra.get("numerics"), "goals": goals, "floor": floor,
          "raw": {c.key: {"wall": c.wall, "cpu": c.cpu, "steps": c.steps,
                          "members": c.members} for c in cases}}
  return "\n".join(lines), data


# ------------------------------------------------------------------------------------- main


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--models", default="cnn,conv_lstm")
  p.add_argument("--ks", default="1,2,4,8", help="ensemble sizes K")
  p.add_argument("--strategies", default=f"vmap,sequential,unrolled:{os.cpu_count()}",
                 help="ensemble strategies; 'name:chunk' sets train.ensemble_chunk")
  p.add_argument("--cnn_ref_impls", default="matmul,xla",
                 help="CNN conv impls also measured at K=1 as plain one-member programs (the "
                      "cpu one runs at every K and strategy)")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--image", type=int, default=32)
  p.add_argument("--cnn_widths", default="32,64,128")
  p.add_argument("--cnn_dense", type=int, default=256)
  p.add_argument("--cnn_steps", type=int, default=12,
                 help="optimizer steps per measured call (a real epoch is one call of ~390 "
                      "steps; short calls overweight the per-call costs)")
  p.add_argument("--ref_steps", type=int, default=3,
                 help="steps per call of the CNN reference impls (xla: ~26 s a step)")
  p.add_argument("--lstm_steps", type=int, default=20)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--threads", type=int, default=os.cpu_count(),
                 help="PyTorch intra-op threads (XLA:CPU uses every core)")
  p.add_argument("--torch_extra_threads", default="1" if (os.cpu_count() or 1) > 1 else "",
                 help="more PyTorch thread counts to measure too, e.g. '1' (OpenMP's spinning "
                      "makes multi-threaded PyTorch collapse when other processes load the CPU)")
  p.add_argument("--peak_size", type=int, default=2048)
  p.add_argument("--no_torch", dest="torch", action="store_false")
  p.add_argument("--no_numerics", dest="numerics", action="store_false")
  p.add_argument("--e2e", action="store_true", help="also the names study end to end")
  p.add_argument("--e2e_rules", default="", help="';'-separated rules (default: configs/names.py)")
  p.add_argument("--e2e_seeds", default="", help="e.g. 0,1,2 (default: configs/names.py)")
  p.add_argument("--e2e_epochs", type=int, default=0, help="0 = configs/names.py")
  p.add_argument("--e2e_per_class", type=int, default=0, help="0 = configs/names.py")
  p.add_argument("--quick", action="store_true", help="smoke run with tiny sizes")
  p.add_argument("--out_dir", default=os.path.join(REPO, "bench", "results"))
  args = p.parse_args(argv)
  if args.quick:
    args.image, args.cnn_widths, args.cnn_dense = 16, "8,8,16", 32
    args.batch, args.cnn_steps, args.lstm_steps, args.rounds = 16, 2, 2, 2
    args.peak_size = 512
    args.ks = "1,2" if args.ks == "1,2,4,8" else args.ks
    args.e2e_epochs = args.e2e_epochs or 1
    args.e2e_per_class = args.e2e_per_class or 200
  args.models = [m for m in args.models.split(",") if m]
  args.ks = sorted(int(k) for k in str(args.ks).split(","))
  args.strategies = [s for s in args.strategies.split(",") if s]
  args.cnn_ref_impls = [s for s in args.cnn_ref_impls.split(",") if s]
  args.cnn_widths = [int(w) for w in str(args.cnn_widths).split(",")]
  args.torch_threads = [args.threads] + [int(t) for t in args.torch_extra_threads.split(",")
                                         if t and int(t) != args.threads]
  if args.torch:
    try:
      import torch  # noqa: F401,PLC0415
    except ImportError:
      print("torch not installed (pip install -e '.[bench]'); PyTorch rows skipped")
      args.torch = False
  return args


def main(argv=None) -> dict:
  args = parse_args(argv)
  log = lambda m: print(m, flush=True)  # noqa: E731
  when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
             f"{jax.device_count()} {jax.default_backend()} device(s)")
  log(f"bench: {machine}; models {args.models}, K {args.ks}, strategies {args.strategies}")
  cases: list[Case] = []
  for model_name in args.models:
    steps = args.cnn_steps if model_name == "cnn" else args.lstm_steps
    model, x, y, classes, flops, extra = _model_and_data(model_name, args, steps)
    if model_name == "cnn":
      main = main_impls()[0]
      variants = [(main, k, s) for k in args.ks for s in args.strategies]
      # Reference implementations as plain one-member programs ("sequential" = lax.map, no
      # vmap: vmap turns "xla" convolutions into grouped ones, ~100x slower on CPU).
      variants += [(impl, min(args.ks), "sequential") for impl in args.cnn_ref_impls
                   if impl != main]
    else:
      variants = [("-", k, s) for k in args.ks for s in args.strategies]
    for impl, k, strategy in variants:
      m = _cnn(args, impl) if model_name == "cnn" else model
      n = steps if impl in main_impls() else min(args.ref_steps, steps)
      log(f"  compiling {model_name} {impl} {strategy} K={k} ...")
      case = jax_case(model_name, m, impl, strategy, k, x[:n * args.batch], y[:n * args.batch],
                      classes, n, flops, args)
      log(f"    compiled in {case.compile_seconds:.1f}s")
      cases.append(case)
    if args.torch:
      for threads in args.torch_threads:
        cases.append(torch_case(model_name, x, y, classes, steps, flops, extra, args, threads))
  cases += peak_cases(args)
  extra = {"when": when, "machine": machine}
  if args.numerics and "cnn" in args.models:
    extra["numerics"] = numerics_check(args)
  log(f"measuring {len(cases)} cases x {args.rounds} rounds ...")
  measure(cases, args.rounds, log)
  if args.e2e:
    extra["e2e"] = e2e_names(args, log)
  text, data = report(cases, extra, args)
  os.makedirs(args.out_dir, exist_ok=True)
  stem = os.path.join(args.out_dir, "bench-" + when.replace(" ", "_").replace(":", "")
                      + ("-quick" if args.quick else ""))
  with open(stem + ".md", "w") as f:
    f.write(text + "\n")
  with open(stem + ".json", "w") as f:
    json.dump(data, f, indent=1, default=float)
  print("\n" + text)
  print(f"\nwrote {stem}.md and {stem}.json")
  return data


if __name__ == "__main__":
  main()
