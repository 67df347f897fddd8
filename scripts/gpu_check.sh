#!/usr/bin/env bash
# pycnn's GPU check, one command for a fresh GPU machine that has torch
# (with CUDA), nvcc, pybind11, ninja and pytest but no network:
#   1. builds pycnn in place against the installed torch (no installs);
#   2. runs the CUDA tests (tests/test_cuda.py, tests/test_cuda_fast.py);
#   3. on a test failure, reruns the first failing test under
#      compute-sanitizer (memcheck), if there is one, for the log;
#   4. benchmarks every op against torch (cuDNN) at ResNet/VGG layer shapes
#      (scripts/gpu_bench.py), then `pycnn bench --device cuda` in the
#      configurations of the GPU-speed targets (scripts/gpu_suite.py), and
#      prints both tables last; in between, scripts/gpu_profile.py splits
#      the convolutions' time by tile and kernel (GPU_CHECK_PROFILE=0: skip);
#      optional: GPU_CHECK_NCU=1 profiles VGG conv3_2 and ResNet layer1 forwards under
#      Nsight Compute (scripts/gpu_ncu.py), GPU_CHECK_MMA_PEAK=1 measures
#      the tensor cores' ceiling through mma.sync (scripts/mma_sync_peak.cu).
# Each stage has a time limit within an overall budget (GPU_CHECK_BUDGET_S,
# default 470 s), so the whole run ends within 8 minutes.  The full log
# (build with ptxas's resource report, every test, the benchmark) goes to
# $OUT/gpu_check.log when OUT is set, else build/gpu_check.log; the
# benchmarks' rows also go to gpu_bench.json and gpu_suite.json beside it.  Safe to run again:
# the build is incremental, and a build made against another torch is
# discarded first.  Exit status: 1 if the build or a test failed, 2 if no
# GPU was visible (the build was still checked), else 0.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
LOG_DIR=${OUT:-build}
mkdir -p "$LOG_DIR" build
LOG=$LOG_DIR/gpu_check.log
: >"$LOG"
DEADLINE=$((SECONDS + ${GPU_CHECK_BUDGET_S:-470}))

export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export PYCNN_CUDA=1
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

say() { echo "$*" | tee -a "$LOG"; }
stage() { say ""; say "=== $* [$(date +%T), ${SECONDS}s]"; }
# Seconds a stage may take: its cap, less what the later stages need, but
# at least its floor (default 10 s).
limit() {
  local cap=$1 reserve=$2 floor=${3:-10} left=$((DEADLINE - SECONDS - $2))
  ((left < cap)) && cap=$left
  ((cap < floor)) && cap=$floor
  echo "$cap"
}

stage "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
  "$CUDA_HOME/bin/nvcc" --version | tail -2
  $PY -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| cuda', torch.version.cuda, '| gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
} 2>&1 | tee -a "$LOG"

# A build made against another torch or python (a copied tree) is not reused.
stamp=build/gpu_check.stamp
want=$($PY -c "import torch, sys; print(torch.__version__, sys.version.split()[0])" 2>/dev/null)
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  rm -rf build/temp build/lib.* pycnn/_C*.so
fi

stage "build (nvcc for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST, $MAX_JOBS jobs)"
start=$SECONDS
PYCNN_PTXAS_VERBOSE=1 timeout "$(limit 300 150)" $PY setup.py build_ext --inplace >>"$LOG" 2>&1
build_rc=$?
if ((build_rc != 0)); then
  say "build FAILED (exit $build_rc); the end of its output:"
  grep -E "error|Error" "$LOG" | head -30
  tail -25 "$LOG"
  exit 1
fi
echo "$want" >"$stamp"
say "build ok in $((SECONDS - start))s"
say "ptxas: $(grep -c 'Compiling entry function' "$LOG") kernels compiled this run;" \
  "$(grep -E 'bytes spill (stores|loads)' "$LOG" | grep -vc ' 0 bytes spill stores, 0 bytes spill loads') with spills"

stage "CUDA tests"
tests_out=build/gpu_check_tests.txt
# Several pytest workers keep the GPU busy between the small launches; the
# 64-bit tests (marked slow, about 24 GiB each) run alone afterwards.
parallel=()
$PY -c "import xdist" 2>/dev/null && parallel=(-n "${GPU_CHECK_WORKERS:-6}")
# The tests come first: at least 60 s, whatever the later stages lose.
timeout "$(limit 200 150 60)" $PY -m pytest -q -rfE -p no:cacheprovider "${parallel[@]}" -m "not slow" \
  tests/test_cuda.py tests/test_cuda_fast.py >"$tests_out" 2>&1
test_rc=$?
timeout "$(limit 60 130)" $PY -m pytest -q -rfE -p no:cacheprovider -m slow tests/test_cuda.py \
  >>"$tests_out" 2>&1
slow_rc=$?
((test_rc == 0)) && test_rc=$slow_rc
cat "$tests_out" >>"$LOG"
grep -E "^(FAILED|ERROR)" "$tests_out" | head -40
test_summary=$(grep -E "(passed|failed|error)" "$tests_out" | grep -E " in [0-9.]+s" | tr '\n' ';')
((test_rc == 124)) && test_summary="TIMED OUT: $test_summary"
say "tests: $test_summary"

first_failed=$(grep -m1 -E "^FAILED " "$tests_out" | sed -E 's/^FAILED ([^ ]+).*/\1/')
if [[ -n $first_failed ]] && command -v compute-sanitizer >/dev/null; then
  stage "compute-sanitizer memcheck on $first_failed"
  timeout "$(limit 60 80)" compute-sanitizer --tool memcheck --print-limit 20 \
    $PY -m pytest -q -x -p no:cacheprovider "$first_failed" >>"$LOG" 2>&1
  grep -E "Invalid|ERROR SUMMARY|out of bounds|Address" "$LOG" | tail -12
fi

stage "benchmark: every op at ResNet/VGG shapes (scripts/gpu_bench.py)"
bench_out=build/gpu_check_bench.txt
bench_limit=$(limit 60 110)
timeout "$bench_limit" $PY scripts/gpu_bench.py --budget-s $((bench_limit - 15)) \
  --json "$LOG_DIR/gpu_bench.json" >"$bench_out" 2>&1
bench_rc=$?
cat "$bench_out" >>"$LOG"

if [[ ${GPU_CHECK_PROFILE:-1} == 1 ]]; then
  stage "profile: conv time by tile and kernel (scripts/gpu_profile.py)"
  profile_limit=$(limit 90 100)
  timeout "$profile_limit" $PY scripts/gpu_profile.py --budget-s $((profile_limit - 20)) \
    >"$LOG_DIR/gpu_profile.txt" 2>&1
  cat "$LOG_DIR/gpu_profile.txt" >>"$LOG"
fi

# Nsight Compute's view of the tensor-core and FFMA tiles (GPU_CHECK_NCU=1; about 40 s).
NCU_METRICS="sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
  sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active
  l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum
  l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
  smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio
  smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio
  smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio
  smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio
  smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio
  smsp__average_warps_issue_stalled_wait_per_issue_active.ratio
  smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio
  smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio
  smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio"
if [[ ${GPU_CHECK_NCU:-0} == 1 ]] && command -v ncu >/dev/null; then
  stage "ncu: VGG-16 conv3_2 forward (f16, TF32) and ResNet layer1 (FFMA) (scripts/gpu_ncu.py)"
  timeout "$(limit 60 100)" ncu --clock-control none --kernel-name regex:igemm \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats \
    --section MemoryWorkloadAnalysis_Tables --section Occupancy --section LaunchStats \
    --metrics "$(tr -s ' \n' ',' <<<"$NCU_METRICS" | sed 's/^,//; s/,$//')" \
    $PY scripts/gpu_ncu.py >"$LOG_DIR/gpu_ncu.txt" 2>&1
  grep -E "igemm_kernel|pct_of_peak|stalled|bank_conflicts|wavefronts|Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Executed Ipc A|Bank Conflicts|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued" \
    "$LOG_DIR/gpu_ncu.txt" | cut -c1-160 | head -80 >>"$LOG"
fi

# The tensor cores' ceiling through mma.sync (GPU_CHECK_MMA_PEAK=1; about 15 s).
if [[ ${GPU_CHECK_MMA_PEAK:-0} == 1 ]]; then
  stage "mma.sync ceiling (scripts/mma_sync_peak.cu)"
  "$CUDA_HOME/bin/nvcc" -O3 -gencode=arch=compute_90a,code=sm_90a -o build/mma_sync_peak \
    scripts/mma_sync_peak.cu >>"$LOG" 2>&1 &&
    timeout "$(limit 30 100)" build/mma_sync_peak 2>&1 | tee "$LOG_DIR/mma_sync_peak.txt" >>"$LOG"
fi

stage "benchmark suite: python -m pycnn bench --device cuda configurations (scripts/gpu_suite.py)"
suite_out=build/gpu_check_suite.txt
suite_limit=$(limit 400 5)
timeout "$suite_limit" $PY scripts/gpu_suite.py --budget-s $((suite_limit - 40)) \
  --json "$LOG_DIR/gpu_suite.json" >"$suite_out" 2>&1
suite_rc=$?
cat "$suite_out" >>"$LOG"

say ""
gpu=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null)
[[ $gpu == 1 ]] || say "NO GPU VISIBLE: the CUDA tests were skipped and nothing was measured"
say "=== done in ${SECONDS}s: build ok; tests: $test_summary; benchmark exit $bench_rc, suite exit $suite_rc; full log $LOG"
# The tables, last.
if ((bench_rc == 0)); then sed -n '/^pycnn vs torch on/,$p' "$bench_out"; else tail -8 "$bench_out"; fi
if ((suite_rc == 0)); then sed -n '/^==== pycnn vs torch/,$p' "$suite_out"; else tail -25 "$suite_out"; fi
((test_rc == 0)) || exit 1
[[ $gpu == 1 ]] || exit 2
