#!/usr/bin/env bash
# The paper's point-noise study on the sparse profile: every training point shifted by Gaussian
# noise of std 0, 1, 2, 4 s (clipped into its video; datasets.synthetic.points.noise_seconds), for
# OnPoint and the fully supervised reference (which reads no points: its row is the ceiling).
#
#   scripts/run_point_noise.sh                 # queue, run (JOBS=2), report
#   NOISES="0 2" SEEDS=52 scripts/run_point_noise.sh
#
# Writes reports/point_noise.md and reports/point_noise.png (python scripts/point_noise_report.py).
set -euo pipefail
NOISES=${NOISES:-"0 1 2 4"}
SEEDS=${SEEDS:-"52"}
for noise in $NOISES; do
  for run in onpoint fully_supervised; do
    for seed in $SEEDS; do
      dvc exp run --queue -S dataset=synthetic -S teacher=hrpro -S "datasets.synthetic.points.noise_seconds=$noise" \
          -S "student.run=$run" -S "student.seed=$seed" -n "noise$noise-$run-s$seed"
    done
  done
done
scripts/run_queue.sh "${JOBS:-2}"
python scripts/point_noise_report.py
