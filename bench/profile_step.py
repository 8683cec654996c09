"""Where does a training step's time go? JAX profiler trace of the production step, by op kind.

  python -m bench.profile_step [--model cnn|conv_lstm] [--impl cpu] [--members 1]
                               [--batch 128] [--steps 3] [--top 25]
  python -m bench.profile_step --preset cpu [--steps 4]   # configs/cifar.py:cpu's network and
                                                          # recipe, the study's trainer

Traces `--steps` optimizer steps of programs.ensemble_train_epoch_fn (the code the studies run),
reads the trace back with jax.profiler.ProfileData and sums the XLA:CPU op events by name, then
by kind (the op name without its numeric suffix: "convolution", "ynn_fusion", "dot", ...). The
event times of ops that run concurrently on different threads add up, so the table shows
where CPU time goes (its total can exceed the wall time). The trace directory is kept
(TensorBoard / Perfetto can open it) and printed at the end.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

import jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from bench import run as bench_run  # noqa: E402


def _kind(name: str) -> str:
  """'convolution.3' -> 'convolution', 'add_bitcast_fusion.12' -> 'add_bitcast_fusion'."""
  return re.sub(r"(\.\d+)+$", "", name)


def summarize(trace_dir: str, top: int) -> str:
  paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
  if not paths:
    raise FileNotFoundError(f"no *.xplane.pb under {trace_dir}")
  data = jax.profiler.ProfileData.from_file(max(paths, key=os.path.getmtime))
  by_name, by_kind = collections.Counter(), collections.Counter()
  for plane in data.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      for ev in line.events:
        name = ev.name
        # XLA:CPU thunks/kernels; skip Python/JAX runtime scopes (PjitFunction, ...)
        if not re.match(r"^[a-z_][a-z0-9_\-]*(\.\d+)*$", name):
          continue
        by_name[name] += ev.duration_ns
        by_kind[_kind(name)] += ev.duration_ns
  total = sum(by_kind.values())
  out = ["| op kind | ms | share |", "|---|---:|---:|"]
  for k, ns in by_kind.most_common(top):
    out.append(f"| {k} | {ns / 1e6:.1f} | {ns / total:.1%} |")
  out += ["", "| op | ms | share |", "|---|---:|---:|"]
  for k, ns in by_name.most_common(top):
    out.append(f"| {k} | {ns / 1e6:.1f} | {ns / total:.1%} |")
  return "\n".join(out)


def profile_preset(args) -> None:
  """One traced epoch of at least `--steps` batches of a configs/cifar.py preset (after one untraced
  epoch that compiles): the network, recipe and compiled program a study of that preset runs."""
  from bench import time_to_accuracy  # noqa: PLC0415
  config = bench_run.load_config("cifar", args.preset)
  config.data.dir = args.data_dir or os.environ.get("LWI_CIFAR10_DIR", "") or os.path.join(
      REPO, config.data.dir)
  d = config.data
  per_class = args.steps * config.train.batch_size / 10 / (1 - d.validation_fraction)
  # >= `steps` full batches once validation is carved, and enough validation per class
  d.train_per_class = max(int(per_class) + 2,
                          int(d.min_validation_per_class / d.validation_fraction) + 1)
  d.test_per_class = 10
  data = time_to_accuracy.data_lib.load_dataset(d)
  member = time_to_accuracy.JaxMember(config, data)
  member.train_epoch(0)  # compiles
  steps = member.steps_per_epoch
  _traced(lambda: member.train_epoch(1), args, lambda wall: (
      f"preset {args.preset} ({config.model.name} {tuple(config.model.widths)}), batch "
      f"{config.train.batch_size}: {steps} steps in {wall:.2f} s traced "
      f"({wall / steps:.3f} s/step incl. tracing overhead)"))


def _traced(run, args, header) -> None:
  """run() once under the profiler (the caller has compiled it), then the op-time tables."""
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="lwi_jax_profile_")
  t0 = time.perf_counter()
  with jax.profiler.trace(trace_dir):
    run()
  print(header(time.perf_counter() - t0) + "\n")
  print(summarize(trace_dir, args.top))
  print(f"\ntrace: {trace_dir}")


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default="cnn", choices=["cnn", "conv_lstm"])
  p.add_argument("--impl", default="cpu", help="CNN conv implementation")
  p.add_argument("--members", type=int, default=1)
  p.add_argument("--strategy", default="vmap")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--top", type=int, default=25)
  p.add_argument("--trace_dir", default="")
  p.add_argument("--quick", action="store_true", help="bench.run --quick's tiny model sizes")
  p.add_argument("--preset", default="", help="a configs/cifar.py preset: trace one epoch of "
                 "(at least) --steps batches of its network and recipe through the study's "
                 "trainer (bench.time_to_accuracy's JAX member) instead of bench.run's CNN")
  p.add_argument("--data_dir", default="", help="--preset: default the preset's data.dir (or "
                 "LWI_CIFAR10_DIR)")
  args = p.parse_args(argv)
  if args.preset:
    return profile_preset(args)
  bargs = bench_run.parse_args(["--quick"] if args.quick else [])  # the benchmark's sizes
  bargs.batch = args.batch
  model, x, y, classes, _, _ = bench_run._model_and_data(args.model, bargs, args.steps)  # noqa
  if args.model == "cnn":
    model = bench_run._cnn(bargs, args.impl)  # noqa
  case = bench_run.jax_case(args.model, model, args.impl, args.strategy, args.members, x, y,
                            classes, args.steps, 0.0, bargs)
  case.run()  # warm
  _traced(case.run, args, lambda wall: (
      f"{args.model} {args.impl} {args.strategy} K={args.members} batch {args.batch}: "
      f"{args.steps} steps in {wall:.2f} s traced ({wall / args.steps / args.members:.3f} "
      f"s/step/member incl. tracing overhead)"))


if __name__ == "__main__":
  main()
