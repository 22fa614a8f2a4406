#!/usr/bin/env bash
# Queue every run of docs/method.md 7 as a named DVC experiment, run the queue, write the report.
#
#   scripts/run_comparison.sh                       # both synthetic profiles, 3 seeds for every row
#   DATASETS=synthetic SEEDS=52 scripts/run_comparison.sh     # one profile, one seed (quick look)
#
# Every row runs once per seed (3 seeds: one seed cannot tell a 2-point drop from seed noise), and
# every row trains by the same convergence rule (student.patience, chosen on the val videos).
# Experiments only re-run the stages whose inputs changed, so the teacher of a profile is trained
# once. JOBS=2 (default) runs two experiments at a time, one torch thread each. Afterwards:
# `dvc exp show`, reports/comparison.md and the README block between the comparison markers.
set -euo pipefail
DATASETS=${DATASETS:-"synthetic synthetic_dense"}
SEEDS=${SEEDS:-"52 53 54"}
RUNS="onpoint teacher_oat distillation_free fully_supervised no_cass_anticipation no_calibration no_point_supervision"

teacher_of() { case $1 in synthetic_dense|egtea*|hoi4d) echo tsaspc ;; *) echo hrpro ;; esac; }

for dataset in $DATASETS; do
  teacher=$(teacher_of "$dataset")
  for run in $RUNS; do
    for seed in $SEEDS; do
      dvc exp run --queue -S "dataset=$dataset" -S "teacher=$teacher" -S "student.run=$run" -S "student.seed=$seed" \
          -n "$dataset-$run-s$seed"
    done
  done
done

scripts/run_queue.sh "${JOBS:-2}"
onpoint report --readme README.md      # reports/comparison.md + .png, and the README block
