#!/usr/bin/env bash
# Every GPU check of kml in one call: run it from the repository root of a checkout on
# a machine with a CUDA GPU, with kml and its dependencies importable (pip install -e ".[dev]").
# Results go to $OUT (default ./gpu_checks): the CUDA test log, the parity runs and the
# benchmark (bench_cuda.json / bench_cuda.md), as described in docs/performance.md.
#
#   bash tools/gpu_checks.sh                      # CUDA tests, fp32 vs bf16 parity, the benchmark
#   CHECKS=throughput bash tools/gpu_checks.sh    # the throughput round, in under 5 minutes (below)
#
# Phase 1 (untimed work, run concurrently): the CUDA tests and short synthetic runs
#   for a parity check, all on one prepared copy of the synthetic data (DATA, default
#   $OUT/data): fp32 vs bf16 (PARITY_SET=precision), eager vs CUDA graphs
#   (PARITY_SET=graphs), the default path vs each speed option and all of them
#   (PARITY_SET=candidates), or vs training seeds 1 and 2 and channels-last convolutions
#   (PARITY_SET=seeds), each compared, paired on the same test tasks, with the first run
#   (parity_<learner>.md); or MProtoNet+KML in fp32 and in bf16 at training seeds
#   PARITY_SEEDS (default 0 1 2), each seed's bf16 run paired with its fp32 run on the same
#   test tasks and the mean difference taken across seeds with its t-interval: parity when
#   the interval contains 0 (PARITY_SET=bf16_seeds, parity_bf16.json).
# Phase 2 (alone on the GPU): scripts/bench.py, sections in order of importance; it
#   writes its JSON and markdown after every section, so a cut-short run keeps what
#   it measured.
#
# CHECKS=throughput sets PARITY_SET=bf16_seeds (ProtoNet only) and the benchmark sections
#   conv_layers (one modulated layer per Conv-4 shape, grouped vs the other per-task
#   convolutions, fp32 and bf16), candidates (bf16 with every per-task convolution, the
#   shared convolution, fp32 logits, the default deterministic path beside the autotuned
#   one, against the current path) and candidates_profile (the top kernels of each
#   method's fastest candidate), with time limits that end the whole call within BUDGET
#   seconds (default 285).
#
# Other settings (environment): DEVICE (default cuda; cpu runs the same steps on the CPU,
#   at the sizes PARITY_ARGS and BENCH_ARGS give), PARITY_ITERS (default 500),
#   PARITY_ARGS (more overrides of every parity run), PARITY_LEARNERS (default
#   "protonet maml"), PHASE1_TIMEOUT, BENCH_TIMEOUT, BENCH_SECTIONS, BENCH_ARGS, PYTHON.
set -u
OUT=${OUT:-gpu_checks}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
CHECKS=${CHECKS:-all}
export OUT PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
case $CHECKS in
  all) ;;
  throughput)
    PARITY_SET=${PARITY_SET:-bf16_seeds}
    PARITY_LEARNERS=${PARITY_LEARNERS:-protonet}
    PHASE1_TIMEOUT=${PHASE1_TIMEOUT:-120}
    BENCH_SECTIONS=${BENCH_SECTIONS:-[conv_layers,candidates,candidates_profile]}
    BUDGET=${BUDGET:-285} ;;
  *) echo "error: CHECKS=$CHECKS is not valid; use all or throughput" >&2; exit 2 ;;
esac
"$PYTHON" -c "import kml, hydra, omegaconf" 2>/dev/null \
  || { echo "error: kml or its dependencies (hydra-core, omegaconf) are not importable: run pip install -e '.[dev]' first" >&2; exit 2; }
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
begin=$SECONDS
start=$SECONDS

# PARITY_SET=precision: fp32 vs bf16 (eager); graphs: CUDA graphs off vs on (fp32); candidates: each speed
# option and all of them; seeds: training seeds 1 and 2 and channels-last convolutions; bf16_seeds: fp32 and
# bf16 at each of PARITY_SEEDS
case ${PARITY_SET:-precision} in
  precision) runs="fp32:train.precision=fp32,train.cuda_graphs=false bf16:train.precision=bf16,train.cuda_graphs=false" ;;
  graphs) runs="eager:train.cuda_graphs=false graphs:train.cuda_graphs=true" ;;
  candidates) runs="current:train.fused_adam=false fused:train.fused_adam=true tf32:train.tf32=true
    unfold:train.per_task_conv=unfold all:train.fused_adam=true,train.tf32=true,train.per_task_conv=unfold" ;;
  # the spread between training seeds, against which the candidates' differences are judged
  seeds) runs="current:train.seed=0 seed1:train.seed=1 seed2:train.seed=2
    channels_last:train.per_task_conv=channels_last" ;;
  bf16_seeds) runs=$(for seed in ${PARITY_SEEDS:-0 1 2}; do
      echo "fp32-seed$seed:train.precision=fp32,train.seed=$seed bf16-seed$seed:train.precision=bf16,train.seed=$seed"
    done) ;;
  none) runs="" ;;
  *) echo "error: PARITY_SET=$PARITY_SET is not valid; use precision, graphs, candidates, seeds, bf16_seeds or none" >&2
     exit 2 ;;
esac
learners=${PARITY_LEARNERS:-protonet maml}

# one copy of the synthetic data for every parity run (generated once, read concurrently)
DATA=${DATA:-$OUT/data}
if [ -n "$runs" ]; then
  size=$(for arg in ${PARITY_ARGS:-}; do case $arg in data.image_size=*) echo "${arg#*=}" ;; esac; done | tail -1)
  "$PYTHON" scripts/prepare_data.py dataset=synthetic image_size="${size:-32}" data.root="$DATA" verbose=false \
    >"$OUT/prepare_data.log" 2>&1 || { echo "error: preparing the synthetic data failed: see $OUT/prepare_data.log" >&2; exit 1; }
fi

echo "== phase 1: CUDA tests + ${PARITY_SET:-precision} parity runs (concurrent, not timed)"
(OMP_NUM_THREADS=4 timeout ${PHASE1_TIMEOUT:-150} "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  >"$OUT/cuda_tests.log" 2>&1) &
for learner in $learners; do
  for run in $runs; do
    name=$learner-${run%%:*}
    overrides=${run#*:}
    (OMP_NUM_THREADS=${PARITY_THREADS:-3} timeout ${PHASE1_TIMEOUT:-150} "$PYTHON" scripts/train.py learner=$learner \
      modulation=kml device=$DEVICE ${overrides//,/ } train.iterations=${PARITY_ITERS:-500} train.progress=false \
      eval.tasks_per_mode=300 data.root="$DATA" ${PARITY_ARGS:-} hydra.run.dir="$OUT/parity/$name" \
      >"$OUT/parity_$name.log" 2>&1) &
  done
done
wait
echo "phase 1 took $((SECONDS - start)) s"
tail -3 "$OUT/cuda_tests.log"
for log in "$OUT"/parity_*.log; do
  [ -f "$log" ] || continue
  name=$(basename "$log" .log)
  grep -E "^\| (\*\*overall|synthetic)" "$log" | sed "s/^/${name#parity_} /" || tail -3 "$log"
done
"$PYTHON" - <<'PY'
import json, glob, os
rows = {}
for path in sorted(glob.glob(os.path.join(os.environ["OUT"], "parity", "*", "results.json"))):
    r = json.load(open(path))
    rows[os.path.basename(os.path.dirname(path))] = {"overall": r["overall"], "per_mode": r["per_mode"]}
json.dump(rows, open(os.path.join(os.environ["OUT"], "parity.json"), "w"), indent=1)
PY
if [ "${PARITY_SET:-precision}" = bf16_seeds ]; then
  # each seed's bf16 run minus its fp32 run on the identical test tasks, then across seeds
  PARITY_SEEDS=${PARITY_SEEDS:-0 1 2} PARITY_LEARNERS=$learners "$PYTHON" - <<'PY'
import json, os
from kml.analysis.paired import compare_task_records
from kml.analysis.seeds import across_seeds

out = os.environ["OUT"]
summary = {"difference": "bf16 - fp32, accuracy points, paired on the same test tasks", "learners": {}}
for learner in os.environ["PARITY_LEARNERS"].split():
    seeds, missing = [], []
    for seed in os.environ["PARITY_SEEDS"].split():
        runs = {p: os.path.join(out, "parity", f"{learner}-{p}-seed{seed}") for p in ("fp32", "bf16")}
        paths = {p: os.path.join(d, "task_accuracies.json") for p, d in runs.items()}
        if not all(os.path.isfile(path) for path in paths.values()):
            missing.append(int(seed))
            continue
        records = {p: json.load(open(path)) for p, path in paths.items()}
        results = {p: json.load(open(os.path.join(d, "results.json")))["overall"] for p, d in runs.items()}
        paired = compare_task_records(records["bf16"], records["fp32"])["overall"]
        seeds.append({"seed": int(seed), "fp32": results["fp32"]["accuracy"], "bf16": results["bf16"]["accuracy"],
                      "paired": paired})
    entry = {"seeds": seeds, "missing_seeds": missing}
    if len(seeds) >= 2:
        spread = across_seeds([s["paired"]["difference"] for s in seeds])
        entry["across_seeds"] = {**spread.as_dict(), "low": spread.low, "high": spread.high}
        entry["parity"] = bool(spread.low <= 0.0 <= spread.high)
    summary["learners"][learner] = entry
    line = ", ".join(f"seed {s['seed']}: {s['paired']['difference']:+.2f} +- {s['paired']['ci95']:.2f}" for s in seeds)
    verdict = entry.get("parity")
    print(f"bf16 - fp32 ({learner}): {line}"
          + (f"; across seeds {entry['across_seeds']['mean']:+.2f} +- {entry['across_seeds']['ci95']:.2f}: "
             f"{'parity' if verdict else 'not at parity'}" if verdict is not None else "; too few seeds finished"))
json.dump(summary, open(os.path.join(out, "parity_bf16.json"), "w"), indent=1)
PY
else
  # each learner's runs paired with its first run, on the identical test tasks
  for learner in $learners; do
    dirs=$(for run in $runs; do d="$OUT/parity/$learner-${run%%:*}"; [ -f "$d/results.json" ] && echo "$d"; done | paste -sd, -)
    first=${dirs%%,*}
    [ -n "$dirs" ] && [ "$dirs" != "$first" ] && "$PYTHON" scripts/compare.py "run_dirs=[$dirs]" baseline="$first" \
      output="$OUT/parity_$learner.md" hydra.run.dir="$OUT/compare-$learner" >"$OUT/compare_$learner.log" 2>&1 \
      && cat "$OUT/parity_$learner.md"
  done
fi

echo "== phase 2: benchmark"
start=$SECONDS
limit=${BENCH_TIMEOUT:-270}
if [ -n "${BUDGET:-}" ]; then  # what is left of the call's budget, 10 s kept for the last messages
  left=$((BUDGET - (SECONDS - begin) - 10))
  [ "$left" -lt "$limit" ] && limit=$left
  [ "$limit" -lt 1 ] && limit=1
fi
timeout "$limit" "$PYTHON" scripts/bench.py device=$DEVICE repeats=5 warmup=2 output_dir="$OUT" \
  "sections=${BENCH_SECTIONS:-[vectorized,eval_1000,options,meta_batch,inner_steps,peer,eval]}" ${BENCH_ARGS:-} \
  >"$OUT/bench.log" 2>&1
echo "bench exit $? after $((SECONDS - start)) s (limit $limit s); $((SECONDS - begin)) s in all"
cat "$OUT/bench_$DEVICE.md" 2>/dev/null || tail -30 "$OUT/bench.log"
