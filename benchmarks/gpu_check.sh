#!/usr/bin/env bash
# Every CUDA kernel of scalekit built, tested, sanitized and timed on one GPU,
# in one unattended run of under 8 minutes on an H100/H200 (issue 25).
#
#   benchmarks/gpu_check.sh [--cpu-dry-run] [--only STEP,...] [--skip STEP,...] [--budget SECONDS]
#   benchmarks/gpu_check.sh --fetch-wheels      (on a machine with network: see below)
#   make gpu-check [GPU_CHECK_ARGS="--only tests_cuda,bench_nms"]
#
# Runs from the repository root of a bare GPU machine (torch, torchvision,
# nvcc, ninja, pytest; no network). Steps, most important and fastest first,
# so that a time-out loses the least:
#
#   env            nvidia-smi, torch / torchvision / CUDA / nvcc versions, compute capability
#   build          FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=<this GPU only> setup.py build_ext --inplace
#                  (MAX_JOBS = all cores); the only step whose failure stops the script (exit 1)
#   tests_cuda     pytest -m cuda: every CUDA test, tests/ops/test_cuda_adversarial.py included
#   bench_nms, bench_ps_roi, bench_deform_conv
#                  python -m benchmarks SUITE --device cuda: the CUDA rows, against
#                  torchvision on the same GPU in the same process
#   profile        python -m benchmarks.gpu_profile: torch.profiler over the cases that
#                  missed their targets (time, host syncs and launches per call, the
#                  operators with the most device time), into SUMMARY.md
#   memcheck_nms, memcheck_ps_roi, memcheck_deform_ps_roi_pool, memcheck_deform_conv2d
#                  compute-sanitizer --tool memcheck over each op family's CUDA tests
#                  (hypothesis profile "sanitize": 10 examples a property where a test
#                  does not set its own, as the sanitizer makes every launch slow)
#   racecheck_nms  compute-sanitizer --tool racecheck over the NMS kernels, the only
#                  ones with shared memory (csrc/nms/cuda/*.cu)
#   example_{snip_sniper,rfcn3000,msb_rnn}_{fp32,amp}
#                  a short training run of each example system, throughput in float32
#                  and with --amp
#   tests_rest     the rest of the test suite (pytest -m "not cuda", pytest-xdist if present)
#
# Every step runs under its own `timeout` (and all of them within --budget,
# default 450 s); a failed or timed-out step is recorded and the script goes on.
#
# Output: ${OUT:-runs/gpu_check}/SUMMARY.md (one page: steps, test counts,
# sanitizer summaries, targets, the benchmark table, example throughput),
# summary.json, logs.tar.gz (every step's log). Where OUT is unset the logs are
# also left as files in runs/gpu_check/logs/. Where OUT is set (the device tool,
# which returns only a few files from OUT), the plain logs stay in
# runs/gpu_check_logs/ on the GPU machine and OUT holds only those three files.
# SUMMARY.md and logs.tar.gz are rewritten after every step.
#
# --cpu-dry-run (or GPU_CHECK_DRY_RUN=1): the script's logic on a machine without
# a GPU: the build is stubbed (the installed extension is used), the CUDA tests
# run (and skip), the benchmarks run with --device cuda (no rows), the sanitizer
# steps run their pytest selections without compute-sanitizer, the examples only
# check that the flags used here are in their --help, tests_rest only collects.
#
# Python packages missing on the GPU machine (pycocotools, faster-coco-eval)
# travel as wheels: run `benchmarks/gpu_check.sh --fetch-wheels` where there is
# network (writes .whl/, ignored by git), carry `.whl` to the GPU machine; the
# script installs them into a private folder there before anything else.
#
# Environment: OUT, GPU_CHECK_PYTHON (interpreter; default .venv/bin/python if it
# exists, else python3), GPU_CHECK_BUDGET (seconds, default 450; 1500 for a dry run), GPU_CHECK_JOBS
# (build jobs; default all cores), TORCH_CUDA_ARCH_LIST (default: the visible
# GPU's), GPU_CHECK_WHEEL_PYTHON (Python version of the GPU machine's wheels, 3.12).

set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

DRY=${GPU_CHECK_DRY_RUN:-0}
ONLY=""
SKIP=""
BUDGET=${GPU_CHECK_BUDGET:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --only) ONLY=",$2,"; shift ;;
    --skip) SKIP=",$2,"; shift ;;
    --budget) BUDGET=$2; shift ;;
    --fetch-wheels) FETCH=1 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# 450 s on the GPU; a dry run on a small CPU machine spends most of its time importing torch.
[ -n "$BUDGET" ] || { [ "$DRY" = 1 ] && BUDGET=1500 || BUDGET=450; }

if [ -n "${GPU_CHECK_PYTHON:-}" ]; then PY=$GPU_CHECK_PYTHON
elif [ -x .venv/bin/python ]; then PY=$ROOT/.venv/bin/python
else PY=$(command -v python3)
fi

if [ "${FETCH:-0}" = 1 ]; then
  # The packages the test suite needs that the GPU machine's image lacks.
  set -e
  mkdir -p .whl
  v=${GPU_CHECK_WHEEL_PYTHON:-3.12}
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$v" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl pycocotools faster-coco-eval
  ls -l .whl
  echo "carry .whl to the GPU machine (device tool: carry [\".whl\"]); gpu_check.sh installs it there"
  exit 0
fi

if [ -n "${OUT:-}" ]; then
  OUT_DIR=$OUT
  LOGS=${GPU_CHECK_LOGS:-$ROOT/runs/gpu_check_logs}
else
  OUT_DIR=$ROOT/runs/gpu_check
  LOGS=${GPU_CHECK_LOGS:-$OUT_DIR/logs}
fi
mkdir -p "$OUT_DIR" "$LOGS"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOGS=$(cd "$LOGS" && pwd)
WORK=$LOGS/work   # example runs' output folders and data
: > "$LOGS/steps.tsv"
rm -f "$LOGS"/profile.md "$LOGS"/*.xml "$LOGS"/*.sanitizer.log "$LOGS"/bench-*.json "$LOGS"/example-*.rate.json

# The checkout's scalekit (built in place), also for the example scripts.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PY LOGS WORK DRY ROOT
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
NPROC=$(nproc 2>/dev/null || echo 4)
export NPROC
START=$(date +%s)

# Packages carried as wheels (see --fetch-wheels): into a private folder, first on the path.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1 && [ "$DRY" != 1 ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$LOGS/site" .whl/*.whl > "$LOGS/wheels.log" 2>&1 \
    && export PYTHONPATH="$LOGS/site${PYTHONPATH:+:$PYTHONPATH}"
fi

summarize() {
  "$PY" "$ROOT/benchmarks/_gpu_check.py" "$LOGS" "$OUT_DIR" 2>> "$LOGS/summary-errors.log"
  tar -czf "$OUT_DIR/logs.tar.gz.tmp" -C "$LOGS" --exclude=work --exclude=site . 2>/dev/null \
    && mv "$OUT_DIR/logs.tar.gz.tmp" "$OUT_DIR/logs.tar.gz"
}

selected() {  # whether step $1 is to run (--only / --skip)
  { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]] || [[ "$ONLY" == *",${1%%_*},"* ]]; } &&
    ! { [[ "$SKIP" == *",$1,"* ]] || [[ "$SKIP" == *",${1%%_*},"* ]]; }
}

# run_step NAME CAP FUNCTION [ARGS...]: FUNCTION under `timeout` (CAP seconds at
# most, and never past the budget), its output in LOGS/NAME.log, its outcome in
# LOGS/steps.tsv. Returns the function's exit status (124: timed out).
run_step() {
  local name=$1 cap=$2 fn=$3
  shift 3
  if ! selected "$name"; then
    return 0
  fi
  local left=$((BUDGET - ($(date +%s) - START)))
  local limit=$((cap < left - 5 ? cap : left - 5))
  if [ "$limit" -lt 10 ]; then
    printf '%s\tskipped\t0\tout of budget (%ss left of %ss)\n' "$name" "$left" "$BUDGET" >> "$LOGS/steps.tsv"
    echo "== $name: skipped, out of budget"
    summarize
    return 0
  fi
  echo "== $name (at most ${limit}s) ..."
  local t0=$(date +%s)
  timeout -k 10 "$limit" bash -c "$fn \"\$@\"" _ "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  local status=ok note=""
  if [ -f "$LOGS/$name.note" ]; then note=$(tr '\n\t' '; ' < "$LOGS/$name.note" | sed 's/[; ]*$//'); rm -f "$LOGS/$name.note"; fi
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; note="killed after ${limit}s; $note"
  elif [ $rc -ne 0 ]; then status="failed (rc $rc)"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "$note" >> "$LOGS/steps.tsv"
  echo "   $status in ${dt}s ${note:+($note)}"
  summarize
  return $rc
}

note() { echo "$*" >> "$LOGS/$STEP.note"; }   # a remark for the summary's step table
export -f note

# ----------------------------------------------------------------------------- steps

step_env() {
  export STEP=env
  nvidia-smi || note "nvidia-smi: not found or failed"
  nvcc --version || note "no nvcc"
  compute-sanitizer --version || true
  "$PY" - <<'EOF'
import importlib.util, json, os, platform, subprocess, sys
import torch
info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "mode": "cpu dry run" if os.environ.get("DRY") == "1" else "gpu run"}
try:
    import torchvision
    info["torchvision"] = torchvision.__version__
except ImportError as exc:
    info["torchvision"] = f"missing ({exc})"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, capability=f"{p.major}{p.minor}", sms=p.multi_processor_count,
                memory_gib=round(p.total_memory / 2**30, 1), devices=torch.cuda.device_count())
def out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:
        return f"? ({type(exc).__name__})"
info["driver"] = out(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]) or "?"
info["nvcc"] = (out(["nvcc", "--version"]).splitlines() or ["?"])[-1]
info["compute_sanitizer"] = (out(["compute-sanitizer", "--version"]).splitlines() or ["missing"])[-1]
info["commit"] = out(["git", "rev-parse", "--short", "HEAD"]) or "?"
info["packages"] = {m: importlib.util.find_spec(m) is not None for m in
                    ("pytest", "hypothesis", "xdist", "numpy", "PIL", "pycocotools", "faster_coco_eval", "cv2", "av")}
print(json.dumps(info, indent=1))
with open(os.path.join(os.environ["LOGS"], "env.json"), "w") as f:
    json.dump(info, f, indent=1)
EOF
}

step_build() {
  export STEP=build
  if [ "$DRY" = 1 ]; then
    note "dry run: not built; the installed extension is used"
    echo "would run: FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=<capability> MAX_JOBS=$NPROC $PY setup.py build_ext --inplace"
    "$PY" -c "from scalekit import _ext; assert _ext.has_ops(), _ext._LOAD_ERROR; print('ops loaded; CUDA kernels:', _ext.has_cuda_kernels())"
    return
  fi
  local arch=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}
  # The system's compiler where there is one (GPU_CHECK_CXX / GPU_CHECK_CC choose another).
  # The lent H200 machines set CXX=/opt/gcc/bin/g++, a wrapper that links libstdc++ into the
  # extension: built with it, the first argument error crashed the process (SIGSEGV inside
  # that copy's ostream) instead of raising ValueError; /usr/bin/g++ 13.3 there builds
  # extensions that raise (second GPU run, 2026-12-04).
  local cxx=${GPU_CHECK_CXX:-} cc=${GPU_CHECK_CC:-}
  if [ -z "$cxx$cc" ] && [ -x /usr/bin/g++ ] && [ -x /usr/bin/gcc ]; then cxx=/usr/bin/g++ cc=/usr/bin/gcc; fi
  if [ -n "$cxx" ]; then export CXX=$cxx; fi
  if [ -n "$cc" ]; then export CC=$cc; fi   # nvcc's host compiler (-ccbin) too
  note "TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=${GPU_CHECK_JOBS:-$NPROC} CXX=${CXX:-default} CC=${CC:-default}"
  FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=${GPU_CHECK_JOBS:-$NPROC} \
    "$PY" setup.py build_ext --inplace || return 1
  "$PY" -c "
from scalekit import _ext
assert _ext.has_ops(), _ext._LOAD_ERROR
assert _ext.has_cuda_kernels(), _ext.cuda_load_error() or 'built without CUDA kernels'
print('scalekit._C_stable and scalekit._C_cuda load, with CUDA kernels')" || return 1
  # An argument error raised in each library must reach Python as ValueError (a crash here
  # would crash every later step's error tests): one process per library.
  local probe
  for probe in \
    "torch.ops.scalekit.ps_roi_align(torch.ones(1, 4, 4, 4), torch.tensor([[0., 0, 0, 2, 2]]), 1.0, 2, 2, 2**31, True)" \
    "torch.ops.scalekit.deform_conv2d(*(torch.ones(s, device='cuda') for s in ((1, 1, 0, 4), (1, 1, 3, 3), (1, 18, 0, 4))), None, None, 1, 1, 1, 1, 1, 1, 1, 1)"; do
    "$PY" -c "
import sys, torch, scalekit.ops
try:
    $probe
except ValueError as e:
    print('raises ValueError:', str(e)[:70])
else:
    sys.exit('no error raised')" || { note "an argument error did not raise ValueError (rc $?): see build.log"; return 1; }
  done
}

pytest_args() {  # common options; $1: name of the JUnit file
  echo "-p no:cacheprovider -q -rfE --junitxml=$LOGS/$1.xml"
}

step_tests_cuda() {
  export STEP=tests_cuda
  "$PY" -m pytest tests -m cuda $(pytest_args tests_cuda)
}

# bench SUITE: the suite's CUDA rows. The CUDA-only tables (the suite's
# cuda_rows(), last in its run) are what issue 25's targets are read from: if
# an earlier row stops the suite (an assertion that results differ, say),
# they are measured again on their own.
step_bench() {
  export STEP=bench_$1
  local quick=()
  [ "$DRY" = 1 ] && quick=(--quick)
  "$PY" -m benchmarks "$1" "${quick[@]}" --device cuda --json "$LOGS/bench-$1.json" && return 0
  local rc=$?
  note "the suite stopped (rc $rc); its CUDA-only tables measured on their own"
  "$PY" -c "
import sys
from benchmarks import _common, $1 as suite
_common.ONLY_DEVICE, _common.JSON_PATH = 'cuda', sys.argv[1]
suite.cuda_rows(quick=sys.argv[2] == '1')" "$LOGS/bench-$1-cuda-only.json" "$DRY"
  return $rc
}

# sanitize TOOL NAME PYTEST-ARGS...: the pytest run under compute-sanitizer,
# checking scalekit's kernels only (their mangled names hold "scalekit").
sanitize() {
  local tool=$1 name=$2
  shift 2
  export STEP=${tool}_$name
  local cmd=("$PY" -m pytest "$@" -m cuda -p no:cacheprovider -q -rfE --junitxml="$LOGS/${tool}_$name.xml")
  if [ "$DRY" = 1 ]; then
    note "dry run: pytest selection without compute-sanitizer"
    "${cmd[@]}"
    return
  fi
  if ! command -v compute-sanitizer > /dev/null; then
    note "compute-sanitizer not found"
    return 3
  fi
  local extra=()
  [ "$tool" = racecheck ] && extra=(--racecheck-report analysis)
  # No caching allocator: every tensor its own cudaMalloc, so that memcheck
  # sees an access past a tensor's end even inside a cached block.
  HYPOTHESIS_PROFILE=sanitize PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" "${extra[@]}" \
    --kernel-name kns=scalekit --report-api-errors no --print-limit 20 --error-exitcode 86 \
    --log-file "$LOGS/${tool}_$name.sanitizer.log" "${cmd[@]}"
}

step_profile() {
  export STEP=profile
  if [ "$DRY" = 1 ]; then
    note "dry run: profiled on the CPU"
    "$PY" -m benchmarks.gpu_profile --device cpu --iters 1 --out "$LOGS/profile.md"
    return
  fi
  "$PY" -m benchmarks.gpu_profile --out "$LOGS/profile.md"
}

ADV=tests/ops/test_cuda_adversarial.py
step_memcheck_nms() { sanitize memcheck nms tests/ops/test_nms.py tests/ops/test_soft_nms.py $ADV -k nms; }
step_memcheck_ps_roi() { sanitize memcheck ps_roi tests/ops/test_ps_roi.py $ADV -k "ps_roi and not deform"; }
step_memcheck_deform_ps_roi_pool() {
  sanitize memcheck deform_ps_roi_pool tests/ops/test_ps_roi.py $ADV -k "deform and not deform_conv"
}
step_memcheck_deform_conv2d() { sanitize memcheck deform_conv2d tests/ops/test_deform_conv.py $ADV -k deform_conv; }
# Shared memory: nms_mask_kernel, nms_reduce_kernel, soft_nms_kernel. racecheck
# tracks every shared-memory access: the adversarial NMS tests did not finish in
# 60 s on an H200, nor the device-vs-CPU tests (thousands of Soft-NMS rounds) in
# 90 s. So: tests sized for it (tests named "racecheck": several warps a block,
# few rounds), and the golden and empty cases.
step_racecheck_nms() {
  sanitize racecheck nms tests/ops/test_nms.py tests/ops/test_soft_nms.py -k "racecheck or golden or empty"
}

# example NAME MODE SCRIPT ARGS...: one short training run; throughput into LOGS/example-NAME_MODE.rate.json.
example() {
  local name=$1 mode=$2 script=$3
  shift 3
  export STEP=example_${name}_$mode
  local out=$WORK/${name}_$mode amp=()
  [ "$mode" = amp ] && amp=(--amp)
  if [ "$DRY" = 1 ]; then  # the flags used here must be in the driver's --help
    local help missing=""
    help=$("$PY" "$script" --help) || return 1
    for flag in "$@" --device --out "${amp[@]}"; do
      [[ "$flag" == --* ]] && ! grep -q -- "$flag\b" <<< "$help" && missing="$missing $flag"
    done
    [ -z "$missing" ] || { note "flags not in --help:$missing"; return 1; }
    note "dry run: flags checked against --help"
    return 0
  fi
  rm -rf "$out"
  echo "$script $* --device cuda --out $out ${amp[*]}" > "$LOGS/example_${name}_$mode.log.cmd"
  "$PY" "$script" "$@" --device cuda --out "$out" "${amp[@]}"
  local rc=$?
  "$PY" "$ROOT/benchmarks/_gpu_check.py" --example-rate "${name}_$mode" "$out" "$LOGS/example_${name}_$mode.log" \
    > "$LOGS/example-${name}_$mode.rate.json"
  return $rc
}
# Small synthetic sets (generated once, shared by the float32 and --amp runs),
# one epoch of a few tens of iterations: long enough to amortise the first
# iteration, short enough for a minute each.
step_example_snip_sniper() {
  example snip_sniper "$1" examples/sniper/train.py --synthetic 16 4 \
    --synthetic-dir "$WORK/snip_sniper_data" --epochs 1 --rpn-epochs 1 --max-iters 30 --batch-size 4 \
    --warmup 1 --log-every 10 --draw 0
}
step_example_rfcn3000() {
  example rfcn3000 "$1" examples/rfcn3000/train.py --synthetic 96 12 --synthetic-dir "$WORK/rfcn3000_data" \
    --families 3 --classes-per-family 4 --held-out-per-family 1 --per-class 3 --cls-epochs 1 --epochs 1 \
    --max-steps 20 --batch-size 4 --no-add-classes
}
step_example_msb_rnn() {
  example msb_rnn "$1" examples/msb_rnn/msb_rnn.py --videos 4 --test-videos 1 --chunks 16 --stream-epochs 1 \
    --lstm-epochs 1 --batch 32 --stages data motion streams
}

step_tests_rest() {
  export STEP=tests_rest
  if [ "$DRY" = 1 ]; then
    note "dry run: collected only"
    "$PY" -m pytest -m "not cuda" -p no:cacheprovider -q --collect-only | tail -3
    return
  fi
  local xdist=()
  "$PY" -c "import xdist" 2> /dev/null && xdist=(-n "$((NPROC > 2 ? NPROC - 2 : 1))")
  "$PY" -m pytest -m "not cuda" "${xdist[@]}" $(pytest_args tests_rest)
}

export -f step_env step_build pytest_args step_tests_cuda step_bench step_profile sanitize example \
  step_memcheck_nms step_memcheck_ps_roi step_memcheck_deform_ps_roi_pool step_memcheck_deform_conv2d \
  step_racecheck_nms step_example_snip_sniper step_example_rfcn3000 step_example_msb_rnn step_tests_rest
export ADV

# ----------------------------------------------------------------------------- the run

echo "gpu_check: $( [ "$DRY" = 1 ] && echo 'CPU dry run' || echo 'GPU run'), python $PY, budget ${BUDGET}s, logs $LOGS, summary $OUT_DIR/SUMMARY.md"
run_step env 60 step_env
# Left out by --only/--skip, the build still runs where the extension has no
# CUDA kernels (a fresh machine: build outputs do not travel with the tree).
if ! selected build && [ "$DRY" != 1 ] &&
   ! "$PY" -c "from scalekit import _ext; assert _ext.has_cuda_kernels()" > /dev/null 2>&1; then
  echo "gpu_check: scalekit has no CUDA kernels here: building although --only/--skip leave the build out"
  ONLY=${ONLY:+$ONLY,build,}
  SKIP=${SKIP//,build,/,}
fi
if selected build; then
  if ! run_step build 300 step_build; then
    echo "gpu_check: the build failed; see $LOGS/build.log" >&2
    summarize
    exit 1
  fi
fi
run_step tests_cuda 150 step_tests_cuda
run_step bench_nms 90 step_bench nms
run_step bench_ps_roi 45 step_bench ps_roi
run_step bench_deform_conv 45 step_bench deform_conv
run_step profile 60 step_profile
run_step memcheck_nms 75 step_memcheck_nms
run_step memcheck_ps_roi 60 step_memcheck_ps_roi
run_step memcheck_deform_ps_roi_pool 60 step_memcheck_deform_ps_roi_pool
run_step memcheck_deform_conv2d 60 step_memcheck_deform_conv2d
run_step racecheck_nms 90 step_racecheck_nms
for ex in snip_sniper rfcn3000 msb_rnn; do
  run_step "example_${ex}_fp32" 60 "step_example_$ex" fp32
  run_step "example_${ex}_amp" 60 "step_example_$ex" amp
done
run_step tests_rest 600 step_tests_rest
summarize
echo "gpu_check: done in $(($(date +%s) - START))s; $OUT_DIR/SUMMARY.md"
exit 0
