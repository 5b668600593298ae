#!/usr/bin/env bash
# The whole study on a lent GPU machine with no internet, under a deadline, in one call.
#
#   bash benchmarks/gpu.sh [DATA_PACK_OR_ROOT]     # in the repository root; writes to $OUT
#
# 1. Python: $PYTHON (default python3) must import a JAX that sees a GPU; what else jaxcnn needs
#    and the machine lacks is installed from carried wheels in .whl/ (no index, no internet).
#    jaxcnn runs from this checkout (PYTHONPATH), not installed.
# 2. Data: a pack made by `python benchmarks/carry_data.py pack DATA_ROOT .carry/data.tar.xz` is
#    unpacked to $WORK/data; a folder is used as it is (default: $JAXCNN_DATA).
# 3. Stages, each with --resume, stopped by SIGTERM when the deadline nears (a run then saves its
#    epoch and exits; calling the script again continues it on the same machine):
#    pytest on the step functions (on the GPU), part 1, part 2, part 3 on the task's mnistTask3.zip
#    with part 1's trunk and part 2's B, part 1's cv, throughput.py's step/bf16/population parts,
#    mnist_to_99.py twice (cold, then warm compilation cache) and once at batch 256,
#    the report (its 25 s are kept back from the stages before it).
# 4. $OUT gets at most 8 files of at most 16 MiB: study.log (every stage's log, compile lines
#    included), gpu-utilization.csv (nvidia-smi every 0.5 s), results.tar.gz (results, configs,
#    metrics, figures and the report; no checkpoints), pytest.log, summary.md.
# Environment: DEADLINE_S (default 540: the study's wall budget), WORK (default /tmp/jaxcnn-study:
# work directories, caches), PYTHON; PLAN=part1 runs part 1's cv and ablate instead of the study
# (VARIANTS="default wide ...", default every variant), whose tables come back in results.tar.gz.
# Rehearse on a CPU with ALLOW_CPU=1 QUICK=--quick.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-build/gpu-study}"
WORK="${WORK:-/tmp/jaxcnn-study}"
PY="${PYTHON:-python3}"
DEADLINE_S="${DEADLINE_S:-540}"
QUICK="${QUICK:-}"
PLAN="${PLAN:-study}"  # study: parts 1-3 and cv; part1: cv and ablate (VARIANTS, default all)
SOURCE="${1:-${JAXCNN_DATA:-data}}"
mkdir -p "$OUT" "$WORK"
LOG="$OUT/study.log"
: >"$LOG"
SUMMARY=()
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 JAX_LOG_COMPILES=1 JAXCNN_CACHE="$WORK/cache"

say() { echo "$(date -u +%T) $*" | tee -a "$LOG"; }
left() { echo $((DEADLINE_S - SECONDS)); }
# stage NAME CAP CMD...: CMD under min(CAP, time left), SIGTERM at the limit and SIGKILL 30 s later.
stage() {
  local name="$1" cap="$2" limit status start=$SECONDS
  shift 2
  limit=$(left)
  ((cap < limit)) && limit=$cap
  if ((limit < 15)); then SUMMARY+=("| $name | skipped: out of time | 0 |"); return 1; fi
  say ">>> $name (limit ${limit}s): $*"
  timeout -s TERM -k 30 "$limit" "$@" >>"$LOG" 2>&1
  status=$?
  SUMMARY+=("| $name | $([[ $status == 0 ]] && echo ok || echo "exit $status") | $((SECONDS - start)) |")
  say "<<< $name: exit $status after $((SECONDS - start))s"
  return $status
}

# 1. Python and packages.
if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl >>"$LOG" 2>&1 &&
    export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
if ! ALLOW_CPU="${ALLOW_CPU:-0}" "$PY" -c 'import jax, os, sys; import flax, optax, orbax.checkpoint, matplotlib, PIL, tensorboardX
sys.exit(jax.default_backend() == "cpu" and os.environ["ALLOW_CPU"] != "1")' >>"$LOG" 2>&1; then
  say "no usable JAX on a GPU, or a package missing (carry its wheel in .whl/); see $LOG"
  exit 1
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c 'import os, sys; sys.path.insert(0, "benchmarks"); from machine import describe; print(describe(os.cpu_count()))'
  "$PY" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in
    ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")))'
} 2>&1 | tee -a "$LOG"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 500 >"$OUT/gpu-utilization.csv" &
  TRACE=$!
fi

# 2. Data.
DATA="$SOURCE"
if [[ -f "$SOURCE" ]]; then
  DATA="$WORK/data"
  [[ -d "$DATA/mnist" ]] || stage "unpack data" 120 "$PY" benchmarks/carry_data.py unpack "$SOURCE" "$DATA"
fi

# 3. The study (the report's 25 s are kept back from the stages before it).
W="$WORK/ckpts"
DEADLINE_S=$((DEADLINE_S - 25))
stage "pytest steps on $("$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null)" 120 \
  bash -c "\"$PY\" -m pytest -q -p no:cacheprovider tests/training/test_{steps,population,optim,losses,augment}.py \
    >\"$OUT/pytest.log\" 2>&1"
if [[ "$PLAN" == part1 ]]; then  # issue 21's tables: the fold estimate, then the ablation variants
  stage "part 1 cv" 240 "$PY" -m jaxcnn cv $QUICK --data-root "$DATA" --workdir "$W/part1-cv" --resume
  stage "part 1 ablate ${VARIANTS:-(all variants)}" 3600 "$PY" -m jaxcnn ablate $QUICK --data-root "$DATA" \
    --workdir "$W/part1-ablation" --resume ${VARIANTS:+--variants $VARIANTS}
else
  stage "part 1" 120 "$PY" -m jaxcnn part1 $QUICK --data-root "$DATA" --workdir "$W/part1" --resume \
    --cv-run "$W/part1-cv"
  stage "part 2" 300 "$PY" -m jaxcnn part2 $QUICK --data-root "$DATA" --workdir "$W/part2" --resume
  stage "part 3 (mnistTask3.zip)" 400 "$PY" -m jaxcnn part3 $QUICK --data-root "$DATA" --workdir "$W/part3" \
    --resume --part1-run "$W/part1" --oracle-run "$W/part2/B"  # the data root's task set, by default
  stage "part 1 cv" 150 "$PY" -m jaxcnn cv $QUICK --data-root "$DATA" --workdir "$W/part1-cv" --resume
fi
stage "throughput: steps at batch 128, 512; bf16; population" 60 "$PY" benchmarks/throughput.py \
  --parts step,bf16,population --batch-sizes 128,512 --steps 50 --epoch-images 60000 --epoch-batch 128 \
  --seeds 5 --repeats 2
for cache in cold warm; do  # the second process finds the first one's programs in the compilation cache
  stage "MNIST to 99% ($cache cache)" 40 "$PY" benchmarks/mnist_to_99.py --data-root "$DATA" \
    --json "$W/mnist_to_99_$cache.json"
done
stage "MNIST to 99% (batch 256)" 40 "$PY" benchmarks/mnist_to_99.py --data-root "$DATA" \
  --set batch_size=256 --json "$W/mnist_to_99_batch256.json"  # twice the steps, half the images per step
DEADLINE_S=$((DEADLINE_S + 25))
stage "report" 25 "$PY" -m jaxcnn report --workdir "$W"

# 4. What comes back.
[[ -n "${TRACE:-}" ]] && kill "$TRACE" 2>/dev/null
(cd "$W" 2>/dev/null && find . \( -name checkpoints -prune \) -o -type f \
  \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.png' -o -name '*.html' \) -print |
  tar -czf "$OUT/results.tar.gz" -T -)
{
  echo "# jaxcnn study on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "no GPU"), $(date -u +%F)"
  echo
  echo "| stage | result | seconds |"
  echo "|---|---|---:|"
  printf '%s\n' "${SUMMARY[@]}"
  echo
  echo "| stage | compilations | of them train-step programs | seconds compiling |"
  echo "|---|---:|---:|---:|"
  awk '/>>> / { sub(/.*>>> /, ""); sub(/ \(limit.*/, ""); stage = $0 }
       /Finished XLA compilation of/ { n[stage]++; s[stage] += $(NF - 1); if ($0 ~ /_step_population|train_epoch_population/) t[stage]++ }
       END { for (k in n) printf "| %s | %d | %d | %.1f |\n", k, n[k], t[k], s[k] }' "$LOG"
  echo
  echo "wall ${SECONDS}s"
} | tee "$OUT/summary.md"
