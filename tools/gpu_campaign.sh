#!/usr/bin/env bash
# Run a whole results campaign on one GPU, every method in its own process.
#
#   bash tools/gpu_campaign.sh <campaign> <archives> [override ...]
#
# <campaign>: a config of configs/campaign/ (e.g. 2mode_protonet_84).
# <archives>: a folder with one sub-folder per dataset the campaign's mode needs, named
#   after the dataset (omniglot/, miniimagenet/, cub/, gtsrb/, tinyimagenet/, ...), each
#   holding that dataset's official archives (what `kml-prepare dataset=<name> source=`
#   reads). Every sub-folder found is prepared at the campaign's image size.
# [override ...]: scripts/reproduce.py overrides for every pass (e.g. a shorter
#   campaign.budget.iterations=2000).
#
# Run it from the repository root of a checkout with kml importable. The methods train
# concurrently: a few-shot iteration leaves most of a large GPU idle, so one process per
# method shares it far better than one run after another. Then a last pass runs the
# campaign's diagnostics and writes the report.
#
# Environment: OUT (default ./gpu_campaign): the run records (results/<campaign>/), the
#   report (results.md, figures/) and one log per process; DATA (default $OUT/data): the
#   prepared datasets; WORK (default $OUT/work): run directories with their checkpoints;
#   PYTHON (default python3); TRAIN_TIMEOUT (seconds, default none): stop the training
#   processes after this long, so the last pass still writes a report of what finished.
set -u
campaign=${1:?usage: bash tools/gpu_campaign.sh <campaign> <archives>}
archives=${2:?usage: bash tools/gpu_campaign.sh <campaign> <archives>}
shift 2
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu_campaign}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
DATA=${DATA:-$OUT/data}
WORK=${WORK:-$OUT/work}
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
[ -d "$archives" ] || { echo "error: $archives is not a folder; pass the folder that holds the dataset archives" >&2; exit 2; }
"$PYTHON" -c "import kml" 2>/dev/null || { echo "error: kml is not importable; run pip install -e . first" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# the campaign's image size, number of runs and method names, from its config
settings=$("$PYTHON" - "$campaign" <<'PY'
import sys
from pathlib import Path
from omegaconf import OmegaConf
from kml.campaign.plan import plan_campaign
from kml.config import CONFIG_DIR, CampaignConfig
path = Path(CONFIG_DIR) / "campaign" / f"{sys.argv[1]}.yaml"
if not path.is_file():
    sys.exit(f"error: no campaign {sys.argv[1]!r} in configs/campaign/")
campaign = OmegaConf.merge(OmegaConf.structured(CampaignConfig), OmegaConf.load(str(path)))
print(campaign.budget.image_size)
print(len(plan_campaign(campaign, "outputs", "results")))  # the runs the campaign plans
for method in campaign.methods:
    print(method.name)
PY
) || exit 2
image_size=$(echo "$settings" | sed -n 1p)
planned=$(echo "$settings" | sed -n 2p)
mapfile -t methods < <(echo "$settings" | tail -n +3)

start=$SECONDS
echo "== preparing the datasets at ${image_size}x${image_size} in $DATA"
shopt -s nullglob
for source in "$archives"/*/; do
  dataset=$(basename "$source")
  (OMP_NUM_THREADS=4 "$PYTHON" scripts/prepare_data.py dataset="$dataset" source="$source" data.root="$DATA" \
    image_size="$image_size" verbose=false >"$OUT/logs/prepare_$dataset.log" 2>&1 \
    || { echo "preparing $dataset failed:"; tail -3 "$OUT/logs/prepare_$dataset.log"; }) &
done
wait
echo "prepared in $((SECONDS - start)) s"

common=(campaign="$campaign" data_root="$DATA" work_dir="$WORK" results_dir="$OUT/results" progress=false "$@")
start=$SECONDS
echo "== training ${#methods[@]} methods concurrently"
for method in "${methods[@]}"; do
  name=$(echo "$method" | tr -c 'A-Za-z0-9\n' '_')
  # each process writes its interim report outside $OUT; the last pass writes the real one
  (OMP_NUM_THREADS=2 ${TRAIN_TIMEOUT:+timeout $TRAIN_TIMEOUT} "$PYTHON" scripts/reproduce.py "${common[@]}" \
    "only_methods=[\"$method\"]" report="$WORK/reports/$name/results.md" figures_dir="$WORK/reports/$name/figures" \
    >"$OUT/logs/train_$name.log" 2>&1; echo "$method: exit $? after $((SECONDS - start)) s") &
done
wait
echo "training took $((SECONDS - start)) s"
for log in "$OUT"/logs/train_*.log; do
  grep -E "^\| \*\*overall" "$log" | sed "s/^/$(basename "$log" .log) /" || tail -2 "$log"
done

echo "== diagnostics and report"
start=$SECONDS
finished=$(ls "$OUT/results/$campaign"/*/results.json 2>/dev/null | wc -l)
# with every run recorded this pass only adds the diagnostics; otherwise it reports what finished
only_report=$([ "$finished" -ge "$planned" ] && echo false || echo true)
"$PYTHON" scripts/reproduce.py "${common[@]}" report_only=$only_report report="$OUT/results.md" \
  figures_dir="$OUT/figures" >"$OUT/logs/report.log" 2>&1
status=$?
tail -5 "$OUT/logs/report.log"
echo "report took $((SECONDS - start)) s (exit $status)"
exit $status
