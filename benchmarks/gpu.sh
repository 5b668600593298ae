#!/usr/bin/env bash
# Throughput of jaxcnn on a GPU machine (H100/H200-class), from a bare machine, in about 8 minutes.
#
#   bash benchmarks/gpu.sh            # from anywhere; it works in the repository root
#
# 1. a virtual environment (build/venv-gpu) with jaxcnn and jax[cuda12] from PyPI, unless it
#    already has a JAX that sees a GPU; 2. environment facts; 3. benchmarks/throughput.py at GPU sizes
#    (steps at batch 128 and 512, augmentation on and off, bfloat16; a 60,000-image epoch with
#    augmentation, scanned and as a loop of steps; 5 seeds vmapped against 5 runs in turn);
#    4. `python -m jaxcnn partN --quick` for each part, if the data root exists; 5. one summary.
# Its log and results go to $OUT (the device runner's output folder), else build/gpu-bench.
# Environment: JAX_SPEC (default jax[cuda12]==0.10.2, the version the CPU numbers used),
# JAXCNN_DATA (default ../shared/data), DEADLINE_S (default 470: stages past it are skipped),
# THROUGHPUT_ARGS (replaces the GPU sizes), VENV. To rehearse the script on a CPU machine:
#   ALLOW_CPU=1 VENV=.venv THROUGHPUT_ARGS="--quick --parts step" JAXCNN_DATA=none bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."

RESULTS="${OUT:-build/gpu-bench}"
WORK="build/gpu-bench-work"  # the parts' checkpoints and caches, kept out of $OUT
VENV="${VENV:-build/venv-gpu}"
JAX_SPEC="${JAX_SPEC:-jax[cuda12]==0.10.2}"
DATA="${JAXCNN_DATA:-../shared/data}"
DEADLINE_S="${DEADLINE_S:-470}"
THROUGHPUT_ARGS="${THROUGHPUT_ARGS:---parts step,bf16,epoch,population --batch-sizes 128,512 --steps 50 --epoch-images 60000 --epoch-batch 128 --seeds 5 --repeats 2}"
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu-bench.log"
: > "$LOG"
SUMMARY=()

say() { echo "$*" | tee -a "$LOG"; }
left() { echo $(( DEADLINE_S - SECONDS )); }
# run_stage NAME CAP_SECONDS CMD...: runs CMD under min(CAP, time left), logs it, records a summary row.
run_stage() {
  local name="$1" cap="$2"; shift 2
  local limit; limit=$(left); (( cap < limit )) && limit=$cap
  if (( limit < 20 )); then SUMMARY+=("| $name | skipped: out of time | - |"); return 1; fi
  say ">>> $name (limit ${limit}s): $*"
  local start=$SECONDS status
  timeout "$limit" "$@" >>"$LOG" 2>&1; status=$?
  local took=$(( SECONDS - start ))
  case $status in
    0) SUMMARY+=("| $name | ok | $took |") ;;
    124) SUMMARY+=("| $name | timed out | $took |") ;;
    *) SUMMARY+=("| $name | failed (exit $status) | $took |") ;;
  esac
  say "<<< $name: exit $status after ${took}s"
  return $status
}

# JAX imports and sees a GPU (any backend will do with ALLOW_CPU=1).
jax_ready() {
  ALLOW_CPU="${ALLOW_CPU:-0}" "$PY" -c \
    'import jax, os, sys; sys.exit(jax.default_backend() != "gpu" and os.environ["ALLOW_CPU"] != "1")' >/dev/null 2>&1
}

# 1. Environment: reuse one that already sees a GPU, else create and install.
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV" >>"$LOG" 2>&1 || { say "python3 -m venv failed; see $LOG"; exit 1; }
fi
PY="$VENV/bin/python"
if ! jax_ready; then
  run_stage "pip install -e . $JAX_SPEC" 300 \
    "$PY" -m pip install --retries 1 --timeout 60 -e . "$JAX_SPEC"
  if ! jax_ready; then
    say "JAX in $VENV does not see a GPU (no PyPI access, or no CUDA driver?); the last lines of $LOG:"
    tail -n 20 "$LOG"
    exit 1
  fi
fi

# 2. Facts.
{
  echo "=== environment"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else
    echo "no nvidia-smi"
  fi
  echo "CPUs: $(nproc)"
  "$PY" - <<'EOF'
import importlib.metadata as md, platform, jax

def version(package):
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"

print("python", platform.python_version())
print(", ".join(f"{p} {version(p)}" for p in ("jax", "jaxlib", "jax-cuda12-plugin", "flax", "optax")))
print("devices:", jax.devices())
EOF
} 2>&1 | tee -a "$LOG"

# 3. Throughput at GPU sizes (the table of this stage is the heart of the summary).
# shellcheck disable=SC2086 # THROUGHPUT_ARGS is a list of flags
run_stage "throughput.py" 330 "$PY" benchmarks/throughput.py $THROUGHPUT_ARGS --json "$RESULTS/throughput.json"

# 4. The study's parts, tiny, end to end, if the data is here.
if [[ -d "$DATA" ]]; then
  for part in part1 part2 part3; do
    [[ -f "jaxcnn/$part.py" ]] || continue
    run_stage "jaxcnn $part --quick" 120 "$PY" -m jaxcnn "$part" --quick --data-root "$DATA" \
      --workdir "$WORK/$part" --cache-dir "$WORK/cache" --overwrite
  done
else
  SUMMARY+=("| jaxcnn partN --quick | skipped: no data root at $DATA | - |")
fi

# 5. One summary.
echo
echo "=== summary ($(date -u +%FT%TZ), ${SECONDS}s in all; full log: $LOG)"
if [[ -f "$RESULTS/throughput.json" ]]; then
  "$PY" - "$RESULTS/throughput.json" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
print(data["environment"])
print("| part | variant | batch | images/call | compile s | steady s | images/s |")
print("|---|---|---:|---:|---:|---:|---:|")
for r in data["rows"]:
    print(f"| {r['part']} | {r['variant']} | {r['batch']} | {r['images']} | {r['compile_s']:.1f} | "
          f"{r['steady_s']:.3f} | {r['images_per_s']:,.0f} |")
print("\n" + "\n".join(data["ratios"]))
EOF
fi
echo
echo "| stage | result | seconds |"
echo "|---|---|---:|"
printf '%s\n' "${SUMMARY[@]}"
