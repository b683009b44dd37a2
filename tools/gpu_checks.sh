#!/usr/bin/env bash
# Every GPU check of kml in one call: run it from the repository root of a checkout on
# a machine with a CUDA GPU, with kml installed (pip install -e ".[dev]"). Results go
# to $OUT (default ./gpu_checks): the CUDA test log, the parity runs and the benchmark
# (bench_cuda.json / bench_cuda.md), as described in docs/performance.md.
#
# Phase 1 (untimed work, run concurrently): the CUDA tests and short synthetic runs
#   for a parity check (MProtoNet+KML and MMAML+KML, same seed, same test tasks): fp32 vs
#   bf16 (PARITY_SET=precision), eager vs CUDA graphs (PARITY_SET=graphs), or the
#   default path vs each speed option and all of them (PARITY_SET=candidates), or vs
#   training seeds 1 and 2 and channels-last convolutions (PARITY_SET=seeds), each
#   compared, paired on the same test tasks, with the first run (parity_<learner>.md).
# Phase 2 (alone on the GPU): scripts/bench.py, sections in order of importance; it
#   writes its JSON and markdown after every section, so a cut-short run keeps what
#   it measured.
set -u
OUT=${OUT:-gpu_checks}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export OUT PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
python3 -c "import kml" 2>/dev/null || { echo "kml is not importable: run pip install -e '.[dev]' first" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
start=$SECONDS

echo "== phase 1: CUDA tests + ${PARITY_SET:-precision} parity runs (concurrent, not timed)"
(OMP_NUM_THREADS=4 timeout ${PHASE1_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  >"$OUT/cuda_tests.log" 2>&1) &
# PARITY_SET=precision: fp32 vs bf16 (eager); graphs: CUDA graphs off vs on (fp32); candidates: each speed
# option and all of them; seeds: training seeds 1 and 2 and channels-last convolutions
case ${PARITY_SET:-precision} in
  precision) runs="fp32:train.precision=fp32,train.cuda_graphs=false bf16:train.precision=bf16,train.cuda_graphs=false" ;;
  graphs) runs="eager:train.cuda_graphs=false graphs:train.cuda_graphs=true" ;;
  candidates) runs="current:train.fused_adam=false fused:train.fused_adam=true tf32:train.tf32=true
    unfold:train.per_task_conv=unfold all:train.fused_adam=true,train.tf32=true,train.per_task_conv=unfold" ;;
  # the spread between training seeds, against which the candidates' differences are judged
  seeds) runs="current:train.seed=0 seed1:train.seed=1 seed2:train.seed=2
    channels_last:train.per_task_conv=channels_last" ;;
  none) runs="" ;;
esac
for learner in protonet maml; do
  for run in $runs; do
    name=$learner-${run%%:*}
    overrides=${run#*:}
    (OMP_NUM_THREADS=${PARITY_THREADS:-3} timeout ${PHASE1_TIMEOUT:-150} python3 scripts/train.py learner=$learner modulation=kml \
      device=cuda ${overrides//,/ } train.iterations=${PARITY_ITERS:-500} train.progress=false \
      eval.tasks_per_mode=300 data.root="$OUT/data-$name" hydra.run.dir="$OUT/parity/$name" \
      >"$OUT/parity_$name.log" 2>&1) &
  done
done
wait
echo "phase 1 took $((SECONDS - start)) s"
tail -3 "$OUT/cuda_tests.log"
for log in "$OUT"/parity_*.log; do
  name=$(basename "$log" .log)
  grep -E "^\| (\*\*overall|synthetic)" "$log" | sed "s/^/${name#parity_} /" || tail -3 "$log"
done
python3 - <<'PY'
import json, glob, os
rows = {}
for path in sorted(glob.glob(os.path.join(os.environ["OUT"], "parity", "*", "results.json"))):
    r = json.load(open(path))
    rows[os.path.basename(os.path.dirname(path))] = {"overall": r["overall"], "per_mode": r["per_mode"]}
json.dump(rows, open(os.path.join(os.environ["OUT"], "parity.json"), "w"), indent=1)
PY
# each learner's runs paired with its first run, on the identical test tasks
for learner in protonet maml; do
  dirs=$(for run in $runs; do d="$OUT/parity/$learner-${run%%:*}"; [ -f "$d/results.json" ] && echo "$d"; done | paste -sd, -)
  first=${dirs%%,*}
  [ -n "$dirs" ] && [ "$dirs" != "$first" ] && python3 scripts/compare.py "run_dirs=[$dirs]" baseline="$first" \
    output="$OUT/parity_$learner.md" hydra.run.dir="$OUT/compare-$learner" >"$OUT/compare_$learner.log" 2>&1 \
    && cat "$OUT/parity_$learner.md"
done

echo "== phase 2: benchmark"
start=$SECONDS
timeout ${BENCH_TIMEOUT:-270} python3 scripts/bench.py device=cuda repeats=5 warmup=2 output_dir="$OUT" \
  "sections=${BENCH_SECTIONS:-[vectorized,eval_1000,options,meta_batch,inner_steps,peer,eval]}" ${BENCH_ARGS:-} \
  >"$OUT/bench.log" 2>&1
echo "bench exit $? after $((SECONDS - start)) s"
cat "$OUT/bench_cuda.md" 2>/dev/null || tail -30 "$OUT/bench.log"
