#!/usr/bin/env bash
# One script for a GPU machine: the CUDA tests, the paper configuration's speed, and the paper's
# student recipe (recipe: paper) trained on the synthetic benchmark.
#
#   bench/gpu_check.sh [OUT_DIR]                     # tests + speed: under 8 minutes on an H200
#   PARTS=recipe RUNS="onpoint" bench/gpu_check.sh   # the paper recipe runs (after `dvc repro`: they
#                                                    # read data/ of the default run)
#
# Needs torch with CUDA, pandas, pyarrow, pyyaml, click, tqdm, matplotlib and pytest; not DVC:
# the stage scripts run directly, with a params file that selects `recipe: paper` and train_stride 1,
# so the student is D 1024, FFN 2048, 5 decoder layers, lr 1e-4, batch 128, all windows.
# Each part has its own time limit and writes its results under OUT_DIR as it finishes. On an H200:
# tests and benchmarks about 1.5 min, then about 2.5 min per run (training 100-135 s, streaming eval).
# PARTS (default "tests speed") picks the parts; RUNS (default "onpoint teacher_oat distillation_free
# fully_supervised") the recipe runs of PARTS=recipe.
set -uo pipefail
OUT_DIR=${1:-gpu_check}
PARTS=${PARTS:-"tests speed"}
RUNS=${RUNS:-"onpoint teacher_oat distillation_free fully_supervised"}
has() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT_DIR"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}. PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*" | tee -a "$OUT_DIR/gpu_check.log"; }

log "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())' \
  | tee -a "$OUT_DIR/gpu_check.log"

if has tests; then
  log "CUDA tests"
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -n 15 | tee -a "$OUT_DIR/gpu_check.log"
fi
if has speed; then
  log "training speed (paper configuration): bf16 autocast, then bf16 + torch.compile"
  timeout 90 python3 bench/student_speed.py --config paper --batches 20 --precision bf16 2>&1 | tee -a "$OUT_DIR/gpu_check.log"
  timeout 150 python3 bench/student_speed.py --config paper --batches 20 --precision bf16 --compile 2>&1 \
    | tee -a "$OUT_DIR/gpu_check.log"
  for precision in fp16 bf16 fp32; do
    log "streaming speed ($precision, CUDA graphs)"
    timeout 75 python3 bench/online_speed.py --device cuda --seconds 2 --precision $precision 2>&1 \
      | tee -a "$OUT_DIR/gpu_check.log"
  done
  log "streaming speed (fp16, eager: no CUDA graphs)"
  timeout 75 python3 bench/online_speed.py --device cuda --seconds 2 --precision fp16 --no-cuda-graphs 2>&1 \
    | tee -a "$OUT_DIR/gpu_check.log"
fi
has recipe || { log "done"; exit 0; }

python3 - $RUNS <<'EOF'
import sys, yaml
for run in sys.argv[1:]:
    params = yaml.safe_load(open("params.yaml"))
    params["recipe"] = "paper"                           # the paper's student recipe ...
    params["datasets"]["synthetic"]["train_stride"] = 1  # ... on every window
    params["student"]["run"] = run
    params["online"]["precision"] = "fp16"               # half precision for the GPU's streaming eval
    yaml.safe_dump(params, open(f"/tmp/params_{run}.yaml", "w"), sort_keys=False)
EOF
for run in $RUNS; do
  log "paper student recipe: $run"
  timeout 240 python3 stages/train_student.py --params "/tmp/params_$run.yaml" --out "/tmp/student_$run.pt" \
      --metrics "$OUT_DIR/train_$run.json" --epoch-curve "/tmp/epochs_$run.csv" --batch-curve "/tmp/loss_$run.csv" \
      --resume-file "/tmp/resume_$run.pt" 2>&1 | grep -v "it/s\]" | tail -n 3 | tee -a "$OUT_DIR/gpu_check.log"
  timeout 120 python3 stages/online_eval.py --params "/tmp/params_$run.yaml" --model "/tmp/student_$run.pt" \
      --out "/tmp/proposals_$run.parquet" --metrics "$OUT_DIR/online_$run.json" --pr-curve "/tmp/pr_$run.csv" \
      --plots "/tmp/plots_$run" --num-timelines 0 2>&1 | grep -v "it/s\]" | tail -n 3 | tee -a "$OUT_DIR/gpu_check.log"
  python3 -c "import json; m = json.load(open('$OUT_DIR/online_$run.json')); s = json.load(open('logs/online_eval.json'))['speed']; print('$run', 'avg 0.1:0.7', m['avg_0.1_0.7'], 'F1', m['f1_0.5'], 'steps/s', s)" \
      2>&1 | tee -a "$OUT_DIR/gpu_check.log"
done
log "done"
