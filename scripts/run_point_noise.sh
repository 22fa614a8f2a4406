#!/usr/bin/env bash
# The paper's point-noise study on the sparse profile: every training point shifted by Gaussian
# noise of std 0, 1, 2, 4 s (clipped into its video; datasets.synthetic.points.noise_seconds), for
# OnPoint, and the fully supervised reference once: it reads no points and no teacher output, so its
# result is the same at every noise level (the report draws it as a line).
#
#   scripts/run_point_noise.sh                 # queue, run (JOBS=2), report
#   NOISES="0 2" SEEDS=52 scripts/run_point_noise.sh
#
# Writes reports/point_noise.md and reports/point_noise.png (python scripts/point_noise_report.py).
set -euo pipefail
NOISES=${NOISES:-"0 1 2 4"}
SEEDS=${SEEDS:-"52"}
queue() {   # noise run seed
  dvc exp run --queue -S dataset=synthetic -S teacher=hrpro -S "datasets.synthetic.points.noise_seconds=$1" \
      -S "student.run=$2" -S "student.seed=$3" -n "noise$1-$2-s$3"
}
for seed in $SEEDS; do
  for noise in $NOISES; do queue "$noise" onpoint "$seed"; done
  queue 0 fully_supervised "$seed"
done
scripts/run_queue.sh "${JOBS:-2}"
python scripts/point_noise_report.py
