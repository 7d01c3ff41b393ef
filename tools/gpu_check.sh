#!/usr/bin/env bash
# Issue 8: the one prepared command a GPU session runs on the device machine (the device tool's `run`, from the
# repository root). It runs the full benchmark (real-size I-FAS, BLIP-2 and the docs/benchmarks.md anchor, random weights)
# and writes into $OUT: benchmark.json (rewritten at the start and end of every section, so a cut-off run keeps
# its figures and says where it ended), benchmark.log, nvidia-smi.txt, and benchmarks.md = docs/benchmarks.md
# with its results block regenerated. Copy $OUT/benchmarks.md over docs/benchmarks.md afterwards (or:
# python tools/benchmark.py --render JSON --docs docs/benchmarks.md).
#
# Time: the device tool lends 15 minutes in all, the machine's start (minutes) included, so the whole script
# keeps within GPU_CHECK_LIMIT_S (default 330 s), which leaves room for a second call of about 300 s. The
# benchmark gets what is left after the set-up, less RENDER_MARGIN_S for rendering the results; it is told
# that budget less BUDGET_MARGIN_S (--budget-s), so it skips, with the reason, a section that would not fit
# rather than being killed in it, and `timeout` stops it only if a section overruns its estimate. The order
# puts issue 8's targets first (matmul, I-FAS scoring and training, QLoRA; then the anchor and captioning).
#
# A second call completes the first: `--resume` measures only the requested sections that the previous results
# ($GPU_CHECK_PREVIOUS, default runs/gpu_check/benchmark.json: every call leaves its merged results there, and
# runs/ is git-ignored, so on a machine still warm it is still there; on a fresh one, copy the first call's
# benchmark.json there and carry runs/gpu_check) lack, merges, and renders one benchmarks.md from both.
# `--only SECTIONS` is `--what SECTIONS` (e.g. --only caption,qlora); other arguments go to tools/benchmark.py.
#
# bitsandbytes: the GPU image has torch, transformers and peft but not bitsandbytes or datasets. QLoRA is then
# skipped with its reason unless bitsandbytes is carried, as wheels in .whl/ or as a trimmed package folder in
# .bnb/ (tools/README.md says how; both paths are git-ignored and must be carried). The carried copy is
# imported once first: if that fails, it stays off PYTHONPATH (so it cannot break peft, and LoRA still runs),
# one line says why, and the error goes to the benchmark (BENCH_CARRIED_BNB_ERROR: the JSON's meta and QLoRA's
# skip reason).
#
# Commit: the device copy has no .git; write `git rev-parse --short HEAD > .bench_commit` at the repository
# root before the run (untracked, not ignored: it travels), or the results say the commit is unknown.
#
#   run(command="bash tools/gpu_check.sh", carry=[".bnb"], timeout_s=360)             # first call
#   run(command="GPU_CHECK_LIMIT_S=280 bash tools/gpu_check.sh --resume", carry=[".bnb"], timeout_s=310)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/benchmark-out}
BNB_DIR=${BNB_DIR:-.bnb}
LIMIT=${GPU_CHECK_LIMIT_S:-330}
PREVIOUS=${GPU_CHECK_PREVIOUS:-runs/gpu_check/benchmark.json}
# --resume -> --resume-from $PREVIOUS; --only X -> --what X; --mode full unless the caller names a mode
args=()
mode_args=(--mode full)
resume=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --resume) resume=1 ;;
    --only) [ "$#" -ge 2 ] || { echo "gpu_check.sh: --only needs a comma-separated list of sections" >&2; exit 2; }
            args+=(--what "$2"); shift ;;
    --only=*) args+=(--what "${1#--only=}") ;;
    --mode|--mode=*) mode_args=(); args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ "$resume" -eq 1 ]; then
  if [ ! -s "$PREVIOUS" ]; then
    echo "gpu_check.sh: --resume: no earlier results at $PREVIOUS (on a fresh machine: copy the first call's" \
      "benchmark.json there and carry its folder)" >&2
    exit 2
  fi
  args+=(--resume-from "$PREVIOUS")
  echo "resuming $PREVIOUS: measuring only the sections it lacks"
fi
RENDER_MARGIN_S=${RENDER_MARGIN_S:-15}
BUDGET_MARGIN_S=${BUDGET_MARGIN_S:-20}
mkdir -p "$OUT"
export PYTHONPATH="packages/scf/src:packages/ifas-model/src:packages/ifas-eval/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
unset BENCH_CARRIED_BNB_ERROR
if [ -d "$BNB_DIR/bitsandbytes" ]; then
  bnb_path=$(cd "$BNB_DIR" && pwd)
  # import it as the benchmark will (peft imports bitsandbytes when it finds it); keep the last line of the error
  bnb_err=$(PYTHONPATH="$bnb_path:$PYTHONPATH" timeout 120 "$PY" -c \
    'import importlib.util as u, bitsandbytes; u.find_spec("peft") and __import__("peft")' 2>&1)
  bnb_rc=$?
  if [ "$bnb_rc" -eq 0 ]; then
    export PYTHONPATH="$bnb_path:$PYTHONPATH"
    echo "carried bitsandbytes ($BNB_DIR) imports: on PYTHONPATH"
  else
    bnb_err=$(printf '%s\n' "$bnb_err" | grep -v '^[[:space:]]*$' | tail -n 1)
    [ "$bnb_rc" -eq 124 ] && bnb_err="its import did not finish within 120 s"
    export BENCH_CARRIED_BNB_ERROR="${bnb_err:-its import exited with status $bnb_rc and no message}"
    echo "carried bitsandbytes ($BNB_DIR) does not import: $BENCH_CARRIED_BNB_ERROR; left off PYTHONPATH, QLoRA will be skipped"
  fi
fi
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
cp docs/benchmarks.md "$OUT/benchmarks.md"
bench_timeout=${BENCH_TIMEOUT:-$((LIMIT - SECONDS - RENDER_MARGIN_S))}
budget=$((bench_timeout - BUDGET_MARGIN_S))
if [ "$budget" -lt 1 ]; then budget=1; fi
echo "benchmark: budget ${budget} s, killed after ${bench_timeout} s"
timeout -k 10 "$bench_timeout" "$PY" tools/benchmark.py ${mode_args[@]+"${mode_args[@]}"} --budget-s "$budget" \
  --out "$OUT/benchmark.json" ${args[@]+"${args[@]}"} >"$OUT/benchmark.log" 2>&1
status=$?
tail -n 40 "$OUT/benchmark.log"
[ "$status" -eq 0 ] || echo "benchmark exited with status $status (124 = cut off by the time limit)"
if [ -s "$OUT/benchmark.json" ]; then
  "$PY" tools/benchmark.py --render "$OUT/benchmark.json" --docs "$OUT/benchmarks.md"
  # kept for a second call with --resume on this machine (runs/ is git-ignored, so the device keeps it)
  mkdir -p "$(dirname "$PREVIOUS")" && cp "$OUT/benchmark.json" "$PREVIOUS.tmp" && mv "$PREVIOUS.tmp" "$PREVIOUS"
fi
exit "$status"
