#!/usr/bin/env bash
# All GPU checks of one device session (run from the repo root on the GPU machine,
# with .whl carried: see ../shared/tools/device-wheels.sh). Writes under $OUT.
set -u
OUT=${OUT:-/tmp/kml-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

echo "== CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -4

echo "== benchmark"
timeout ${BENCH_TIMEOUT:-330} python3 scripts/bench.py device=cuda repeats=5 warmup=2 output_dir="$OUT" \
  ${BENCH_ARGS:-} 2>&1 | grep -v "^bench:" | tail -120

echo "== bf16 parity (MProtoNet+KML and MMAML+KML, synthetic 32px, same seed)"
for learner in protonet maml; do
  for precision in fp32 bf16; do
    timeout 150 python3 scripts/train.py learner=$learner modulation=kml device=cuda train.precision=$precision \
      train.iterations=${PARITY_ITERS:-400} train.progress=false eval.tasks_per_mode=300 data.root=/tmp/kmldata \
      hydra.run.dir=/tmp/parity/$learner-$precision 2>&1 | grep -E "^\|" | tail -5 | sed "s/^/$learner $precision /"
  done
done
python3 - <<'PY'
import json, glob, os
rows = {}
for path in sorted(glob.glob("/tmp/parity/*/results.json")):
    r = json.load(open(path))
    rows[os.path.basename(os.path.dirname(path))] = {"overall": r["overall"], "per_mode": r["per_mode"]}
json.dump(rows, open(os.path.join(os.environ.get("OUT", "/tmp"), "parity.json"), "w"), indent=1)
PY
