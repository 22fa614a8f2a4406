#!/usr/bin/env bash
# Queue every run of docs/method.md 7 as a named DVC experiment, run the queue, write the report.
#
#   scripts/run_comparison.sh                       # both synthetic profiles, 3 seeds for every row
#   DATASETS=synthetic SEEDS=52 scripts/run_comparison.sh     # one profile, one seed (quick look)
#
# Every row runs once per seed (3 seeds: one seed cannot tell a 2-point drop from seed noise), and
# every row trains by the same convergence rule (student.patience, chosen on the val videos).
# JOBS=2 (default) runs two experiments at a time, one torch thread each. The queue is seed-major
# (every row of seed 52, then of 53, ...), so a queue stopped early leaves whole seeds.
#
# The teacher's stages do not read the student's run or seed, so each profile's teacher is trained
# once, before the queue, and every experiment restores it from DVC's run-cache:
# - for the baseline's own dataset/teacher the stages' deps equal the committed dvc.lock, and DVC
#   (3.x) then restores the lock's outputs from the local cache or, when they are not there, reruns
#   the stage without looking in the run-cache: so the baseline is reproduced first (`dvc repro`,
#   a no-op after README command 1);
# - for another dataset/teacher a workspace experiment runs up to `pseudo_segments` (one thread, as
#   the workers), leaving its run-cache entries, and is then removed.
# Afterwards: `dvc exp show`, reports/comparison.md and the README block between the comparison markers.
set -euo pipefail
DATASETS=${DATASETS:-"synthetic synthetic_dense"}
SEEDS=${SEEDS:-"52 53 54"}
RUNS="onpoint teacher_oat distillation_free fully_supervised no_cass_anticipation no_calibration no_point_supervision"

teacher_of() { case $1 in synthetic_dense|egtea*|hoi4d) echo tsaspc ;; *) echo hrpro ;; esac; }

baseline=$(python -c "import yaml; p = yaml.safe_load(open('params.yaml')); print(p['dataset'] + '/' + p['teacher'])")
dvc repro pseudo_segments
restore() { git checkout -- params.yaml dvc.lock metrics plots live && dvc checkout --quiet || true; }
for dataset in $DATASETS; do
  teacher=$(teacher_of "$dataset")
  [ "$dataset/$teacher" = "$baseline" ] && continue
  trap restore EXIT
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 dvc exp run -S "dataset=$dataset" -S "teacher=$teacher" pseudo_segments \
      -n "teacher-$dataset"
  dvc exp remove "teacher-$dataset"
  restore
  trap - EXIT
done

for seed in $SEEDS; do
  for dataset in $DATASETS; do
    teacher=$(teacher_of "$dataset")
    for run in $RUNS; do
      dvc exp run --queue -S "dataset=$dataset" -S "teacher=$teacher" -S "student.run=$run" -S "student.seed=$seed" \
          -n "$dataset-$run-s$seed"
    done
  done
done

scripts/run_queue.sh "${JOBS:-2}"
onpoint report --readme README.md      # reports/comparison.md + .png, and the README block
