#!/usr/bin/env bash
# Issue 8: the one prepared command a GPU session runs on the device machine (the device tool's `run`, from the
# repository root). It runs the full benchmark (real-size I-FAS, BLIP-2 and the docs/benchmarks.md anchor, random weights)
# and writes into $OUT: benchmark.json (rewritten after every section, so a cut-off run keeps its figures),
# benchmark.log, nvidia-smi.txt, and benchmarks.md = docs/benchmarks.md with its results block regenerated.
# Copy $OUT/benchmarks.md over docs/benchmarks.md afterwards (or: python tools/benchmark.py --render JSON
# --docs docs/benchmarks.md). The GPU image has torch and transformers (and peft) but not bitsandbytes or
# datasets: QLoRA is then skipped with its reason unless bitsandbytes is carried, as wheels in .whl/ or as a
# trimmed package folder in .bnb/ (docs/benchmarks.md says how; both paths must be git-ignored and carried).
#
#   run(command="bash tools/gpu_check.sh", carry=[".bnb"], timeout_s=600)   # extra args go to the tool
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/benchmark-out}
mkdir -p "$OUT"
export PYTHONPATH="packages/scf/src:packages/ifas-model/src:packages/ifas-eval/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ -d .bnb/bitsandbytes ]; then export PYTHONPATH="$PWD/.bnb:$PYTHONPATH"; fi
PY=${PYTHON:-python3}
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
cp docs/benchmarks.md "$OUT/benchmarks.md"
# 540 s leaves the render below and the transfer inside the device tool's 600 s command limit.
timeout -k 10 "${BENCH_TIMEOUT:-540}" "$PY" tools/benchmark.py --mode full --out "$OUT/benchmark.json" "$@" \
  >"$OUT/benchmark.log" 2>&1
status=$?
tail -n 40 "$OUT/benchmark.log"
[ "$status" -eq 0 ] || echo "benchmark exited with status $status (124 = cut off by the time limit)"
if [ -s "$OUT/benchmark.json" ]; then
  "$PY" tools/benchmark.py --render "$OUT/benchmark.json" --docs "$OUT/benchmarks.md"
fi
exit "$status"
