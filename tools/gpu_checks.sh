#!/usr/bin/env bash
# All GPU checks of one device session, in one call (run from the repo root on the
# GPU machine, with .whl carried: see ../shared/tools/device-wheels.sh). Writes under $OUT.
#
# Phase 1 (untimed work, run concurrently): the CUDA tests and four short synthetic
#   runs for a parity check (MProtoNet+KML and MMAML+KML, same seed): fp32 vs bf16
#   (PARITY_SET=precision) or eager vs CUDA graphs (PARITY_SET=graphs).
# Phase 2 (alone on the GPU): scripts/bench.py, sections in order of importance; it
#   writes its JSON and markdown after every section, so a cut-short run keeps what
#   it measured.
set -u
OUT=${OUT:-/tmp/kml-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
start=$SECONDS

echo "== phase 1: CUDA tests + ${PARITY_SET:-precision} parity runs (concurrent, not timed)"
(OMP_NUM_THREADS=4 timeout ${PHASE1_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  >"$OUT/cuda_tests.log" 2>&1) &
# PARITY_SET=precision: fp32 vs bf16 (eager); PARITY_SET=graphs: CUDA graphs off vs on (fp32)
case ${PARITY_SET:-precision} in
  precision) runs="fp32:train.precision=fp32,train.cuda_graphs=false bf16:train.precision=bf16,train.cuda_graphs=false" ;;
  graphs) runs="eager:train.cuda_graphs=false graphs:train.cuda_graphs=true" ;;
  none) runs="" ;;
esac
for learner in protonet maml; do
  for run in $runs; do
    name=$learner-${run%%:*}
    overrides=${run#*:}
    (OMP_NUM_THREADS=3 timeout ${PHASE1_TIMEOUT:-150} python3 scripts/train.py learner=$learner modulation=kml \
      device=cuda ${overrides//,/ } train.iterations=${PARITY_ITERS:-500} train.progress=false \
      eval.tasks_per_mode=300 data.root=/tmp/kmldata-$name hydra.run.dir=/tmp/parity/$name \
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
for path in sorted(glob.glob("/tmp/parity/*/results.json")):
    r = json.load(open(path))
    rows[os.path.basename(os.path.dirname(path))] = {"overall": r["overall"], "per_mode": r["per_mode"]}
json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "parity.json"), "w"), indent=1)
PY

echo "== phase 2: benchmark"
start=$SECONDS
timeout ${BENCH_TIMEOUT:-270} python3 scripts/bench.py device=cuda repeats=5 warmup=2 output_dir="$OUT" \
  "sections=${BENCH_SECTIONS:-[paths,eval_1000,options,meta_batch,inner_steps,peer,eval]}" ${BENCH_ARGS:-} \
  >"$OUT/bench.log" 2>&1
echo "bench exit $? after $((SECONDS - start)) s"
cat "$OUT/bench_cuda.md" 2>/dev/null || tail -30 "$OUT/bench.log"
