#!/usr/bin/env bash
# GPU readiness check, one prepared script (~25 min on one H200, measured 2026-12-04 in parts:
# tests 81 s, bench 56 s (vmap only), the f32 study ~11 min, the bf16 study ~5 min; BUILD_NOTES.md):
#   1. the tests of the `xla` convolution path (what `model.conv_impl="auto"` picks on GPU/TPU)
#      and of mixed precision;
#   2. the speed benchmark (CNN and ConvLSTM at K = 1, 8, vmap and sequential: on the H200 the
#      vmapped CNN cost 1.39x a lone member per member; FLOP/s against the device's own matmul);
#   3. the full-preset CIFAR-10 study (configs/cifar.py: 11 rules x 3 seeds + 3 baselines,
#      16 epochs, conv_groups 64/256/256), float32 and then bfloat16 mixed precision, each timed
#      (the study times above were measured with the residual CNN 64/128/256, 0.81x its FLOPs).
# Everything goes to ONE folder: env.txt, timings.txt, tests.log, bench.md/.json, study logs
# and workdirs (results.json, report.md, plots). A part that runs out of its time budget is
# stopped and marked TIMEOUT in timings.txt; rerunning the script resumes the study from its
# checkpoints.
#
#   bash bench/gpu_check.sh [OUT_DIR] [CIFAR10_DIR]
#   (defaults: gpu_check-<date>, $LWI_CIFAR10_DIR or ../shared/data/cifar10/cifar-10-batches-py)
# Budgets (seconds) can be changed with TESTS_S, BENCH_S, STUDY_S, STUDY_BF16_S; a budget of 0
# skips its part (recorded as skipped), e.g. to run the tests and the benchmark apart from the
# studies on a machine lent for minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check-$(date -u +%Y%m%d-%H%M)}"
CIFAR="${2:-${LWI_CIFAR10_DIR:-../shared/data/cifar10/cifar-10-batches-py}}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export LWI_CIFAR10_DIR="$CIFAR"
TIMINGS="$OUT/timings.txt"
: > "$TIMINGS"

part() {  # part NAME BUDGET_S LOG COMMAND...: runs, times, records status
  local name="$1" budget="$2" log="$3"
  shift 3
  if [ "$budget" -eq 0 ]; then
    printf '%-28s %6s   %s\n' "$name" "-" "skipped (budget 0)" | tee -a "$TIMINGS"
    return
  fi
  local t0=$(date +%s)
  timeout "$budget" "$@" > "$log" 2>&1
  local rc=$? t1=$(date +%s)
  local status="ok"
  [ $rc -eq 124 ] && status="TIMEOUT after ${budget}s"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="FAILED (exit $rc)"
  printf '%-28s %6ds  %s\n' "$name" $((t1 - t0)) "$status" | tee -a "$TIMINGS"
}

{
  date -u
  nvidia-smi 2>/dev/null || echo "nvidia-smi: not available"
  "$PY" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__); print(jax.devices())"
  "$PY" -c "import lwi_jax.models as m; print('conv_impl auto ->', m.resolve_conv_impl('auto'))"
  echo "CIFAR-10: $CIFAR"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. The xla conv path and mixed precision (tests that parametrize over conv impls run all of
#    them; on a GPU 'xla' is the production path).
part "tests (xla path, bf16)" "${TESTS_S:-90}" "$OUT/tests.log" \
  "$PY" -m pytest -q -p no:xdist tests/test_fast_paths.py tests/test_train.py \
  tests/test_recipe.py -k "xla or bfloat16 or eval_flip or bn_settings or conv_impl"

# 2. The benchmark: CNN (the auto impl at K = 1, 8, vmap and sequential) and ConvLSTM.
part "bench.run" "${BENCH_S:-150}" "$OUT/bench.log" \
  "$PY" -m bench.run --ks 1,8 --strategies vmap,sequential --cnn_ref_impls "" --no_torch \
  --rounds 3 --cnn_steps 50 --lstm_steps 50 --out_dir "$OUT"

# 3. The full-preset study, float32, then bfloat16 mixed precision.
part "study full f32" "${STUDY_S:-1200}" "$OUT/study_f32.log" \
  "$PY" launch.py --config=configs/cifar.py --config.data.dir="$CIFAR" \
  --config.workdir="$OUT/cifar_full_f32"
part "study full bf16" "${STUDY_BF16_S:-600}" "$OUT/study_bf16.log" \
  "$PY" launch.py --config=configs/cifar.py --config.data.dir="$CIFAR" \
  --config.model.compute_dtype=bfloat16 --config.workdir="$OUT/cifar_full_bf16"

echo "everything is in $OUT"
cat "$TIMINGS"
